"""The GPU benchmark's in-process stages: logit parity of bf16 on the device against fp32 on the CPU,
profiles of a LoRA training step and a sampler block, and the samplers' tokens/s (exact, cached,
threshold, the block sampler and AR decoding) on the benchmark's model."""

from __future__ import annotations

import time

import torch

from difusi.autoregressive import ar_generate
from difusi.diffusion.block_sampler import block_generate
from difusi.diffusion.losses import sft_loss
from difusi.diffusion.reference import reference_generate
from difusi.diffusion.sampler import generate
from difusi.model import LLaDAConfig, LLaDAModelLM


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def parity(device: torch.device) -> dict:
    """Max |logit difference| of a small random model: bf16 on `device` vs fp32 on the CPU, and fp32 vs fp32."""
    config = LLaDAConfig(
        d_model=256, n_layers=4, n_heads=4, n_kv_heads=4, mlp_hidden_size=768,
        vocab_size=1024, embedding_size=1024, max_sequence_length=256, mask_token_id=1023,
        eos_token_id=1, pad_token_id=1,
    )  # fmt: skip
    torch.manual_seed(0)
    cpu = LLaDAModelLM(config).eval()
    ids = torch.randint(2, 1000, (2, 64))
    mask = torch.ones_like(ids)
    ids[1, :16], mask[1, :16] = config.pad_token_id, 0  # row 1 left-padded by 16
    results = {}
    with torch.no_grad():
        reference = cpu(ids, attention_mask=mask).logits
        unpadded_reference = cpu(ids[:1]).logits
        for dtype in (torch.float32, torch.bfloat16):
            model = LLaDAModelLM(config).to(device=device, dtype=dtype).eval()
            model.load_state_dict(cpu.state_dict())
            logits = model(ids.to(device), attention_mask=mask.to(device)).logits.float().cpu()
            unpadded = model(ids[:1].to(device)).logits.float().cpu()
            name = str(dtype).split(".")[-1]
            results[f"{name}_padded_max_abs"] = (logits[1, 16:] - reference[1, 16:]).abs().max().item()
            results[f"{name}_unpadded_max_abs"] = (unpadded - unpadded_reference).abs().max().item()
    results["logit_scale_max_abs"] = reference.abs().max().item()
    return results


def profile(model, run: dict, device: torch.device) -> dict:
    """Top operations by device time over two LoRA r=8 steps (bf16 autocast, fp32 adapter, no checkpointing)."""
    from peft import LoraConfig, get_peft_model
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    adapted = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules="all-linear"))
    for parameter in adapted.parameters():
        if parameter.requires_grad:
            parameter.data = parameter.data.float()
    adapted.train()
    optimizer = torch.optim.AdamW([p for p in adapted.parameters() if p.requires_grad], lr=1e-4)
    ids = torch.randint(0, 126000, (run["batch"], run["seq_len"]), device=device)
    prompts = torch.full((run["batch"],), run["seq_len"] // 8, device=device)

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = sft_loss(adapted, ids, prompts, run["config"].mask_token_id)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(2):
        step()
    synchronize(device)
    started = time.perf_counter()
    for _ in range(3):
        step()
    synchronize(device)
    tokens_per_s = 3 * run["batch"] * run["seq_len"] / (time.perf_counter() - started)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with torch_profile(activities=activities) as prof:
        for _ in range(2):
            step()
        synchronize(device)
    key = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    table = prof.key_averages().table(sort_by=key, row_limit=15, max_name_column_width=60)
    print(table, flush=True)
    adapted.unload()
    # One dual-cache block at batch 1: is a sampler step bound by the device or by launching its kernels?
    model.eval()
    prompt = torch.randint(0, 126000, (1, run["prompt"]), device=device)
    block = dict(steps=run["block"], gen_length=run["block"], block_length=run["block"], cache="dual")
    generate(model, prompt, **block)
    with torch_profile(activities=activities) as prof:
        generate(model, prompt, **block)
        synchronize(device)
    events = prof.key_averages()
    sampler_table = events.table(sort_by="self_cpu_time_total", row_limit=12, max_name_column_width=60)
    print(sampler_table, flush=True)
    return {
        "plain_loop_tokens_per_s": tokens_per_s,
        "top_ops": table,
        "sampler_aten_calls": sum(e.count for e in events if e.key.startswith("aten::")),
        "sampler_self_cpu_ms": sum(e.self_cpu_time_total for e in events) / 1e3,
        "sampler_self_device_ms": sum(getattr(e, "self_device_time_total", 0) for e in events) / 1e3,
        "sampler_top_ops": sampler_table,
    }


def sample(model, run: dict, device: torch.device) -> dict:
    """Sampler tokens/s at run["gen"] tokens; exact sampler tokens against the reference algorithm."""
    model.eval()
    gen, block = run["gen"], run["block"]
    results = {}
    for batch in (1, 8):
        prompt = torch.randint(0, 126000, (batch, run["prompt"]), device=device)
        generate(model, prompt, steps=block, gen_length=block, block_length=block)  # warm-up
        for label, options in (
            ("exact", {}),
            ("dual cache", dict(cache="dual")),
            ("dual cache + threshold 0.9", dict(cache="dual", threshold=0.9)),
        ):
            steps = []
            synchronize(device)
            started = time.perf_counter()
            tokens = generate(
                model, prompt, steps=gen, gen_length=gen, block_length=block,
                on_step=lambda step, x, seen=steps: seen.append(step), **options,
            )  # fmt: skip
            synchronize(device)
            seconds = time.perf_counter() - started
            results[f"{label}, batch {batch}"] = {
                "tokens_per_s": batch * gen / seconds,
                "tokens_per_step": gen / len(steps),
            }
            if label == "exact" and batch == 1:
                expected = reference_generate(model, prompt, steps=gen, gen_length=gen, block_length=block)
                results["exact identical to reference"] = bool(torch.equal(tokens, expected))
            print(f"sample {label}, batch {batch}: {results[f'{label}, batch {batch}']}", flush=True)
    # A model that is always confident: the head's logits scaled up until one token dominates.
    head = model.get_output_embeddings()
    head.weight.data.mul_(64.0)
    prompt = torch.randint(0, 126000, (1, run["prompt"]), device=device)
    steps = []
    synchronize(device)
    started = time.perf_counter()
    generate(model, prompt, steps=gen, gen_length=gen, block_length=block, cache="dual", threshold=0.9,
             on_step=lambda step, x: steps.append(step))  # fmt: skip
    synchronize(device)
    results["dual cache + threshold 0.9, batch 1, head x64 (always confident)"] = {
        "tokens_per_s": gen / (time.perf_counter() - started),
        "tokens_per_step": gen / len(steps),
    }
    head.weight.data.div_(64.0)
    return results | block_and_ar_decoding(model, run, device)


def timed(device: torch.device, decode) -> float:
    synchronize(device)
    started = time.perf_counter()
    decode()
    synchronize(device)
    return time.perf_counter() - started


def block_and_ar_decoding(model, run: dict, device: torch.device) -> dict:
    """The block sampler (the weights made block-causal, blocks of run["block"], threshold 0.9) and
    AR decoding with a KV cache (the weights made causal) at run["gen"] tokens, batch 1 and 8."""
    gen, block = run["gen"], run["block"]
    results = {}
    model.config.block_size = block
    for batch in (1, 8):
        prompt = torch.randint(0, 126000, (batch, run["prompt"]), device=device)
        block_generate(model, prompt, gen_length=block)  # warm-up
        passes = []
        seconds = timed(
            device,
            lambda prompt=prompt, passes=passes: block_generate(
                model, prompt, gen_length=gen, on_pass=lambda n, a: passes.append(n)
            ),
        )
        results[f"block sampler + threshold 0.9, batch {batch}"] = {
            "tokens_per_s": batch * gen / seconds, "tokens_per_step": gen / len(passes),
        }  # fmt: skip
        if batch == 1:
            cached = block_generate(model, prompt, gen_length=gen)
            results["block sampler identical to recomputing"] = bool(
                torch.equal(cached, block_generate(model, prompt, gen_length=gen, use_cache=False))
            )
    head = model.get_output_embeddings()
    head.weight.data.mul_(64.0)
    prompt = torch.randint(0, 126000, (1, run["prompt"]), device=device)
    passes = []
    seconds = timed(
        device, lambda: block_generate(model, prompt, gen_length=gen, on_pass=lambda n, a: passes.append(n))
    )
    results["block sampler + threshold 0.9, batch 1, head x64 (always confident)"] = {
        "tokens_per_s": gen / seconds, "tokens_per_step": gen / len(passes),
    }  # fmt: skip
    head.weight.data.div_(64.0)
    model.config.block_size, model.config.causal = None, True
    for batch in (1, 8):
        prompt = torch.randint(0, 126000, (batch, run["prompt"]), device=device)
        ar_generate(model, prompt, gen_length=block)  # warm-up
        seconds = timed(device, lambda prompt=prompt: ar_generate(model, prompt, gen_length=gen))
        results[f"AR decoding, KV cache, batch {batch}"] = {
            "tokens_per_s": batch * gen / seconds,
            "tokens_per_step": 1.0,
        }
    model.config.causal = False
    for label, value in results.items():
        print(f"sample {label}: {value}", flush=True)
    return results
