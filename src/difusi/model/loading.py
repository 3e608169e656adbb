"""Load a LLaDA checkpoint (optionally with a PEFT adapter) and its tokenizer in one call."""

from __future__ import annotations

from pathlib import Path

import torch

from difusi.errors import DifusiError
from difusi.model.modeling_llada import LLaDAModelLM
from difusi.model.tokenizer import load_tokenizer


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_model(
    base: str | Path,
    adapter: str | Path | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    merge: bool = True,
):
    """(model, tokenizer) for `base`, a LLaDA checkpoint directory or hub id, on `device`.

    dtype defaults to bf16 on GPU and fp32 on CPU. With `adapter` (a PEFT directory), the adapter is
    applied and, by default, merged: a sampler calls the model hundreds of times per answer, and
    merged weights cost nothing per call. The tokenizer comes from the base checkpoint.
    Any loading failure is one DifusiError naming what failed.
    """
    device = torch.device(device) if device is not None else default_device()
    dtype = dtype or (torch.bfloat16 if device.type == "cuda" else torch.float32)
    try:
        model = LLaDAModelLM.from_pretrained(base, dtype=dtype)
    except (OSError, ValueError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DifusiError(
            f"base model {str(base)!r} does not load ({reason}); pass a LLaDA checkpoint"
        ) from error
    if adapter is not None:
        from peft import PeftModel

        if not (Path(adapter) / "adapter_config.json").is_file():
            raise DifusiError(
                f"{adapter} holds no adapter_config.json; pass the adapter/ dir of a `difusi train` run"
            )
        model = PeftModel.from_pretrained(model, str(adapter))
        if merge:
            model = model.merge_and_unload()
    return model.to(device).eval(), load_tokenizer(base)
