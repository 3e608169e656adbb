"""Interruptible training: killed anywhere, the same `--resume` command ends with the uninterrupted
run's adapter; `--resume` is safe on a fresh or finished run; one live run per directory."""

from __future__ import annotations

import json
import logging
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from difusi.errors import DifusiError
from difusi.tuning.run_directory import COMPLETE_MARKER
from difusi.tuning.train import train

WORKER = Path(__file__).with_name("interrupted_worker.py")
SETTINGS = dict(max_steps=6, save_steps=2)


def adapter_of(out: Path) -> dict[str, torch.Tensor]:
    return load_file(out / "adapter" / "adapter_model.safetensors")


def assert_same_adapter(got: Path, expected: Path) -> None:
    a, b = adapter_of(got), adapter_of(expected)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def losses(out: Path) -> list[tuple[int, float]]:
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [(line["step"], line["loss"]) for line in lines if "loss" in line]


@pytest.fixture
def whole(make_config, tmp_path) -> Path:
    """The uninterrupted run every interrupted one must reproduce."""
    return train(make_config(out=str(tmp_path / "whole"), **SETTINGS))


def same_as_whole(make_config, whole: Path, out: Path):
    return make_config(out=str(out), **SETTINGS)


def wait_paused(child: subprocess.Popen) -> None:
    """Read the worker's output (the Trainer prints its logs there) up to its pause."""
    for line in child.stdout:
        if line == "paused\n":
            return
    raise AssertionError(f"the worker ended (status {child.wait()}) without pausing")


def kill_at(config, moment: str, tmp_path: Path, delay: float | None = None) -> int:
    """Launch the worker at `moment`, SIGKILL it there (or after `delay` seconds); its exit status."""
    path = tmp_path / f"{moment}.yaml"
    config.to_yaml(path)
    child = subprocess.Popen(
        [sys.executable, str(WORKER), str(path), moment],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    if delay is None:
        wait_paused(child)
    else:
        time.sleep(delay)
    child.kill()
    return child.wait()


@pytest.mark.parametrize("moment", ["step-1", "step-3", "checkpoint-4", "checkpoint-6", "final", "random"])
def test_killed_anywhere_then_resumed_gives_the_uninterrupted_adapter(make_config, whole, tmp_path, moment):
    config = same_as_whole(make_config, whole, tmp_path / "run")
    delay = random.Random(moment).uniform(2.0, 12.0) if moment == "random" else None
    kill_at(config, "none" if delay else moment, tmp_path, delay)
    if moment.startswith("checkpoint-"):  # the half-written checkpoint is on disk, unmarked
        step = moment.removeprefix("checkpoint-")
        half = tmp_path / "run" / "checkpoints" / f"checkpoint-{step}"
        assert half.is_dir() and not (half / COMPLETE_MARKER).exists()
    train(config, resume=True)  # the scheduler's relaunch: the same command
    out = tmp_path / "run"
    assert_same_adapter(out, whole)
    assert losses(out) == losses(whole)  # each step logged once, with the same loss
    steps = sorted(int(p.name.rsplit("-", 1)[1]) for p in (out / "checkpoints").iterdir())
    assert steps == [2, 4, 6]  # never a step past max_steps
    assert json.loads((out / "run_info.json").read_text())["steps"] == 6


def test_resume_on_a_fresh_directory_starts_from_the_beginning(make_config, whole, tmp_path, caplog):
    config = same_as_whole(make_config, whole, tmp_path / "run")
    with caplog.at_level(logging.WARNING):
        train(config, resume=True)
    assert (
        f"no checkpoint to resume in {tmp_path / 'run' / 'checkpoints'}: starting from the beginning"
        in caplog.text
    )
    assert_same_adapter(tmp_path / "run", whole)


def test_resume_on_a_finished_run_does_nothing_and_says_so(make_config, whole, tmp_path, caplog):
    shutil.copytree(whole, tmp_path / "run")
    config = same_as_whole(make_config, whole, tmp_path / "run")

    def written():  # every file but the lock, which takes the pid of each run that holds it
        return {
            p: p.stat().st_mtime_ns
            for p in (tmp_path / "run").rglob("*")
            if p.is_file() and p.name != ".lock"
        }

    before = written()
    with caplog.at_level(logging.WARNING):
        assert train(config, resume=True) == tmp_path / "run"
    assert (
        f"the run in {tmp_path / 'run'} is complete (adapter/ and run_info.json written): nothing to do"
        in caplog.text
    )
    assert written() == before


def test_killed_between_the_final_adapter_and_run_info_is_finished_from_the_last_checkpoint(
    make_config, whole, tmp_path
):
    shutil.copytree(whole, tmp_path / "run")
    (tmp_path / "run" / "run_info.json").unlink()
    train(same_as_whole(make_config, whole, tmp_path / "run"), resume=True)
    assert_same_adapter(tmp_path / "run", whole)
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == [
        "checkpoint-2", "checkpoint-4", "checkpoint-6"
    ]  # fmt: skip
    info = json.loads((tmp_path / "run" / "run_info.json").read_text())
    assert (
        info["steps"] == 6
        and info["tokens_seen"] == json.loads((whole / "run_info.json").read_text())["tokens_seen"]
    )
    assert losses(tmp_path / "run") == losses(whole)


def test_resume_with_other_settings_is_refused(make_config, whole, tmp_path):
    shutil.copytree(whole, tmp_path / "run")
    shutil.rmtree(tmp_path / "run" / "adapter")
    config = same_as_whole(make_config, whole, tmp_path / "run").with_overrides({"learning_rate": 0.5})
    with pytest.raises(DifusiError) as error:
        train(config, resume=True)
    assert str(error.value) == (
        f"{tmp_path / 'run'} holds a run with other settings (learning_rate: 0.01 there, 0.5 now); "
        "relaunch with the same settings or choose another --out"
    )


def test_a_second_run_into_a_live_runs_directory_is_refused_and_the_lock_dies_with_it(
    make_config, whole, tmp_path
):
    config = same_as_whole(make_config, whole, tmp_path / "run")
    path = tmp_path / "live.yaml"
    config.to_yaml(path)
    child = subprocess.Popen(
        [sys.executable, str(WORKER), str(path), "step-2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        wait_paused(child)
        for resume in (False, True):
            with pytest.raises(DifusiError) as error:
                train(config, resume=resume)
            assert str(error.value) == (
                f"{tmp_path / 'run'} is in use by a running run (pid {child.pid}); "
                "wait for it to end or choose another --out"
            )
    finally:
        child.kill()
        child.wait()
    train(config, resume=True)  # the killed run's lock is gone with it
    assert_same_adapter(tmp_path / "run", whole)
