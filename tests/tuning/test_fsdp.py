"""FSDP2 training on 2 CPU processes over gloo (the shipped configs/accelerate/fsdp.yaml, accelerate's
CPU gate lifted by cpu_fsdp.py) against one process with the same global batch.

The same global batch means: 2 processes x batch 2 x accumulation 1 against 1 process x batch 2 x
accumulation 2. The micro-batches then hold the same rows and draw the same masking noise, so the
runs differ only in floating-point summation order: losses and eval ELBOs agree to a relative 1e-5
(measured: about 1e-7), saved weights to 1e-4 absolute (measured: up to 2e-5, LoRA+ at lr_B 0.16).
Adam's step is lr g / (|g| + eps): for a gradient near zero a rounding difference d moves the
weight by about lr d / eps (eps 1e-8), which is what the weights show; a real fault (a wrong
group, a shard applied twice) moves them by the order of lr, 1e-2 here. (Run longer, LoRA+'s
rate compounds it: after 8 steps one process with 2 threads differs from one with 1 thread by
5e-2, FSDP from one process by 1e-2. Hence 4 steps.)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
import torch
from safetensors.torch import load_file

from difusi.model.loading import load_model

WORKER = str(Path(__file__).parent / "cpu_fsdp.py")  # the FSDP2 launch; `-m difusi` the user's
TOLERANCE = dict(rtol=1e-5, atol=1e-6)
WEIGHT_TOLERANCE = dict(rtol=1e-4, atol=1e-4)


def one_process(arguments: list[str]) -> None:
    environment = os.environ | {"OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run(
        [sys.executable, "-m", "difusi", *arguments],
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]


def kill_launch(process: subprocess.Popen) -> None:
    """SIGKILL the launcher and every worker, as a preempted job dies (torchrun starts its workers
    in sessions of their own: killing its process group alone would leave them running)."""
    launcher = psutil.Process(process.pid)
    everyone = [launcher, *launcher.children(recursive=True)]
    for member in everyone:
        member.send_signal(signal.SIGKILL)
    process.wait()
    psutil.wait_procs(everyone, timeout=10)


def metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def assert_same_curves(got: list[dict], expected: list[dict]) -> None:
    assert [(r["step"], "loss" in r, "eval_elbo" in r) for r in got] == [
        (r["step"], "loss" in r, "eval_elbo" in r) for r in expected
    ]
    # The learning rate of every optimizer group (LoRA+'s four included) at every step.
    assert [r.get("lr") for r in got] == [r.get("lr") for r in expected]
    for name in ("loss", "eval_elbo"):
        pairs = [(g[name], e[name]) for g, e in zip(got, expected, strict=True) if name in e]
        torch.testing.assert_close(*map(torch.tensor, zip(*pairs, strict=True)), **TOLERANCE)


def saved_weights(out: Path) -> dict[str, torch.Tensor]:
    final = out / "model" if (out / "model").is_dir() else out / "adapter"
    return load_file(next(final.glob("*.safetensors")))


@pytest.fixture
def recipe(make_config, sft_data_with_test, tmp_path):
    """Write the YAML of a run with the eval ELBO every 2 steps and a checkpoint every 2."""

    def write(**overrides) -> Path:
        settings = dict(
            data=str(sft_data_with_test), batch_size=2, eval_steps=2, save_steps=2, warmup_ratio=0.0
        )
        path = tmp_path / "recipe.yaml"
        make_config(**settings | overrides).to_yaml(path)
        return path

    return write


@pytest.mark.parametrize("method", ["lora", "loraplus", "pissa", "full"])
def test_fsdp_trains_as_one_process_with_the_same_global_batch(
    recipe, tmp_path, tiny_checkpoint, launcher, method
):
    config = str(recipe(method=method, max_steps=4, pissa_niter=2))
    launcher.run(
        "fsdp",
        [WORKER, "train", "--config", config, "--grad-accumulation", "1", "--out", str(tmp_path / "fsdp")],
    )
    one_process(["train", "--config", config, "--grad-accumulation", "2", "--out", str(tmp_path / "one")])

    fsdp, one = metrics(tmp_path / "fsdp"), metrics(tmp_path / "one")
    assert [r["step"] for r in fsdp if "loss" in r] == [1, 2, 3, 4]
    assert_same_curves(fsdp, one)
    # The FSDP checkpoints are sharded ones (transformers' FSDP layout), each marked whole.
    checkpoint = tmp_path / "fsdp" / "checkpoints" / "checkpoint-2"
    assert (checkpoint / "pytorch_model_fsdp_0").is_dir() and (
        checkpoint / "difusi-checkpoint-complete"
    ).is_file()

    # The final adapter (or model) is written whole, as one process writes it ...
    weights, expected = saved_weights(tmp_path / "fsdp"), saved_weights(tmp_path / "one")
    assert weights.keys() == expected.keys()
    for name in expected:
        torch.testing.assert_close(weights[name], expected[name], **WEIGHT_TOLERANCE)
    info = json.loads((tmp_path / "fsdp" / "run_info.json").read_text())
    assert info["world_size"] == 2 and info["steps"] == 4
    # ... and loads in one process to the same model.
    ids = torch.randint(0, 512, (2, 12), generator=torch.Generator().manual_seed(0))
    logits = []
    for out in ("fsdp", "one"):
        if method == "full":
            model, _ = load_model(tmp_path / out / "model", device="cpu")
        else:
            model, _ = load_model(tiny_checkpoint, tmp_path / out / "adapter", device="cpu")
        with torch.no_grad():
            logits.append(model(ids).logits)
    torch.testing.assert_close(*logits, **WEIGHT_TOLERANCE)


def test_fsdp_killed_after_a_checkpoint_resumes_to_the_uninterrupted_run(recipe, tmp_path, launcher):
    config = str(recipe(method="lora", max_steps=6))
    launcher.run(
        "fsdp",
        [WORKER, "train", "--config", config, "--grad-accumulation", "1", "--out", str(tmp_path / "whole")],
    )

    arguments = ["train", "--config", config, "--grad-accumulation", "1", "--out", str(tmp_path / "cut")]
    # Killed inside step 5, after checkpoint 4 was written and marked.
    process = launcher.start("fsdp", [WORKER, "--pause-in-step", "5", *arguments], stdout=subprocess.PIPE)
    for line in process.stdout:
        if "paused" in line:  # both workers print it, maybe amid the other's output
            break
    kill_launch(process)
    cut = tmp_path / "cut"
    assert sorted(p.name for p in (cut / "checkpoints").iterdir()) == ["checkpoint-2", "checkpoint-4"]
    assert not (cut / "adapter").exists()

    first_session = (cut / "checkpoints" / "checkpoint-4" / "trainer_state.json").stat().st_mtime_ns

    launcher.run("fsdp", [WORKER, *arguments, "--resume"])
    # Continued from checkpoint 4 (a fresh start would have written every checkpoint again).
    assert (cut / "checkpoints" / "checkpoint-4" / "trainer_state.json").stat().st_mtime_ns == first_session
    whole = metrics(tmp_path / "whole")
    resumed = metrics(cut)
    assert [r["step"] for r in resumed if "loss" in r] == [1, 2, 3, 4, 5, 6]  # each step logged once
    assert_same_curves(resumed, whole)
    weights, expected = saved_weights(cut), saved_weights(tmp_path / "whole")
    for name in expected:
        torch.testing.assert_close(weights[name], expected[name], **WEIGHT_TOLERANCE)


def test_fsdp_config_on_cpu_without_the_shim_trains_ddp_and_says_so(recipe, tmp_path, launcher):
    config = str(recipe(method="lora", max_steps=2, eval_steps=0))
    result = launcher.run(
        "fsdp", ["-m", "difusi", "train", "--config", config, "--out", str(tmp_path / "run")]
    )
    assert (
        "accelerate shards with FSDP only on GPUs: these CPU processes train data-parallel (DDP)"
        in result.stderr
    )
    checkpoint = tmp_path / "run" / "checkpoints" / "checkpoint-2"
    assert (checkpoint / "adapter_model.safetensors").is_file() and not (
        checkpoint / "pytorch_model_fsdp_0"
    ).exists()
