"""Two CPU processes under `accelerate launch` (the shipped DDP config, gloo): both ranks end identical."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

REPO = Path(__file__).parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_ddp_run_keeps_ranks_identical(make_config, tmp_path):
    config = make_config(method="loraplus", batch_size=2, grad_accumulation=1, max_steps=3)
    config.to_yaml(tmp_path / "recipe.yaml")
    command = [
        sys.executable, "-m", "accelerate.commands.launch",
        "--config_file", str(REPO / "configs" / "accelerate" / "ddp.yaml"),
        "--num_processes", "2",
        "--main_process_port", str(free_port()),
        str(Path(__file__).parent / "ddp_worker.py"), str(tmp_path / "recipe.yaml"), str(tmp_path),
    ]  # fmt: skip
    env = os.environ | {"OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(path.name for path in tmp_path.glob("rank*")) == [
        "rank0-of-2.safetensors",
        "rank1-of-2.safetensors",
    ]
    rank0, rank1 = (load_file(tmp_path / f"rank{rank}-of-2.safetensors") for rank in (0, 1))
    assert rank0.keys() == rank1.keys()
    assert all(torch.equal(rank0[name], rank1[name]) for name in rank0)
    lora_b = [name for name in rank0 if "lora_B" in name]
    assert len(lora_b) == 14 and all(rank0[name].abs().sum() > 0 for name in lora_b)
    # Only rank 0 writes metrics.jsonl; tokens are counted over both ranks (3 steps x 2 ranks x 2 rows).
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [1, 2, 3]
    assert lines[-1]["epoch"] == 0.75  # 12 of the 16 rows
