"""LLaDA-8B on one GPU: LoRA training throughput and peak memory, and sampler throughput.

    python benchmarks/gpu_llada8b.py                  # LLaDA-8B architecture, on CUDA (about 5 minutes on an H200)
    python benchmarks/gpu_llada8b.py --preset tiny    # the same measurements on a tiny model, CPU is fine

The model has LLaDAConfig()'s LLaDA-8B architecture with random bf16 weights created directly on
the device (speed does not depend on the weights' values). Training: peft LoRA r=16 on every block
linear, the masked-diffusion SFT loss, AdamW, at sequence length 512, batch 1 and 4, gradient
checkpointing off and on. Sampling: 256 generated tokens in blocks of 32, exact sampler (steps =
gen length) against the dual cache with threshold 0.9, batch 1 and 8. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import torch
from peft import LoraConfig, get_peft_model

from difusi.diffusion.losses import sft_loss
from difusi.diffusion.sampler import generate
from difusi.model import LLaDAConfig, LLaDAModelLM
from difusi.model.presets import PRESETS


@dataclass(frozen=True)
class Setting:
    """Sizes of one benchmark run: model config, training sequence and steps, sampler lengths."""

    config: LLaDAConfig
    seq_len: int
    train_steps: int
    gen_length: int
    block_length: int
    prompt_length: int


def setting(preset: str) -> Setting:
    """`llada8b`: LLaDAConfig() defaults at the issue's sizes; `tiny`: the tiny preset's sizes (CPU)."""
    if preset == "llada8b":
        return Setting(
            LLaDAConfig(), seq_len=512, train_steps=5, gen_length=256, block_length=32, prompt_length=64
        )
    tiny = PRESETS["tiny"]
    config = LLaDAConfig(
        d_model=tiny.d_model,
        n_layers=tiny.n_layers,
        n_heads=tiny.n_heads,
        n_kv_heads=tiny.n_heads,
        mlp_hidden_size=tiny.mlp_hidden_size,
        vocab_size=tiny.vocab_size,
        embedding_size=tiny.vocab_size,
        max_sequence_length=tiny.max_sequence_length,
        mask_token_id=tiny.vocab_size - 1,
        eos_token_id=1,
        pad_token_id=1,
    )
    return Setting(config, seq_len=64, train_steps=2, gen_length=32, block_length=8, prompt_length=8)


def build_model(config: LLaDAConfig, device: torch.device, dtype: torch.dtype) -> LLaDAModelLM:
    """Random weights created directly on `device` in `dtype` (no float32 host copy of 8B weights)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            return LLaDAModelLM(config)
    finally:
        torch.set_default_dtype(previous)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def random_ids(config: LLaDAConfig, shape: tuple[int, int], device: torch.device) -> torch.Tensor:
    """Random token ids that are never the mask id."""
    return torch.randint(0, config.mask_token_id, shape, device=device)


def train_throughput(model, setting: Setting, batch_size: int, checkpointing: bool, device) -> dict:
    """Tokens/s of LoRA training steps (after one warm-up step) and the peak memory."""
    if checkpointing:
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.activation_checkpointing_disable()
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    input_ids = random_ids(setting.config, (batch_size, setting.seq_len), device)
    prompt_lengths = torch.full((batch_size,), setting.seq_len // 4, device=device)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    for step in range(setting.train_steps + 1):
        if step == 1:  # the first step warms kernels and allocator up
            synchronize(device)
            started = time.perf_counter()
        loss = sft_loss(model, input_ids, prompt_lengths, setting.config.mask_token_id)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    synchronize(device)
    seconds = time.perf_counter() - started
    del optimizer
    return {
        "tokens_per_s": batch_size * setting.seq_len * setting.train_steps / seconds,
        "peak_gib": peak_memory_gib(device),
    }


def sampling_throughput(model, setting: Setting, batch_size: int, options: dict, device) -> dict:
    """Generated tokens/s of one `generate` call (after a short warm-up) and the peak memory."""
    prompt = random_ids(setting.config, (batch_size, setting.prompt_length), device)
    settings = dict(
        steps=setting.gen_length, gen_length=setting.gen_length, block_length=setting.block_length
    )
    generate(model, prompt, steps=2, gen_length=setting.block_length, block_length=setting.block_length)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    synchronize(device)
    started = time.perf_counter()
    generate(model, prompt, **settings, **options)
    synchronize(device)
    seconds = time.perf_counter() - started
    return {"tokens_per_s": batch_size * setting.gen_length / seconds, "peak_gib": peak_memory_gib(device)}


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=["llada8b", "tiny"], default="llada8b")
    parser.add_argument("--device", default=None, help="default: cuda when present, else cpu")
    args = parser.parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    bench = setting(args.preset)
    torch.manual_seed(0)
    model = build_model(bench.config, device, dtype)
    parameters = sum(p.numel() for p in model.parameters())
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    rows = []

    lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear")
    adapted = get_peft_model(model, lora)
    adapted.enable_input_require_grads()  # checkpointed blocks need an input that requires grad
    for checkpointing in (False, True):
        for batch_size in (1, 4):
            result = train_throughput(adapted, bench, batch_size, checkpointing, device)
            rows.append(("LoRA r=16 training", f"seq {bench.seq_len}, batch {batch_size}, "
                         f"checkpointing {'on' if checkpointing else 'off'}", result))  # fmt: skip
    model = adapted.unload().eval()  # the base model again, without adapter layers
    for batch_size in (1, 8):
        for label, options in (
            ("exact", {}),
            ("dual cache + threshold 0.9", dict(cache="dual", threshold=0.9)),
        ):
            result = sampling_throughput(model, bench, batch_size, options, device)
            rows.append((f"sampling: {label}", f"{bench.gen_length} tokens, block {bench.block_length}, "
                         f"batch {batch_size}", result))  # fmt: skip

    lines = [
        f"{args.preset} architecture ({parameters / 1e6:,.1f}M parameters, random {str(dtype).split('.')[-1]} "
        f"weights) on {name}",
        "",
        "| measurement | setting | tokens/s | peak memory (GiB) |",
        "|---|---|---:|---:|",
    ]
    for what, where, result in rows:
        memory = "n/a" if result["peak_gib"] is None else f"{result['peak_gib']:.1f}"
        lines.append(f"| {what} | {where} | {result['tokens_per_s']:.1f} | {memory} |")
    table = "\n".join(lines)
    print(table)
    return table


if __name__ == "__main__":
    main()
