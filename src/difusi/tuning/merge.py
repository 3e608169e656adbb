"""Fold a trained adapter into its base: an official-layout checkpoint that needs no peft to load."""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

import torch
from transformers import GenerationConfig

from difusi.errors import DifusiError, first_line
from difusi.io import atomic_directory, read_json, write_json
from difusi.model.checkpoint import resolve_checkpoint_dir
from difusi.model.loading import apply_adapter, load_model
from difusi.model.tokenizer import load_tokenizer


def merge_adapter(base: str, adapter: str | Path, out: str | Path, dtype: torch.dtype | None = None) -> Path:
    """Write base + adapter, merged, to `out` (weights, config, tokenizer); returns `out`.

    `dtype` defaults to the base checkpoint's own (bf16 for LLaDA-8B); merging is done in float32
    either way. The tokenizer saved with the adapter is preferred over the base's.
    """
    adapter, out = Path(adapter), Path(out)
    if not (adapter / "adapter_config.json").is_file():
        raise DifusiError(f"no adapter_config.json in {adapter}; pass a run's adapter/ directory")
    if out.exists() and any(out.iterdir()):
        raise DifusiError(f"{out} already exists and is not empty; choose a new output directory")
    try:
        directory = resolve_checkpoint_dir(base)  # once: every file below comes from this folder
    except OSError as error:
        raise DifusiError(f"base model {base!r} does not load: {first_line(error)}") from error
    # "auto" keeps the checkpoint's own dtype: config.json's, else the weights' (the official
    # config.json names none, its shards are bf16).
    model, tokenizer = load_model(directory, device="cpu", dtype="auto")
    target_dtype = dtype or model.dtype
    model = model.float()
    try:
        merged = apply_adapter(model, adapter).merge_and_unload()
    except (ValueError, RuntimeError, KeyError) as error:
        raise DifusiError(f"adapter {adapter} does not fit base {base!r}: {error}".splitlines()[0]) from error
    if (adapter / "tokenizer_config.json").is_file():
        tokenizer = load_tokenizer(str(adapter))

    with atomic_directory(out) as staging:
        merged.to(target_dtype).save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        # The official layout carries the base's generation_config.json (bos/eos ids), when it has one.
        with contextlib.suppress(OSError):
            GenerationConfig.from_pretrained(directory).save_pretrained(staging)
        copy_remote_code(directory, staging)
    return out


def copy_remote_code(base_dir: Path, out: Path) -> None:
    """Copy the `.py` files config.json's auto_map points to; without them, drop auto_map, so the
    merged folder never names code it does not hold (difusi itself loads it natively either way)."""
    config = read_json(out / "config.json")
    modules = {reference.split("--")[-1].split(".")[0] for reference in config.get("auto_map", {}).values()}
    if all((base_dir / f"{module}.py").is_file() for module in modules):
        for module in modules:
            shutil.copy(base_dir / f"{module}.py", out / f"{module}.py")
    else:
        del config["auto_map"]
        write_json(out / "config.json", config)
