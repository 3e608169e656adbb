"""difusi: adapt LLaDA masked-diffusion language models to Bahasa Indonesia."""

from difusi.diffusion.likelihood import log_likelihood
from difusi.diffusion.sampler import generate
from difusi.model import LLaDAConfig, LLaDAModelLM

__version__ = "0.1.0"
__all__ = ["LLaDAConfig", "LLaDAModelLM", "__version__", "generate", "log_likelihood"]
