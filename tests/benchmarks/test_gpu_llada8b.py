"""The GPU benchmark's CPU dry run: its build and parity stages on the tiny preset."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import torch

from difusi.benchmarks import gpu_llada8b
from difusi.data.chat_format import build_sft_example
from difusi.model.loading import load_model
from difusi.model.tokenizer import special_token_ids


def test_gpu_benchmark_script_builds_an_official_layout_checkpoint_on_cpu(tmp_path):
    """The GPU script's build and parity stages with the tiny preset (the full dry run is documented)."""
    results = gpu_llada8b.main(
        ["--preset", "tiny", "--device", "cpu", "--out", str(tmp_path), "--stages", "build,parity"]
    )

    assert results["device"] == "CPU" and results["build"]["shards"] == 1
    config = json.loads((tmp_path / "base" / "config.json").read_text())
    assert "dtype" not in config and config["precision"] == "amp_bf16"  # as the official config.json
    model, tokenizer = load_model(tmp_path / "base", device="cpu", dtype="auto")
    assert model.dtype == torch.bfloat16 and len(tokenizer) == 126464
    ids = special_token_ids(tokenizer, model.config)
    assert (ids.bos, ids.eos, ids.mask, ids.start_header, ids.end_header, ids.eot) == (
        126080, 126081, 126336, 126346, 126347, 126348,
    )  # fmt: skip
    text = "Kamis, 3 Oktober: “Sekolah dibuka” — kata Bu Ani. 🙂"
    assert tokenizer.decode(tokenizer.encode(text, add_special_tokens=False)) == text
    train = pq.read_table(tmp_path / "data" / "train.parquet").to_pylist()
    lengths = {len(build_sft_example(tokenizer, r["input"], r["output"], 10_000)["input_ids"]) for r in train}
    assert lengths == {96}  # the tiny preset's sequence length, every row exactly
    assert results["parity"]["float32_padded_max_abs"] == 0.0  # CPU against itself
    assert 0 < results["parity"]["bfloat16_padded_max_abs"] < 0.1 * results["parity"]["logit_scale_max_abs"]
