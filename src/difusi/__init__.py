"""difusi: adapt LLaDA masked-diffusion language models to Bahasa Indonesia.

The public API, one import away (the README's "Python API" section shows them together):

- load: `load_model` (model and tokenizer, optionally a PEFT adapter), `LLaDAModelLM`, `LLaDAConfig`
- prompt: `render_chat` (the LLaDA-Instruct chat template), `encode_chat` (its token ids)
- generate: `SamplerSettings`, `generate` (token ids), `block_generate` (a block-diffusion model's token
  ids), `generate_text` / `generate_answers` (decoded, with the sampler the model was trained for)
- score: `log_likelihood` (one answer), `dataset_elbo` (SFT examples)
- train: `TrainConfig`, `train`;  evaluate: `EvaluationConfig`, `evaluate`

The names load lazily (PEP 562), on first use: `import difusi` alone imports neither torch nor
transformers, so the CLI and a plain `import difusi` start fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # what IDEs and type checkers see; at run time `__getattr__` imports on demand
    from difusi.diffusion.block_sampler import block_generate
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

# Each public name and the module that defines it.
_LAZY = {
    "block_generate": "difusi.diffusion.block_sampler",
    "dataset_elbo": "difusi.diffusion.likelihood",
    "log_likelihood": "difusi.diffusion.likelihood",
    "SamplerSettings": "difusi.diffusion.sampler",
    "generate": "difusi.diffusion.sampler",
    "EvaluationConfig": "difusi.evaluation.evaluate",
    "evaluate": "difusi.evaluation.evaluate",
    "generate_answers": "difusi.generation",
    "generate_text": "difusi.generation",
    "LLaDAConfig": "difusi.model",
    "LLaDAModelLM": "difusi.model",
    "load_model": "difusi.model.loading",
    "encode_chat": "difusi.model.tokenizer",
    "render_chat": "difusi.model.tokenizer",
    "TrainConfig": "difusi.tuning.config",
    "train": "difusi.tuning.train",
}

__all__ = [  # spelled out (not derived from _LAZY) so linters and IDEs read it statically
    "EvaluationConfig",
    "LLaDAConfig",
    "LLaDAModelLM",
    "SamplerSettings",
    "TrainConfig",
    "__version__",
    "block_generate",
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


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'difusi' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
