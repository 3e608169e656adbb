"""The LLaDA model: config, modeling, tokenizer helpers and presets."""

from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoModelForMaskedLM

from difusi.model.configuration_llada import LLaDAConfig
from difusi.model.modeling_llada import LLaDAModelLM

# The official checkpoints name these Auto classes in auto_map; registering them here lets
# transformers load the files with no remote code (local classes win over auto_map). LLaDA is a
# mask predictor, so AutoModelForMaskedLM finds it too.
AutoConfig.register(LLaDAConfig.model_type, LLaDAConfig, exist_ok=True)
AutoModel.register(LLaDAConfig, LLaDAModelLM, exist_ok=True)
AutoModelForCausalLM.register(LLaDAConfig, LLaDAModelLM, exist_ok=True)
AutoModelForMaskedLM.register(LLaDAConfig, LLaDAModelLM, exist_ok=True)

__all__ = ["LLaDAConfig", "LLaDAModelLM"]
