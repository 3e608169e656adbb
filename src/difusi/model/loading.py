"""Load a LLaDA checkpoint (optionally with a PEFT adapter) and its tokenizer in one call, and the
checks that come first: hub download, and a complete checkpoint for its config."""

from __future__ import annotations

from pathlib import Path

import torch

from difusi.errors import DifusiError, first_line
from difusi.io import read_json, write_json
from difusi.model.checkpoint import check_checkpoint_dir, resolve_checkpoint_dir
from difusi.model.configuration_llada import LLaDAConfig
from difusi.model.modeling_llada import LLaDAModelLM
from difusi.model.tokenizer import load_tokenizer


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_model(
    base: str | Path,
    adapter: str | Path | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | str | None = None,
    merge: bool = True,
):
    """(model, tokenizer) for `base`, a LLaDA checkpoint directory or hub id, on `device`.

    dtype defaults to bf16 on GPU and fp32 on CPU; "auto" keeps the checkpoint's own. With `adapter`
    (a PEFT directory), the adapter is applied and, by default, merged: a sampler calls the model hundreds of times per answer, and
    merged weights cost nothing per call. The tokenizer comes from the base checkpoint.
    Any loading failure is one DifusiError naming what failed; unlike transformers' `from_pretrained`,
    a checkpoint with a missing, unexpected or mis-shaped tensor is one too (a run on a partly random
    model would report numbers that mean nothing).
    """
    device = torch.device(device) if device is not None else default_device()
    dtype = dtype or (torch.bfloat16 if device.type == "cuda" else torch.float32)
    try:
        # Resolved once: the tokenizer then loads from the same folder, with no further hub lookups.
        directory = resolve_checkpoint_dir(base)
        check_checkpoint_tensors(directory)
        model = LLaDAModelLM.from_pretrained(directory, dtype=dtype)
    except (OSError, ValueError) as error:
        raise DifusiError(f"base model {str(base)!r} does not load: {first_line(error)}") from error
    model.name_or_path = model.config.name_or_path = str(base)  # the hub id, not the cache folder
    tokenizer = load_tokenizer(directory)
    # The official config.json names no BOS; take the tokenizer's, so the Trainer has nothing to "align".
    for name in ("bos", "eos", "pad"):
        if getattr(model.config, f"{name}_token_id", None) is None:
            setattr(model.config, f"{name}_token_id", getattr(tokenizer, f"{name}_token_id"))
    if adapter is not None:
        if not (Path(adapter) / "adapter_config.json").is_file():
            raise DifusiError(
                f"{adapter} holds no adapter_config.json; pass the adapter/ dir of a `difusi train` run"
            )
        model = apply_adapter(model, adapter)
        if merge:
            model = model.merge_and_unload()
    return model.to(device).eval(), tokenizer


# Beside a PEFT adapter: the attention it was trained with, when that differs from its base's (an
# adapter trained with the block objective on a bidirectional base), applied before it is attached.
ATTENTION_FILE = "attention.json"
ATTENTION_KEYS = ("causal", "block_size", "token_shift")


def save_attention(config: LLaDAConfig, adapter_dir: str | Path) -> None:
    """Record `config`'s attention (causal, block_size, token_shift) beside an adapter saved from a
    model with it."""
    write_json(Path(adapter_dir) / ATTENTION_FILE, {key: getattr(config, key) for key in ATTENTION_KEYS})


def apply_adapter(model, adapter: str | Path):
    """`model` with a PEFT adapter attached (a PeftModel), its attention first set as the adapter's
    `attention.json` records (adapters saved without one keep their base's)."""
    from peft import PeftModel

    recorded = Path(adapter) / ATTENTION_FILE
    if recorded.is_file():
        for key, value in read_json(recorded).items():
            if key in ATTENTION_KEYS:
                setattr(model.config, key, value)
    return PeftModel.from_pretrained(model, str(adapter))


def check_checkpoint_tensors(path: Path) -> None:
    """Fail with one line naming the tensor if an (undamaged) checkpoint lacks one its config needs,
    has one it does not, or has one of another shape."""
    found = check_checkpoint_dir(path)
    expected = {n: tuple(s) for n, s in state_dict_shapes(LLaDAConfig.from_pretrained(path)).items()}
    for name, shape in expected.items():
        if name not in found:
            raise ValueError(f"checkpoint {path} is missing tensor {name}")
        if found[name] != shape:
            raise ValueError(
                f"checkpoint tensor {name} has shape {list(found[name])}; the config expects {list(shape)}"
            )
    unexpected = sorted(set(found) - set(expected))
    if unexpected:
        raise ValueError(f"checkpoint {path} has unexpected tensor {unexpected[0]}")


def state_dict_shapes(config: LLaDAConfig) -> dict[str, torch.Size]:
    """Names and shapes of the state dict a config implies (built on the meta device: no memory)."""
    with torch.device("meta"):
        model = LLaDAModelLM(config)
    # A tied head is saved once, under the embedding's name (as transformers saves it).
    tied = set(model._tied_weights_keys) if config.tie_word_embeddings else set()
    return {name: t.shape for name, t in model.state_dict().items() if name not in tied}
