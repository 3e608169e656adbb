"""Two CPU processes under `accelerate launch` (the shipped DDP config, gloo): both ranks end identical."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file


def test_two_process_ddp_run_keeps_ranks_identical(make_config, tmp_path, launcher):
    config = make_config(method="loraplus", batch_size=2, grad_accumulation=1, max_steps=3)
    config.to_yaml(tmp_path / "recipe.yaml")
    worker = Path(__file__).parent / "ddp_worker.py"
    launcher.run("ddp", [str(worker), str(tmp_path / "recipe.yaml"), str(tmp_path)])
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
