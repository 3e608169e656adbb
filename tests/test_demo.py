"""The demo pipeline at a tiny size: every artefact is written and the report's numbers come from the files."""

from __future__ import annotations

import dataclasses
import io
import json
import shutil
from pathlib import Path

import pytest
from rich.console import Console
from safetensors import safe_open

from difusi.cli import main as cli_main
from difusi.demo import METHODS, DemoConfig, run_block_methods, run_demo, run_speed_quality
from difusi.demo.config import pretraining_config, shipped_base, training_config
from difusi.demo.stages import copy_shipped_base
from difusi.errors import DifusiError
from difusi.evaluation.runs import REPORTED_METRICS
from difusi.model.loading import load_model
from difusi.model.presets import preset_tokenizer
from difusi.tuning.config import PretrainConfig, TrainConfig
from difusi.tuning.run_directory import differing_setting

TINY_DEMO = DemoConfig(
    preset="tiny", pretrain=True, pretrain_steps=4, pretrain_ar_steps=2, pretrain_batch_size=4, pretrain_seq_len=32, general_tasks=20, task_rows=300,
    clusters=3, per_cluster=4, test_size=6, train_steps=2, train_batch_size=4, max_length=160, gen_length=8,
    block_length=8, eval_mc_num=2, general_rows=5, probe_per_kind=2, sweep_gen_length=32,
)  # fmt: skip
RUNS = [f"{method}-seed42" for method in METHODS]


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
    assert len((out / "general-held-out.txt").read_text().splitlines()) == 5
    assert "Departures from the seed's split (this demo only)" in (out / "data" / "data_card.md").read_text()
    for name in ("train.parquet", "test.parquet", "data_card.json", "data_card.md"):
        assert (out / "data" / name).is_file(), name
    assert (out / "runs" / "full-seed42" / "model" / "model.safetensors").is_file()
    for name in RUNS[1:]:
        assert (out / "runs" / name / "adapter" / "adapter_config.json").is_file()
    # Like for like: the three adapters train the same number of parameters, the head included.
    trainable = {
        json.loads((out / "runs" / name / "run_info.json").read_text())["trainable_params"]
        for name in RUNS[1:]
    }
    assert len(trainable) == 1
    with safe_open(out / "runs" / "lora-seed42" / "adapter" / "adapter_model.safetensors", "pt") as adapter:
        names = list(adapter.keys())
    assert "base_model.model.model.transformer.ff_out.lora_A.weight" in names  # the output head
    for name in RUNS:
        run = out / "runs" / name
        assert (run / "metrics.jsonl").read_text().strip() and (run / "run_info.json").is_file()
    for name in ("base", *RUNS):
        eval_dir = out / "runs" / name / "eval"
        assert len((eval_dir / "generations.jsonl").read_text().splitlines()) == 6
        assert len((eval_dir / "general.jsonl").read_text().splitlines()) == 5  # the forgetting measure
    report = out / "report"
    assert {p.name for p in report.glob("*.png")} >= {"metrics.png", "loss_vs_step.png", "loss_vs_time.png"}
    assert f"Report: {report / 'report.md'}" in printed.replace("\n", "")


def test_report_numbers_come_from_the_metric_files(demo_dir):
    out, printed = demo_dir
    report = (out / "report" / "report.md").read_text()
    assert "## Verdict" in report and "General-text NELBO/token" in report
    for label, name in zip(("base", *METHODS), ("base", *RUNS), strict=True):
        overall = json.loads((out / "runs" / name / "eval" / "metrics.json").read_text())["overall"]
        row = next(line for line in report.splitlines() if line.startswith(f"| {label} |"))
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        expected = [f"{overall[m.key]:.{m.digits}f}" for m in REPORTED_METRICS]
        assert cells[2 : 2 + len(expected)] == expected, label
        assert row in printed  # the headline table printed at the end is the report's
    # The base's probe on its general tasks (held-out sentences) closes the report.
    probe = json.loads((out / "base" / "probe" / "metrics.json").read_text())
    assert probe["n"] == 7 * TINY_DEMO.probe_per_kind
    section = report[report.index("## The base on its general tasks") :]
    for kind, scores in probe["per_subset"].items():
        assert (
            f"| {kind} | {TINY_DEMO.probe_per_kind} | {scores['exact_match']:.1f} | {scores['chrf_pp']:.2f} |"
            in section
        )


def test_rerun_reuses_every_stage_and_other_settings_are_refused(demo_dir):
    out, _ = demo_dir
    console = Console(file=io.StringIO(), width=200)
    run_demo(out, TINY_DEMO, console)
    assert console.file.getvalue().count("done earlier, reused") == 16
    with pytest.raises(DifusiError, match="holds a demo run with other settings"):
        run_demo(out, DemoConfig(preset="tiny"), console)
    # A stamp written before a setting existed counts it at its default: the run is reused.
    stamp = json.loads((out / "demo-settings.json").read_text())
    del stamp["block_size"]
    (out / "demo-settings.json").write_text(json.dumps(stamp))
    run_demo(out, TINY_DEMO, console)
    assert console.file.getvalue().count("done earlier, reused") == 32


def test_a_stage_cut_short_starts_afresh_and_gives_the_same_run(demo_dir, tmp_path):
    out = tmp_path / "demo"
    shutil.copytree(demo_dir[0], out)
    run = out / "runs" / "lora-seed42"
    before = json.loads((run / "eval" / "metrics.json").read_text())["overall"]
    for partial in ("adapter", "eval"):  # killed while saving: the run's logs are there, its adapter not
        shutil.rmtree(run / partial)
    (out / "report" / "report.md").unlink()
    console = Console(file=io.StringIO(), width=200)
    run_demo(out, TINY_DEMO, console)
    assert console.file.getvalue().count("done earlier, reused") == 13
    assert json.loads((run / "eval" / "metrics.json").read_text())["overall"] == before


def test_more_seeds_add_runs_and_the_report_covers_them(demo_dir):
    out, _ = demo_dir
    console = Console(file=io.StringIO(), width=200)
    run_demo(out, dataclasses.replace(TINY_DEMO, seeds=2), console)
    printed = console.file.getvalue()
    assert printed.count("done earlier, reused") == 15  # seed 42's stages but the report, rewritten
    for method in METHODS:
        assert (out / "runs" / f"{method}-seed43" / "eval" / "metrics.json").is_file()
    report = (out / "report" / "report.md").read_text()
    assert report.count("2 (seeds 42, 43)") == len(METHODS)


def test_the_ar_twin_sees_the_same_rows_and_steps(demo_dir):
    out, _ = demo_dir
    config = dataclasses.replace(TINY_DEMO, seeds=2)
    run_speed_quality(out, config, Console(file=io.StringIO(), width=200), limit=3, batch_sizes=(1, 2))
    pairs = [(out / "base", out / "ar-base"), (out / "runs" / "full-seed42", out / "runs" / "ar-full-seed42")]
    for diffusion, ar in pairs:
        a, b = (json.loads((d / "run_info.json").read_text()) for d in (diffusion, ar))
        assert b["objective"] == "ar" and a["objective"] == "diffusion"
        for key in ("steps", "tokens_seen", "sequences", "train_rows"):
            assert a.get(key) == b.get(key), key
    ar_info = json.loads((out / "runs" / "ar-full-seed42" / "run_info.json").read_text())
    for start in ("ar", "diffusion"):  # block conversions: the AR twin's steps, rows and tokens
        run = out / "runs" / f"block-{start}-full-seed42"
        info = json.loads((run / "run_info.json").read_text())
        assert info["objective"] == "block"
        assert [info[k] for k in ("steps", "train_rows")] == [ar_info[k] for k in ("steps", "train_rows")]
        config = json.loads((run / "model" / "config.json").read_text())
        assert config["block_size"] == TINY_DEMO.block_size and config["token_shift"] is (start == "ar")
    table = (out / "speed-quality" / "speed_quality.md").read_text()
    assert "| AR twin, KV cache |" in table and "| dual cache + threshold 0.9 |" in table
    assert (
        "| block from AR twin, threshold 0.9 |" in table
        and "| block from diffusion base, 1 token/pass |" in table
    )
    every_row = json.loads((out / "speed-quality-block" / "speed_quality.json").read_text())
    assert every_row["rows"] == TINY_DEMO.test_size  # the block models and the AR twin on every test row
    assert {r["sampler"] for r in every_row["results"]} == {
        f"block from {start}, {setting}"
        for start in ("AR twin", "diffusion base")
        for setting in (*(f"threshold {t}" for t in (0.3, 0.4, 0.5, 0.7, 0.9)), "1 token/pass")
    } | {"AR twin, KV cache"}


def test_the_seeds_methods_convert_the_base_to_block_diffusion(demo_dir, tmp_path):
    out = tmp_path / "demo"
    shutil.copytree(demo_dir[0], out)
    report = run_block_methods(out, TINY_DEMO, Console(file=io.StringIO(), width=200)).read_text()
    for method in METHODS:
        run = out / "runs" / f"block-diffusion-{method}-seed42"
        metrics = json.loads((run / "eval" / "metrics.json").read_text())
        assert metrics["label"] == f"block {method}" and metrics["n"] == TINY_DEMO.test_size
        assert json.loads((run / "run_info.json").read_text())["objective"] == "block"
        if method != "full":
            attention = json.loads((run / "adapter" / "attention.json").read_text())
            assert attention["block_size"] == TINY_DEMO.block_size and attention["causal"] is False
    assert "block pissa − block full" in report or "block full − block pissa" in report
    against = json.loads((out / "block-report" / "against-ar-twin" / "speed_quality.json").read_text())
    assert against["rows"] == TINY_DEMO.test_size
    names = {r["sampler"] for r in against["results"]}
    assert {f"block {m}, threshold 0.9" for m in METHODS} | {"AR twin, KV cache"} <= names
    assert all(r["vs_ar"] is not None for r in against["results"] if r["sampler"] != "AR twin, KV cache")


@pytest.mark.parametrize("method", METHODS)
def test_the_recipe_files_are_the_demo_settings(method):
    configs, out = Path(__file__).parents[1] / "configs", Path("runs/demo")
    pretraining = pretraining_config(DemoConfig(), out / "base")
    assert PretrainConfig.from_yaml(configs / "demo-pretrain.yaml") == dataclasses.replace(
        pretraining, out=""
    )
    training = training_config(
        DemoConfig(), out / method, out / "base" / "model", Path("data/demo"), method, 42
    )
    assert TrainConfig.from_yaml(configs / f"demo-{method}.yaml") == dataclasses.replace(training, out="")


@pytest.mark.parametrize("objective", ["diffusion", "ar"])
def test_the_shipped_bases_are_the_recipe_and_copy_to_a_working_model(objective, tmp_path):
    recipe = pretraining_config(DemoConfig(), tmp_path / "base", objective)
    shipped = shipped_base(objective)
    pretrained = PretrainConfig.from_yaml(shipped / "config.yaml")
    assert differing_setting(pretrained, recipe) is None  # the same run, where it was written aside
    assert differing_setting(pretrained, dataclasses.replace(recipe, max_steps=7)) == "max_steps"
    info = json.loads((shipped / "run_info.json").read_text())
    assert (info["steps"], info["objective"], info["preset"]) == (recipe.max_steps, objective, "demo")
    with pytest.raises(
        DifusiError, match="demo-.*base was pretrained with other settings .* pass --pretrain"
    ):
        copy_shipped_base(dataclasses.replace(recipe, max_steps=100))
    assert not (tmp_path / "base").exists()

    copy_shipped_base(recipe)
    model, tokenizer = load_model(tmp_path / "base" / "model", device="cpu")
    assert sum(p.numel() for p in model.parameters()) == info["total_params"]
    assert model.config.causal == (objective == "ar")  # the diffusion base ends bidirectional
    # Its tokenizer is the preset's, so the demo's data and probe encode as in its pretraining.
    assert tokenizer.get_vocab() == preset_tokenizer("demo").get_vocab()


def test_cli_refuses_bad_seeds_and_a_missing_demo(tmp_path, capsys):
    assert cli_main(["demo", "--out", str(tmp_path / "d"), "--seeds", "0"]) == 2
    assert "difusi demo: error: --seeds must be at least 1, got 0" in capsys.readouterr().err
    with pytest.raises(DifusiError, match="holds no finished demo; run `difusi demo --out"):
        run_speed_quality(tmp_path / "empty", TINY_DEMO, Console(file=io.StringIO()))
    assert not (tmp_path / "d").exists() and not (tmp_path / "empty").exists()
