"""The speed-quality sweep on the tiny model: every setting answers every row; steps are counted."""

from __future__ import annotations

import copy
import json

import pyarrow as pa
import pyarrow.parquet as pq

from difusi.cli import main
from difusi.evaluation.evaluate import load_test_rows
from difusi.evaluation.speed_quality import AR, matching_quality, speed_quality, sweep_settings
from difusi.model.loading import load_model

ROWS = {
    "subset_name": ["dolly", "wikihow", "dolly"],
    "template_name": ["dolly_0", "wikihow_0", "dolly_0"],
    "input": ["Apa ibu kota Indonesia?", "Bagaimana cara mencuci tangan?", "Sebutkan satu pulau."],
    "output": ["Jakarta.", "Basahi tangan lalu pakai sabun.", "Jawa."],
}


def test_sweep_measures_every_setting_and_the_ar_twin(tiny_checkpoint, tmp_path):
    pq.write_table(pa.table(ROWS), tmp_path / "test.parquet")
    rows = load_test_rows(tmp_path / "test.parquet")
    model, tokenizer = load_model(str(tiny_checkpoint), device="cpu")
    ar_model = copy.deepcopy(model)
    ar_model.config.causal = True  # speed only: a causal decoder of the same size
    results = speed_quality(
        model, tokenizer, rows, ar_model, gen_length=16, block_length=8, batch_sizes=(1, 2)
    )

    names = [*sweep_settings(16, 8), AR]
    assert [(r.sampler, r.batch_size) for r in results] == [(n, b) for n in names for b in (1, 2)]
    steps = {r.sampler: r.tokens_per_step for r in results if r.batch_size == 2}
    # The fixed schedule: 16 positions in 16, 8 or 4 passes (no cache, no early stop).
    assert (steps["exact, 16 steps"], steps["exact, 8 steps"], steps["exact, 4 steps"]) == (1.0, 2.0, 4.0)
    for name in names[:-1]:  # greedy answers do not depend on the batch size
        one, two = (r for r in results if r.sampler == name)
        assert (one.chrf_pp, one.exact_match) == (two.chrf_pp, two.exact_match), name
    assert all(r.tokens_per_s > 0 and 0 <= r.chrf_pp <= 100 for r in results)
    assert matching_quality(results).startswith("Batch 1: ")


def test_cli_writes_json_table_and_plot(tiny_checkpoint, tmp_path, capsys):
    pq.write_table(pa.table(ROWS), tmp_path / "test.parquet")
    out = tmp_path / "sq"
    code = main(["bench", "speed-quality", "--model", str(tiny_checkpoint), "--data", str(tmp_path / "test.parquet"),
                 "--out", str(out), "--gen-length", "8", "--block-length", "8", "--batch-sizes", "2", "--limit", "2"])  # fmt: skip
    assert code == 0
    report = json.loads((out / "speed_quality.json").read_text())
    assert report["rows"] == 2 and len(report["results"]) == len(sweep_settings(8, 8))
    assert (out / "speed_quality.png").stat().st_size > 0
    assert "No AR twin was given." in (out / "speed_quality.md").read_text()
    assert "| exact, 8 steps |" in capsys.readouterr().out
