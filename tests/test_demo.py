"""The demo pipeline at a tiny size: every artefact is written and the report's numbers come from the files."""

from __future__ import annotations

import io
import json

import pytest
from rich.console import Console

from difusi.demo import METHODS, DemoConfig, run_demo
from difusi.errors import DifusiError
from difusi.evaluation.report import REPORTED_METRICS

TINY_DEMO = DemoConfig(
    preset="tiny", pretrain_steps=4, pretrain_batch_size=4, pretrain_seq_len=32, cendol_rows=3000, clusters=3,
    per_cluster=4, test_size=6, train_steps=2, train_batch_size=4, max_length=64, gen_length=8, block_length=8,
    eval_mc_num=2,
)  # fmt: skip


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    console = Console(file=io.StringIO(), width=200)
    run_demo(out, TINY_DEMO, console)
    return out, console.file.getvalue()


def test_every_artefact_is_written(demo_dir):
    out, printed = demo_dir
    assert (out / "base" / "model" / "model.safetensors").is_file()
    assert len(list((out / "cendol" / "data").glob("train-*.parquet"))) == 4
    for name in ("train.parquet", "test.parquet", "data_card.json", "data_card.md"):
        assert (out / "data" / name).is_file(), name
    for method in METHODS:
        run = out / "runs" / method
        assert (run / "adapter" / "adapter_config.json").is_file()
        assert (run / "metrics.jsonl").read_text().strip() and (run / "run_info.json").is_file()
    for label in ("base", *METHODS):
        assert (out / "runs" / label / "eval" / "metrics.json").is_file()
        assert len((out / "runs" / label / "eval" / "generations.jsonl").read_text().splitlines()) == 6
    report = out / "report"
    assert {p.name for p in report.glob("*.png")} >= {"metrics.png", "loss_vs_step.png", "loss_vs_time.png"}
    assert f"Report: {report / 'report.md'}" in printed.replace("\n", "")


def test_report_numbers_come_from_the_metric_files(demo_dir):
    out, printed = demo_dir
    report = (out / "report" / "report.md").read_text()
    for label in ("base", *METHODS):
        overall = json.loads((out / "runs" / label / "eval" / "metrics.json").read_text())["overall"]
        row = next(line for line in report.splitlines() if line.startswith(f"| {label} |"))
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        expected = [f"{overall[m.key]:.{m.digits}f}" for m in REPORTED_METRICS]
        assert cells[2 : 2 + len(expected)] == expected, label
        assert row in printed  # the headline table printed at the end is the report's


def test_rerun_reuses_every_stage_and_other_settings_are_refused(demo_dir):
    out, _ = demo_dir
    console = Console(file=io.StringIO(), width=200)
    run_demo(out, TINY_DEMO, console)
    assert console.file.getvalue().count("done earlier, reused") == 11
    with pytest.raises(DifusiError, match="holds a demo run with other settings"):
        run_demo(out, DemoConfig(preset="tiny"), console)
