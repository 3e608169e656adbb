"""Small LLaDA model presets in the official config format, and random checkpoints built from them.

`tiny` is for unit tests (under 200k parameters); `small` (about 9M) and `demo` are for the offline
demo. All use
a project tokenizer trained on Indonesian text, so their special ids are whatever that tokenizer
assigns, never LLaDA's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import GenerationConfig, PreTrainedTokenizerBase

from difusi.errors import DifusiError
from difusi.io import atomic_directory
from difusi.model.configuration_llada import LLaDAConfig
from difusi.model.modeling_llada import LLaDAModelLM
from difusi.model.tokenizer import special_token_ids, train_indonesian_tokenizer
from difusi.synthetic.corpus import indonesian_sentences


@dataclass(frozen=True)
class ModelPreset:
    """Sizes of a preset; every other config key keeps LLaDA-8B's value."""

    d_model: int
    n_layers: int
    n_heads: int
    mlp_hidden_size: int
    vocab_size: int
    max_sequence_length: int
    # How many corpus sentences (from the start, in file order) train the tokenizer; None: all.
    tokenizer_sentences: int | None = None


PRESETS: dict[str, ModelPreset] = {
    "tiny": ModelPreset(
        d_model=64,
        n_layers=2,
        n_heads=4,
        mlp_hidden_size=192,
        vocab_size=512,
        max_sequence_length=256,
        tokenizer_sentences=4000,
    ),
    "small": ModelPreset(
        d_model=256, n_layers=6, n_heads=4, mlp_hidden_size=768, vocab_size=8192, max_sequence_length=1024
    ),
    # The demo's base (see difusi.demo): small enough that a 2-core CPU pretrains it in about five
    # minutes, its 2,048-token vocabulary learnt from the corpus less its held-out last 2,000
    # sentences (difusi.synthetic.corpus.HELD_OUT_SENTENCES), so held-out text stays unseen.
    "demo": ModelPreset(
        d_model=128,
        n_layers=4,
        n_heads=4,
        mlp_hidden_size=384,
        vocab_size=2048,
        max_sequence_length=1024,
        tokenizer_sentences=30_780,
    ),
}


def get_preset(name: str) -> ModelPreset:
    """The preset called `name`; a DifusiError lists the known ones otherwise."""
    if name not in PRESETS:
        raise DifusiError(f"unknown model preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]


def preset_tokenizer(name: str) -> PreTrainedTokenizerBase:
    """Train the project tokenizer for preset `name` (deterministic, about a second for `small`)."""
    preset = get_preset(name)
    sentences = None
    if preset.tokenizer_sentences is not None:
        sentences = indonesian_sentences()[: preset.tokenizer_sentences]
    return train_indonesian_tokenizer(preset.vocab_size, sentences)


def preset_config(name: str, tokenizer: PreTrainedTokenizerBase) -> LLaDAConfig:
    """LLaDAConfig of preset `name` whose vocabulary and mask/eos/pad ids come from `tokenizer`."""
    preset = get_preset(name)
    ids = special_token_ids(tokenizer)
    return LLaDAConfig(
        d_model=preset.d_model,
        n_layers=preset.n_layers,
        n_heads=preset.n_heads,
        n_kv_heads=preset.n_heads,
        mlp_hidden_size=preset.mlp_hidden_size,
        vocab_size=len(tokenizer),
        embedding_size=len(tokenizer),
        max_sequence_length=preset.max_sequence_length,
        mask_token_id=ids.mask,
        bos_token_id=ids.bos,
        eos_token_id=ids.eos,
        pad_token_id=ids.pad,
    )


def build_checkpoint(preset: str, out_dir: str | Path, seed: int = 0) -> Path:
    """Write a randomly initialised checkpoint of `preset` (model, tokenizer, generation config).

    The same preset and seed give identical weights. The directory appears complete or not at all.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise DifusiError(f"{out_dir} already exists and is not empty; choose a new checkpoint directory")
    tokenizer = preset_tokenizer(preset)
    config = preset_config(preset, tokenizer)
    # Seed only this construction, leaving the caller's global RNG state untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LLaDAModelLM(config)
    ids = special_token_ids(tokenizer, config)
    generation_config = GenerationConfig(bos_token_id=ids.bos, eos_token_id=ids.eos, pad_token_id=ids.pad)

    with atomic_directory(out_dir) as staging:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        generation_config.save_pretrained(staging)
    return out_dir
