"""`accelerate launch -m difusi evaluate` on 2 CPU processes writes the report one process writes."""

from __future__ import annotations

import json
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from difusi.demo import SHIPPED_BASES
from difusi.synthetic.corpus import indonesian_sentences

# The demo's pretrained base (a random model gives every row one answer at temperature 0).
BASE = SHIPPED_BASES / "demo-base" / "model"

# 9 rows in batches of 2: 5 batches, so the second process has a round with nothing to do.
ROWS = 9
HOW = ("seconds", "generation_seconds", "processes")  # how the report was made, not what it says


@pytest.fixture(scope="module")
def evaluation_data(tmp_path_factory):
    """A test.parquet of real Indonesian sentences (prompt: the first words; reference: the next),
    and a general-text file for the forgetting score."""
    root = tmp_path_factory.mktemp("evaluation_data")
    sentences = indonesian_sentences()
    words = [sentence.split() for sentence in sentences[:ROWS]]
    columns = {
        "dataset_name": ["cendol_collection_v2"] * ROWS,
        "subset_name": ["wikipedia_id", "news_id", "dolly_id"] * (ROWS // 3),
        "prompt_id": ["p0"] * ROWS,
        "template_name": ["t0", "t1", "t2"] * (ROWS // 3),
        "dataset_key": ["test"] * ROWS,
        "input": ["Lanjutkan: " + " ".join(w[:5]) for w in words],
        "output": [" ".join(w[5:12]) for w in words],
    }
    pq.write_table(pa.table(columns), root / "test.parquet")
    (root / "general.txt").write_text("\n".join(sentences[200:205]) + "\n", encoding="utf-8")
    return root


def arguments(checkpoint, data, out, temperature: float) -> list[str]:
    return [
        "evaluate", "--base", str(checkpoint), "--data", str(data / "test.parquet"), "--out", str(out),
        "--steps", "8", "--gen-length", "8", "--block-length", "4", "--batch-size", "2", "--mc-num", "2",
        "--max-length", "64", "--temperature", str(temperature), "--general-text", str(data / "general.txt"),
        "--no-progress",
    ]  # fmt: skip


@pytest.mark.parametrize("temperature", [0.0, 0.8])
def test_two_processes_write_the_report_of_one(evaluation_data, tmp_path, launcher, temperature):
    one, two = tmp_path / "one", tmp_path / "two"
    result = subprocess.run(
        [sys.executable, "-m", "difusi", *arguments(BASE, evaluation_data, one, temperature)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    launcher.run("ddp", ["-m", "difusi", *arguments(BASE, evaluation_data, two, temperature)])

    assert sorted(p.name for p in two.iterdir()) == ["general.jsonl", "generations.jsonl", "metrics.json"]
    for name in ("generations.jsonl", "general.jsonl"):
        assert (two / name).read_bytes() == (one / name).read_bytes()
    generations = [json.loads(line) for line in (two / "generations.jsonl").read_text().splitlines()]
    assert [row["id"] for row in generations] == list(range(ROWS))
    assert len({row["generation"] for row in generations}) > 1  # real answers, not one repeated
    metrics_one, metrics_two = (json.loads((out / "metrics.json").read_text()) for out in (one, two))
    assert (metrics_one["processes"], metrics_two["processes"]) == (1, 2)
    for key in HOW:
        metrics_one.pop(key), metrics_two.pop(key)
    assert metrics_two == metrics_one
    assert metrics_two["n"] == ROWS and set(metrics_two["per_subset"]) == {
        "dolly_id",
        "news_id",
        "wikipedia_id",
    }


def test_two_processes_continue_the_journal_of_a_killed_run(evaluation_data, tmp_path, launcher):
    from test_evaluate import kill_after_two_batches

    whole, cut = tmp_path / "whole", tmp_path / "cut"
    result = subprocess.run(
        [sys.executable, "-m", "difusi", *arguments(BASE, evaluation_data, whole, 0.8)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    kill_after_two_batches(arguments(BASE, evaluation_data, cut, 0.8))  # one process, 4 of 9 rows kept

    launched = launcher.run("ddp", ["-m", "difusi", *arguments(BASE, evaluation_data, cut, 0.8)])
    assert "continuing with 4 answered rows" in launched.stderr  # the main process read the journal
    assert (cut / "generations.jsonl").read_bytes() == (whole / "generations.jsonl").read_bytes()
    assert not (cut / "generations.partial.jsonl").exists()
