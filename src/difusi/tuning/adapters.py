"""PEFT adapters for LoRA, LoRA+ and PiSSA: their peft config, attaching them, and saving them.

LoRA+ differs from LoRA only in the optimizer (see trainer.py), so both share one LoraConfig.
PiSSA starts A and B from the top-r singular triplets and overwrites the base weights with the
residual; its adapter is saved converted to a rank-2r LoRA, so it applies to the ORIGINAL base.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from peft.tuners.tuners_utils import check_target_module_exists
from peft.utils import SAFETENSORS_WEIGHTS_NAME
from safetensors.torch import load_file, save_file
from torch import nn

from difusi.errors import DifusiError
from difusi.tuning.config import TrainConfig


def lora_config(config: TrainConfig) -> LoraConfig:
    """peft LoraConfig of a lora / loraplus / pissa run."""
    init: bool | str = True
    if config.method == "pissa":
        init = f"pissa_niter_{config.pissa_niter}" if config.pissa_niter > 0 else "pissa"
    return LoraConfig(
        r=config.rank,
        lora_alpha=config.alpha,
        lora_dropout=config.dropout,
        target_modules=config.target_modules,
        init_lora_weights=init,
        bias="none",
    )


def targeted_linears(model: nn.Module, target_modules: list[str] | str) -> dict[str, nn.Linear]:
    """The linear layers an adapter with `target_modules` would wrap, by qualified name.

    "all-linear" follows peft's rule (every linear except the output head); names or a regex go
    through peft's own matcher.
    """
    head = model.get_output_embeddings()
    matcher = LoraConfig(target_modules=target_modules)
    return {
        name: module
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear)
        and module is not head
        and (target_modules == "all-linear" or check_target_module_exists(matcher, name))
    }


def check_adapter_fits(model: nn.Module, config: TrainConfig) -> None:
    """Fail before any work when the targets match nothing or a PiSSA rank exceeds a layer's size."""
    layers = targeted_linears(model, config.target_modules)
    if not layers:
        raise DifusiError(
            f"target modules {config.target_modules!r} match no linear layer of the base model; "
            "use 'all-linear' or names such as q_proj,v_proj"
        )
    if config.method == "pissa":
        name, layer = min(layers.items(), key=lambda item: min(item[1].weight.shape))
        if config.rank > min(layer.weight.shape):
            raise DifusiError(
                f"PiSSA rank {config.rank} is larger than layer {name} "
                f"({layer.out_features}x{layer.in_features}); use --rank {min(layer.weight.shape)} or less"
            )


def attach_adapter(model: nn.Module, config: TrainConfig, initial_dir: str | Path | None) -> PeftModel:
    """Wrap `model` with the run's adapter; only adapter parameters stay trainable.

    For PiSSA the freshly initialised adapter is written to `initial_dir` (the reference that turns
    the trained adapter into one for the original base); None skips that (non-main processes).
    """
    peft_model = get_peft_model(model, lora_config(config))
    # The vocabulary is never resized here; left at "auto", every save (each Trainer checkpoint
    # too) asks the hub whether the base's was, a lookup that hangs without a network.
    peft_model.save_pretrained = partial(peft_model.save_pretrained, save_embedding_layers=False)
    if config.method == "pissa" and initial_dir is not None:
        lora = peft_model.peft_config["default"]
        init, lora.init_lora_weights = lora.init_lora_weights, True
        peft_model.save_pretrained(initial_dir)
        lora.init_lora_weights = init
    return peft_model


def save_adapter(
    model: PeftModel,
    config: TrainConfig,
    out_dir: str | Path,
    initial_dir: str | Path,
    state_dict: dict[str, torch.Tensor] | None = None,
) -> None:
    """Save the trained adapter in PEFT format; a PiSSA one converted for the original base.

    `state_dict` (the whole model's) stands in for the model's own, as under FSDP, which shards it."""
    model.save_pretrained(out_dir, state_dict=state_dict)
    if config.method == "pissa":
        convert_pissa_adapter(Path(out_dir), Path(initial_dir))


def convert_pissa_adapter(adapter_dir: Path, initial_dir: Path) -> None:
    """Rewrite the trained PiSSA adapter in `adapter_dir` as a LoRA adapter for the original base.

    PiSSA trains W_res + BA where W = W_res + B0 A0 (`initial_dir` holds A0, B0), so the update to W
    is BA - B0 A0 = [B, -B0] [A; A0]: a rank-2r LoRA at the same scale (alpha doubled with r), as
    peft's `path_initial_model_for_weight_conversion` computes. Done on the saved files, so it needs
    no model: an FSDP run's gathered weights convert as a single process's do.
    """
    weights_file = adapter_dir / SAFETENSORS_WEIGHTS_NAME
    trained = load_file(weights_file)
    initial = load_file(initial_dir / SAFETENSORS_WEIGHTS_NAME)
    converted = {
        name: torch.cat([weight, initial[name]], dim=0)
        if ".lora_A." in name
        else torch.cat([weight, -initial[name]], dim=1)
        for name, weight in trained.items()
    }
    save_file(converted, weights_file, metadata={"format": "pt"})
    lora = LoraConfig.from_pretrained(adapter_dir)
    lora.r, lora.lora_alpha, lora.init_lora_weights = 2 * lora.r, 2 * lora.lora_alpha, True
    lora.save_pretrained(adapter_dir)
