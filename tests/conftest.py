"""Shared fixtures: one tiny random LLaDA checkpoint (project tokenizer included), built once per run,
and a launcher of two CPU processes under `accelerate launch`."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from transformers import AutoTokenizer

from difusi import LLaDAModelLM
from difusi.model.presets import build_checkpoint
from difusi.synthetic.cendol import synth_cendol

CENDOL_ROWS = 8_000


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Directory of a `tiny` preset checkpoint, seed 0: config, safetensors, tokenizer, generation config."""
    return build_checkpoint("tiny", tmp_path_factory.mktemp("checkpoints") / "tiny", seed=0)


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_checkpoint: Path):
    """The tiny checkpoint's tokenizer (byte-level BPE, 512 ids, LLaDA special tokens and chat template)."""
    return AutoTokenizer.from_pretrained(tiny_checkpoint)


@pytest.fixture
def tiny_model(tiny_checkpoint: Path) -> LLaDAModelLM:
    """A fresh fp32 copy of the tiny model in eval mode (function scope: tests may train it)."""
    return LLaDAModelLM.from_pretrained(tiny_checkpoint).eval()


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models gain nothing from threads, and on a busy machine two threads wait on each other
    (a 16-step generate took seconds instead of 40 ms)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class Launcher:
    """`accelerate launch` of 2 CPU processes over gloo with one of configs/accelerate/*.yaml; the
    arguments are a script and its own, or `-m difusi ...`."""

    def start(
        self, config: str, arguments: list[str], environment: dict | None = None, **popen
    ) -> subprocess.Popen:
        with socket.socket() as s:  # a free port for the processes' rendezvous
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        command = [
            sys.executable, "-m", "accelerate.commands.launch",
            "--config_file", str(Path(__file__).parents[1] / "configs" / "accelerate" / f"{config}.yaml"),
            "--num_processes", "2", "--main_process_port", str(port), *arguments,
        ]  # fmt: skip
        environment = os.environ | {"OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""} | (environment or {})
        return subprocess.Popen(command, env=environment, text=True, **popen)

    def run(
        self, config: str, arguments: list[str], environment: dict | None = None
    ) -> subprocess.CompletedProcess:
        """Launch and wait; fails the test with the processes' difusi errors (else stderr's tail)."""
        process = self.start(config, arguments, environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        stdout, stderr = process.communicate(timeout=300)
        errors = [line for line in stderr.splitlines() if "difusi" in line and "error" in line.lower()]
        assert process.returncode == 0, "\n".join(errors) or stderr[-3000:]
        return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


@pytest.fixture(scope="session")
def launcher() -> Launcher:
    return Launcher()


@pytest.fixture(scope="session")
def cendol_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated 8,000-row Cendol in 3 parquet shards (seed 3)."""
    out = tmp_path_factory.mktemp("cendol") / "cendol"
    synth_cendol(out, CENDOL_ROWS, seed=3, shards=3)
    return out


@pytest.fixture(scope="session")
def cendol_table(cendol_dir: Path) -> pa.Table:
    """All rows of `cendol_dir`, in shard order."""
    return pa.concat_tables(pq.read_table(p) for p in sorted((cendol_dir / "data").glob("*.parquet")))
