"""The speed-quality sweep on the tiny model: every setting answers every row; steps are counted."""

from __future__ import annotations

import copy
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from difusi.benchmarks.speed_quality import AR, matching_quality, speed_quality, sweep_settings
from difusi.cli import main
from difusi.evaluation.evaluate import load_test_rows
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


def block_and_ar_models(tiny_checkpoint, tmp_path):
    """(test rows, tokenizer, a block-size-4 copy and a causal copy of the tiny model): speed only."""
    pq.write_table(pa.table(ROWS), tmp_path / "test.parquet")
    model, tokenizer = load_model(str(tiny_checkpoint), device="cpu")
    block, ar_model = copy.deepcopy(model), copy.deepcopy(model)
    block.config.block_size, ar_model.config.causal = 4, True
    return load_test_rows(tmp_path / "test.parquet"), tokenizer, block, ar_model


def test_block_models_get_their_rows_and_paired_intervals_against_the_ar_twin(tiny_checkpoint, tmp_path):
    from difusi.benchmarks.speed_quality import block_settings, speed_quality_table

    rows, tokenizer, block, ar_model = block_and_ar_models(tiny_checkpoint, tmp_path)
    results = speed_quality(
        None, tokenizer, rows, ar_model, gen_length=8, batch_sizes=(1,), block_models={"b4": block}
    )
    names = [f"b4, {name}" for name in block_settings(8)] + [AR]
    assert [r.sampler for r in results] == names
    one_token = next(r for r in results if r.sampler == "b4, 1 token/pass")
    assert one_token.tokens_per_step <= 1.0 and one_token.answer_tokens_per_pass <= 1.0
    for row in results[:-1]:
        assert row.vs_ar is not None and row.vs_ar.low <= row.vs_ar.estimate <= row.vs_ar.high
        assert row.vs_ar.estimate == pytest.approx(row.chrf_pp - results[-1].chrf_pp)
    assert results[-1].vs_ar is None
    assert "| b4, threshold 0.9 |" in speed_quality_table(results)


def test_repeats_interleave_the_settings_and_keep_each_ones_fastest_run(
    tiny_checkpoint, tmp_path, monkeypatch
):
    import difusi.benchmarks.speed_quality as module

    rows, tokenizer, block, ar_model = block_and_ar_models(tiny_checkpoint, tmp_path)
    once = speed_quality(
        None, tokenizer, rows, ar_model, gen_length=8, batch_sizes=(1,), block_models={"b": block}
    )
    calls, answer = [], module.generate_answers

    def counted(runner, *args, **kwargs):
        calls.append(runner)
        return answer(runner, *args, **kwargs)

    # A fake clock: the first round's runs take 3 s each, the second's 1 s.
    ticks = iter([0, 3] * len(once) + [0, 1] * len(once))
    monkeypatch.setattr(module, "generate_answers", counted)
    monkeypatch.setattr(module.time, "perf_counter", lambda: next(ticks))
    twice = speed_quality(
        None, tokenizer, rows, ar_model, gen_length=8, batch_sizes=(1,), block_models={"b": block}, repeats=2
    )
    n = len(once)
    assert calls == [block] * (n - 1) + [ar_model] + [block] * (n - 1) + [ar_model]  # round after round
    assert [r.seconds for r in twice] == [1] * n
    assert [(r.sampler, r.chrf_pp, r.answer_tokens_per_pass) for r in twice] == [
        (r.sampler, r.chrf_pp, r.answer_tokens_per_pass) for r in once
    ]


def test_cli_takes_block_models_and_refuses_a_bad_spec(tiny_checkpoint, tmp_path, capsys):
    pq.write_table(pa.table(ROWS), tmp_path / "test.parquet")
    base = ["bench", "speed-quality", "--model", str(tiny_checkpoint), "--data", str(tmp_path / "test.parquet"),
            "--out", str(tmp_path / "sq"), "--gen-length", "8", "--block-length", "8", "--batch-sizes", "1", "--limit", "1"]  # fmt: skip
    assert main([*base, "--block-model", "nameonly"]) == 2
    assert "is not NAME=CHECKPOINT[:ADAPTER]" in capsys.readouterr().err
    assert main([*base, "--block-model", f"b={tiny_checkpoint}"]) == 2  # not a block model
    assert "is not a block-diffusion model" in capsys.readouterr().err


def test_matching_quality_says_how_a_setting_compares():
    from difusi.benchmarks.speed_quality import SpeedQuality
    from difusi.evaluation.metrics import PairedDifference

    def row(name, chrf, speed, interval=None):
        vs_ar = None if interval is None else PairedDifference(chrf - 60.0, *interval, 0.5)
        return SpeedQuality(name, 1, speed, 1.0, 1.0, 1.0, chrf, 0.0, vs_ar)

    ar = row(AR, 60.0, 100.0)
    close = matching_quality([row("a", 59.5, 150.0, (-2.0, 1.0)), ar])
    assert close == (
        "Batch 1: a matches the AR twin's quality within 1.0 chrF++: chrF++ 59.50 against 60.00, "
        "at 1.50x its speed (150.0 against 100.0 tokens/s)."
    )
    unsure = matching_quality([row("b", 55.0, 200.0, (-12.0, 1.5)), ar])
    assert (
        "b is not significantly worse than the AR twin on these rows (paired 95% interval [-12.00, +1.50]"
        in unsure
    )
    worse = matching_quality([row("c", 50.0, 300.0, (-14.0, -6.0)), ar])
    assert worse.endswith("the best, c, reaches 50.00.")
