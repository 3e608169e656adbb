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
import time
from pathlib import Path

import torch

from difusi.benchmarks.gpu_checkpoint import build, sizes
from difusi.benchmarks.gpu_commands import DEFAULT_TRAIN_RUNS, TRAIN_RUNS, evaluate, merge, multi, train
from difusi.benchmarks.gpu_decoding import parity, profile, sample
from difusi.model.loading import load_model

STAGES = ("build", "parity", "train", "profile", "sample", "evaluate", "merge", "multi")


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
