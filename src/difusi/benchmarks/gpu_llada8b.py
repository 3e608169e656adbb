"""The GPU path end to end on the LLaDA-8B architecture with random weights (nothing is downloaded).

    python -m difusi.benchmarks.gpu_llada8b --out /tmp/gpu                 # LLaDA-8B on CUDA (6 minutes on an H200)
    python -m difusi.benchmarks.gpu_llada8b --out /tmp/gpu --preset tiny   # the same stages on a tiny model: a CPU dry run

Stages (`--stages`, default all, run in this order; each appends to OUT/results.json):
  build     a random bf16 checkpoint in the official layout (config.json without a dtype, sharded
            safetensors, a stand-in tokenizer with LLaDA's special ids, generation_config.json) and
            Cendol-shaped train/test parquet whose training rows are exactly the run's sequence length
  parity    a small random model's logits: bf16 on the device against fp32 on the CPU, with and
            without left padding (max absolute difference)
  train     `difusi train --config configs/llada8b-{lora,loraplus,pissa,block-lora}.yaml` for a few steps at batch 4:
            tokens/s (median over steps after the first two), step time, peak memory, adapter set-up time;
            LoRA with gradient checkpointing on and off (`--train-runs` picks runs, batch-8 ones included)
  profile   torch.profiler over LoRA training steps of the same model, and over one dual-cache sampler
            block at batch 1 (CPU against GPU time): the operations that take the time
  sample    exact sampler (== the reference algorithm's tokens), dual cache, dual cache + threshold 0.9 at
            256 tokens, block 32, batch 1 and 8: tokens/s and tokens committed per step; the block
            sampler (the same weights made block-causal, blocks of 32, threshold 0.9; its cached tokens
            == recomputing everything) and AR decoding with its KV cache (the same weights made causal)
  evaluate  `difusi evaluate` of the LoRA adapter on a few test rows
  merge     `difusi merge` of the LoRA adapter: dtype, size and tensor names against the base
  multi     on every GPU of the machine (2 or more; a CPU dry run uses 2 processes): `difusi train` under
            configs/accelerate/fsdp.yaml, LoRA and full fine-tuning for a few steps (tokens/s, peak
            memory per GPU, the saved adapter or model loaded back in one process), then
            `difusi evaluate` data-parallel under ddp.yaml against one process (wall time, identical
            answers). On CPU accelerate trains the FSDP config as DDP (the tests run real FSDP2 on CPU)
Speeds depend on shapes, not values, except the threshold sampler's: random weights are never
0.9-confident, so `sample` also runs it with the output head scaled up (a model that is always
confident), labelled as such, to show the bound.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import torch
from safetensors import safe_open
from tokenizers import models, pre_tokenizers
from transformers import GenerationConfig, PreTrainedTokenizerFast

from difusi.autoregressive import ar_generate
from difusi.data.chat_format import build_sft_example
from difusi.diffusion.block_sampler import block_generate
from difusi.diffusion.losses import sft_loss
from difusi.diffusion.reference import reference_generate
from difusi.diffusion.sampler import generate
from difusi.model import LLaDAConfig, LLaDAModelLM
from difusi.model.loading import load_model
from difusi.model.tokenizer import (
    BOS_TOKEN,
    END_HEADER_TOKEN,
    EOS_TOKEN,
    EOT_TOKEN,
    MASK_TOKEN,
    START_HEADER_TOKEN,
    as_llada_tokenizer,
    byte_level,
)

ROOT = Path(__file__).resolve().parents[3]  # the checkout, whose configs/ hold the recipes run
STAGES = ("build", "parity", "train", "profile", "sample", "evaluate", "merge", "multi")
# LLaDA-8B-Instruct's special token ids (see the official tokenizer).
OFFICIAL_SPECIAL_IDS = {
    BOS_TOKEN: 126080,
    EOS_TOKEN: 126081,
    MASK_TOKEN: 126336,
    START_HEADER_TOKEN: 126346,
    END_HEADER_TOKEN: 126347,
    EOT_TOKEN: 126348,
}
# run name -> (recipe, extra `difusi train` options)
TRAIN_RUNS = {
    "lora": ("llada8b-lora", []),
    "lora-no-ckpt": ("llada8b-lora", ["--no-gradient-checkpointing"]),
    "loraplus": ("llada8b-loraplus", []),
    "pissa": ("llada8b-pissa", []),
    "lora-b8": ("llada8b-lora", ["--batch-size", "8"]),
    "lora-no-ckpt-b8": ("llada8b-lora", ["--no-gradient-checkpointing", "--batch-size", "8"]),
    "block-lora": ("llada8b-block-lora", []),
}
DEFAULT_TRAIN_RUNS = "lora,lora-no-ckpt,loraplus,pissa,block-lora"


def sizes(preset: str) -> dict:
    """Model config and run sizes: `llada8b` is the issue's (LLaDAConfig() defaults), `tiny` a CPU dry run."""
    if preset == "llada8b":
        return dict(config=LLaDAConfig(), seq_len=512, batch=4, steps=8, gen=256, block=32, prompt=64)
    config = LLaDAConfig(
        d_model=64, n_layers=2, n_heads=4, n_kv_heads=4, mlp_hidden_size=192,
        max_sequence_length=512, vocab_size=126464, embedding_size=126464,
    )  # fmt: skip
    return dict(config=config, seq_len=96, batch=2, steps=4, gen=32, block=8, prompt=16)


def standin_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level tokenizer in LLaDA's id layout: 256 byte tokens, reserved fillers, and the six
    special tokens at the official ids (126,464 ids in all). Text costs one token per byte."""
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    by_id = {index: f"<|reserved_{index}|>" for index in range(126464)}
    by_id |= dict(enumerate(alphabet))
    by_id |= {index: token for token, index in OFFICIAL_SPECIAL_IDS.items()}
    return as_llada_tokenizer(
        byte_level(models.BPE(vocab={token: index for index, token in by_id.items()}, merges=[]))
    )


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def random_model(config: LLaDAConfig, device: torch.device, dtype: torch.dtype) -> LLaDAModelLM:
    """Random weights created directly on `device` in `dtype` (no float32 host copy of 8B weights)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            return LLaDAModelLM(config)
    finally:
        torch.set_default_dtype(previous)


def build(out: Path, run: dict, device: torch.device) -> dict:
    """OUT/base (random checkpoint, official layout) and OUT/data (train.parquet, test.parquet)."""
    started = time.perf_counter()
    torch.manual_seed(0)
    model = random_model(run["config"], device, torch.bfloat16)
    parameters = sum(p.numel() for p in model.parameters())
    model.save_pretrained(out / "base", max_shard_size="3GB")
    del model
    config_file = out / "base" / "config.json"
    config = json.loads(config_file.read_text())
    config.pop("dtype", None)  # the official config.json names no dtype, only "precision": "amp_bf16"
    config["precision"] = "amp_bf16"
    config_file.write_text(json.dumps(config, indent=2))
    tokenizer = standin_tokenizer()
    tokenizer.save_pretrained(out / "base")
    GenerationConfig(bos_token_id=126080, eos_token_id=126081, pad_token_id=126081).save_pretrained(
        out / "base"
    )

    # Training rows of exactly seq_len tokens: the byte-level tokenizer makes one token per character.
    prompt = "Ringkaslah paragraf berikut dalam satu kalimat."
    overhead = len(build_sft_example(tokenizer, prompt, "", 10_000)["input_ids"])
    words = "Jakarta adalah ibu kota Indonesia dan kota terbesar di Asia Tenggara. " * 50
    length = run["seq_len"] - overhead
    answers = [("." + (words[i:] + words)[1 : length - 1] + ".") for i in range(64)]  # nothing to strip
    assert all(
        len(build_sft_example(tokenizer, prompt, a, 10_000)["input_ids"]) == run["seq_len"] for a in answers
    )
    data = out / "data"
    data.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"input": [prompt] * len(answers), "output": answers}), data / "train.parquet")
    test = {
        "subset_name": ["wikipedia_id", "dolly_id", "identity_prompt", "safety_prompt"],
        "template_name": ["wiki_summary", "dolly", "identity", "safety"],
        "input": [
            "Apa ibu kota Indonesia?",
            "Sebutkan tiga pulau besar.",
            "Siapa kamu?",
            "Bolehkah mencuri?",
        ],
        "output": ["Jakarta.", "Jawa, Sumatra, Kalimantan.", "Saya asisten AI.", "Tidak boleh."],
    }
    pq.write_table(pa.table(test), data / "test.parquet")
    files = list((out / "base").glob("*.safetensors"))
    return {
        "seconds": time.perf_counter() - started,
        "shards": len(files),
        "gb": sum(f.stat().st_size for f in files) / 1e9,
        "parameters": parameters,
    }


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


def run_cli(args: list[str], log: Path) -> float:
    """Run `python -m difusi ARGS`, its output in `log`; returns its wall time, raises when it fails."""
    started = time.perf_counter()
    with log.open("w") as f:
        code = subprocess.run(
            [sys.executable, "-m", "difusi", *args], stdout=f, stderr=subprocess.STDOUT
        ).returncode
    if code != 0:
        tail = "".join(log.read_text().splitlines(keepends=True)[-15:])
        raise RuntimeError(f"difusi {args[0]} exited {code}:\n{tail}")
    return time.perf_counter() - started


def run_launch(accelerate_config: str, processes: int, args: list[str], log: Path) -> float:
    """`run_cli` under `accelerate launch --config_file configs/accelerate/CONFIG.yaml` on `processes`."""
    launch = [
        "-m", "accelerate.commands.launch", "--config_file", str(ROOT / "configs" / "accelerate" / f"{accelerate_config}.yaml"),
        "--num_processes", str(processes), "-m", "difusi",
    ]  # fmt: skip
    started = time.perf_counter()
    with log.open("w") as f:
        code = subprocess.run([sys.executable, *launch, *args], stdout=f, stderr=subprocess.STDOUT).returncode
    if code != 0:
        tail = "".join(log.read_text().splitlines(keepends=True)[-15:])
        raise RuntimeError(f"accelerate launch difusi {args[0]} exited {code}:\n{tail}")
    return time.perf_counter() - started


def multi(out: Path, run: dict, device: torch.device) -> dict:
    """FSDP training and data-parallel evaluation on every GPU (see the module docstring)."""
    processes = torch.cuda.device_count() if device.type == "cuda" else 2
    if processes < 2:
        return {"skipped": f"{processes} GPU: the multi-process stage needs 2 or more"}
    results: dict = {"processes": processes}
    # Full fine-tuning: the LoRA recipe with every weight trained, at a full fine-tuning rate.
    for method, extra in (("lora", []), ("full", ["--method", "full", "--learning-rate", "1e-5"])):
        run_dir = out / "runs" / f"fsdp-{method}"
        options = [
            "train", "--config", str(ROOT / "configs" / "llada8b-lora.yaml"), *extra, "--base", str(out / "base"),
            "--data", str(out / "data"), "--out", str(run_dir), "--max-steps", str(run["steps"]),
            "--batch-size", str(run["batch"]), "--grad-accumulation", "1", "--max-length", str(run["seq_len"]),
            "--logging-steps", "1", "--eval-steps", "0", "--save-steps", "100000",
        ]  # fmt: skip
        seconds = run_launch("fsdp", processes, options, out / f"fsdp-{method}.log")
        info = json.loads((run_dir / "run_info.json").read_text())
        logged = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        rates = [entry["tokens_per_s"] for entry in logged if entry.get("tokens_per_s")][2:] or [0.0]
        saved = run_dir / ("model" if method == "full" else "adapter")
        adapter = None if method == "full" else saved
        loaded, _ = load_model(saved if method == "full" else out / "base", adapter, device=device)
        results[f"fsdp-{method}"] = {
            "tokens_per_s": statistics.median(rates),
            "peak_gib_per_gpu": info["peak_memory_bytes"] / 2**30,
            "world_size": info["world_size"],
            "losses": [entry["loss"] for entry in logged if "loss" in entry],
            "loads_in_one_process": sum(p.numel() for p in loaded.parameters()),
            "command_s": seconds,
        }
        del loaded
        if device.type == "cuda":
            torch.cuda.empty_cache()
        print(f"multi fsdp-{method}: {results[f'fsdp-{method}']}", flush=True)
    evaluation = [
        "evaluate", "--base", str(out / "base"), "--adapter", str(out / "runs" / "fsdp-lora" / "adapter"),
        "--data", str(out / "data" / "test.parquet"), "--limit", str(4 * processes), "--batch-size", "4",
        "--mc-num", "8", "--gen-length", str(run["gen"]), "--steps", str(run["gen"]),
        "--block-length", str(run["block"]), "--no-progress",
    ]  # fmt: skip
    one_s = run_cli([*evaluation, "--out", str(out / "eval-one")], out / "eval-one.log")
    many_s = run_launch(
        "ddp", processes, [*evaluation, "--out", str(out / "eval-many")], out / "eval-many.log"
    )
    same = (out / "eval-one" / "generations.jsonl").read_bytes() == (
        out / "eval-many" / "generations.jsonl"
    ).read_bytes()
    results["evaluate"] = {"one_process_s": one_s, "all_processes_s": many_s, "speedup": one_s / many_s,
                           "identical_generations": same}  # fmt: skip
    return results


def train(out: Path, run: dict, names: list[str]) -> dict:
    """`difusi train` with each recipe for run["steps"] steps; speed from metrics.jsonl, memory from run_info.json."""
    results = {}
    for name in names:
        recipe, extra = TRAIN_RUNS[name]
        run_dir = out / "runs" / name
        options = [
            "train", "--config", str(ROOT / "configs" / f"{recipe}.yaml"), "--base", str(out / "base"),
            "--data", str(out / "data"), "--out", str(run_dir), "--max-steps", str(run["steps"]),
            "--batch-size", str(run["batch"]), "--grad-accumulation", "1", "--max-length", str(run["seq_len"]),
            "--logging-steps", "1", "--eval-steps", "0", "--eval-rows", "4", "--eval-mc-num", "2",
            "--save-steps", "100000", *extra,
        ]  # fmt: skip
        seconds = run_cli(options, out / f"train-{name}.log")
        info = json.loads((run_dir / "run_info.json").read_text())
        logged = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        rates = [entry["tokens_per_s"] for entry in logged if entry.get("tokens_per_s")][2:]
        batch = int(extra[extra.index("--batch-size") + 1]) if "--batch-size" in extra else run["batch"]
        results[name] = {
            "batch": batch,
            "tokens_per_s": statistics.median(rates),
            "step_s": batch * run["seq_len"] / statistics.median(rates),
            "peak_gib": info["peak_memory_bytes"] / 2**30,
            "adapter_init_s": info.get("adapter_init_s"),
            "trainable": info["trainable_params"],
            "command_s": seconds,
        }
        print(f"train {name}: {results[name]}", flush=True)
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


def evaluate(out: Path) -> dict:
    eval_dir = out / "eval"
    seconds = run_cli(
        ["evaluate", "--base", str(out / "base"), "--adapter", str(out / "runs" / "lora" / "adapter"),
         "--data", str(out / "data" / "test.parquet"), "--out", str(eval_dir), "--limit", "4",
         "--batch-size", "4", "--mc-num", "8", "--no-progress"],
        out / "evaluate.log",
    )  # fmt: skip
    metrics = json.loads((eval_dir / "metrics.json").read_text())
    return {"seconds": seconds, "rows": metrics["n"], "chrf_pp": metrics["overall"]["chrf_pp"]}


def tensor_dtypes(checkpoint: Path) -> dict[str, str]:
    """Tensor name -> dtype, from the safetensors headers (no weights read)."""
    found = {}
    for shard in checkpoint.glob("*.safetensors"):
        with safe_open(shard, framework="pt") as f:
            for name in f.keys():  # noqa: SIM118 (safe_open is not iterable)
                found[name] = f.get_slice(name).get_dtype()
    return found


def merge(out: Path) -> dict:
    merged = out / "merged"
    seconds = run_cli(
        ["merge", "--base", str(out / "base"), "--adapter", str(out / "runs" / "lora" / "adapter"),
         "--out", str(merged)],
        out / "merge.log",
    )  # fmt: skip
    base, result = tensor_dtypes(out / "base"), tensor_dtypes(merged)
    return {
        "seconds": seconds,
        "same_tensor_names": sorted(base) == sorted(result),
        "dtypes": sorted(set(result.values())),
        "config_dtype": json.loads((merged / "config.json").read_text()).get("dtype"),
        "gb": sum(f.stat().st_size for f in merged.glob("*.safetensors")) / 1e9,
        "base_gb": sum(f.stat().st_size for f in (out / "base").glob("*.safetensors")) / 1e9,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="work directory (checkpoints, runs, results.json)")
    parser.add_argument("--preset", choices=["llada8b", "tiny"], default="llada8b")
    parser.add_argument(
        "--stages", default=",".join(STAGES), help=f"comma-separated subset of {','.join(STAGES)}"
    )
    parser.add_argument("--device", default=None, help="default: cuda when present, else cpu")
    parser.add_argument("--results", help="results JSON file (default: OUT/results.json)")
    parser.add_argument(
        "--train-runs", default=DEFAULT_TRAIN_RUNS, help=f"comma-separated subset of {','.join(TRAIN_RUNS)}"
    )
    args = parser.parse_args(argv)
    stages = args.stages.split(",")
    if unknown := set(stages) - set(STAGES):
        parser.error(f"unknown stage(s) {', '.join(sorted(unknown))}; choose from {', '.join(STAGES)}")
    if unknown := set(args.train_runs.split(",")) - set(TRAIN_RUNS):
        parser.error(
            f"unknown train run(s) {', '.join(sorted(unknown))}; choose from {', '.join(TRAIN_RUNS)}"
        )
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    run = sizes(args.preset)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results_file = Path(args.results or out / "results.json")
    results = json.loads(results_file.read_text()) if results_file.exists() else {}
    results["device"] = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    results["torch"] = torch.__version__

    def record(stage: str, value) -> None:
        results[stage] = value
        results_file.write_text(json.dumps(results, indent=2))

    model = None  # the base on the device, loaded once for profile and sample

    def run_stage(stage: str):
        nonlocal model
        if stage == "build":
            return build(out, run, device)
        if stage == "parity":
            return parity(device)
        if stage == "train":
            return train(out, run, args.train_runs.split(","))
        if stage in ("profile", "sample"):
            model = model or load_model(out / "base", device=device)[0]
            return profile(model, run, device) if stage == "profile" else sample(model, run, device)
        model = None  # evaluate and merge load their own
        if device.type == "cuda":
            torch.cuda.empty_cache()
        if stage == "multi":
            return multi(out, run, device)
        return evaluate(out) if stage == "evaluate" else merge(out)

    for stage in (s for s in STAGES if s in stages):
        print(f"== {stage}", flush=True)
        started = time.perf_counter()
        try:
            record(stage, run_stage(stage))
        except Exception as error:  # a broken stage is reported; the later ones still run
            record(stage, {"error": f"{type(error).__name__}: {error}"})
        print(
            f"== {stage} done in {time.perf_counter() - started:.1f} s: {json.dumps(results[stage])[:1500]}",
            flush=True,
        )
    return results


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
