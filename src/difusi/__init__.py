"""difusi: adapt LLaDA masked-diffusion language models to Bahasa Indonesia.

The public API, one import away (the README's "Python API" section shows them together):

- load: `load_model` (model and tokenizer, optionally a PEFT adapter), `LLaDAModelLM`, `LLaDAConfig`
- prompt: `render_chat` (the LLaDA-Instruct chat template), `encode_chat` (its token ids)
- generate: `SamplerSettings`, `generate` (token ids), `generate_text` / `generate_answers` (decoded)
- score: `log_likelihood` (one answer), `dataset_elbo` (SFT examples)
- train: `TrainConfig`, `train`;  evaluate: `EvaluationConfig`, `evaluate`
"""

from difusi.diffusion.likelihood import dataset_elbo, log_likelihood
from difusi.diffusion.sampler import SamplerSettings, generate
from difusi.evaluation.evaluate import EvaluationConfig, evaluate
from difusi.generation import generate_answers, generate_text
from difusi.model import LLaDAConfig, LLaDAModelLM
from difusi.model.loading import load_model
from difusi.model.tokenizer import encode_chat, render_chat
from difusi.tuning.config import TrainConfig
from difusi.tuning.train import train

__version__ = "0.1.0"
__all__ = [
    "EvaluationConfig",
    "LLaDAConfig",
    "LLaDAModelLM",
    "SamplerSettings",
    "TrainConfig",
    "__version__",
    "dataset_elbo",
    "encode_chat",
    "evaluate",
    "generate",
    "generate_answers",
    "generate_text",
    "load_model",
    "log_likelihood",
    "render_chat",
    "train",
]
