"""The GPU benchmark's command-line stages: `difusi train` with each LLaDA-8B recipe, `difusi evaluate`
and `difusi merge` of the LoRA adapter, and FSDP training and data-parallel evaluation on every GPU,
each run as its own process the way a user runs it."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from difusi.benchmarks.gpu_checkpoint import tensor_dtypes
from difusi.model.loading import load_model

ROOT = Path(__file__).resolve().parents[3]  # the checkout, whose configs/ hold the recipes run
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
