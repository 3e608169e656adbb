"""`difusi compare` on synthetic run directories: files written, numbers taken from the metric files."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest

from difusi.cli import main
from difusi.errors import DifusiError
from difusi.evaluation.evaluate import summarize
from difusi.evaluation.metrics import METRICS_BY_NAME, seed_mean_bootstrap_ci
from difusi.evaluation.report import write_report
from difusi.evaluation.runs import load_groups
from difusi.evaluation.tables import headline_table

REFERENCES = [
    ("wikihow", "Cuci tangan dengan sabun selama dua puluh detik."),
    ("wikihow", "Siapkan bahan lalu aduk hingga rata."),
    ("dolly", "Jakarta adalah ibu kota Indonesia."),
    ("dolly", "Gunung tertinggi adalah Puncak Jaya."),
    ("indo_puisi", "Angin malam berbisik pelan di antara daun."),
    ("indo_puisi", "Laut biru menyimpan rindu yang dalam."),
]
SAMPLER = {
    "steps": 8,
    "gen_length": 8,
    "block_length": 4,
    "temperature": 0.0,
    "cfg_scale": 0.0,
    "remasking": "low_confidence",
}


def _write_run(path: Path, label: str, generations: list[str], seed: int | None, scale: float) -> None:
    rows = [
        {
            "id": i,
            "subset_name": subset,
            "template_name": f"{subset}_0",
            "prompt": f"Pertanyaan {i}",
            "reference": reference,
            "generation": generation,
            "answer_tokens": len(generation.split()) + 1,
            "nelbo": scale * (i + 2),
            "reference_tokens": len(reference.split()) + 1,
        }
        for i, ((subset, reference), generation) in enumerate(zip(REFERENCES, generations, strict=True))
    ]
    overall, per_subset = summarize(rows)
    metrics = {
        "label": label,
        "base": "base-dir",
        "adapter": None,
        "n": len(rows),
        "overall": overall,
        "per_subset": per_subset,
        "sampler": SAMPLER,
        "mc_num": 4,
        "max_length": 64,
        "truncated_prompts": 0,
        "truncated_references": 0,
        "seconds": 1.25 * scale,
        "generation_seconds": 1.0,
    }
    (path / "eval").mkdir(parents=True)
    (path / "eval" / "metrics.json").write_text(json.dumps(metrics))
    (path / "eval" / "generations.jsonl").write_text(
        "".join(json.dumps(row) + "\n" for row in reversed(rows))
    )
    if seed is None:
        return
    log = [
        {
            "step": step,
            "epoch": step / 40,
            "loss": scale * (5 - step / 10),
            "lr": {"default": 1e-4},
            "tokens_per_s": 900.0 + step,
            "wall_time_s": 0.5 * step,
            **({"eval_elbo": 4.5 - step / 20} if step % 10 == 0 else {}),
        }
        for step in range(1, 41)
    ]
    (path / "metrics.jsonl").write_text("".join(json.dumps(entry) + "\n" for entry in log))
    info = {
        "method": label,
        "base": "base-dir",
        "seed": seed,
        "trainable_params": 12_288,
        "total_params": 4_000_000,
        "peak_memory_bytes": int(scale * 300 * 2**20),
        "time_per_step_s": 0.125 * scale,
        "tokens_per_s": 950.0 * scale,
    }
    (path / "run_info.json").write_text(json.dumps(info))


@pytest.fixture(scope="module")
def run_dirs(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("runs")
    references = [reference for _, reference in REFERENCES]
    partly = references[:3] + ["tidak tahu", "", "Laut biru menyimpan rindu."]
    mostly = references[:5] + ["Laut biru."]
    specs = [
        ("base", "base", ["", "halo", "tidak tahu", "ya", "", "laut"], None, 1.5),
        ("lora-s1", "lora", partly, 1, 1.0),
        ("lora-s2", "lora", mostly, 2, 1.1),
        ("pissa-s1", "pissa", mostly, 1, 0.9),
    ]
    for name, label, generations, seed, scale in specs:
        _write_run(root / name, label, generations, seed, scale)
    return [root / name for name, *_ in specs]


def _table_row(report: str, heading: str, label: str) -> list[str]:
    """Cells of the row for `label` in the first table after `heading`."""
    section = report.split(heading, 1)[1]
    line = next(line for line in section.splitlines() if line.startswith(f"| {label} |"))
    return [cell.strip() for cell in line.strip("|").split("|")]


def _overall(run_dir: Path, key: str) -> float:
    return json.loads((run_dir / "eval" / "metrics.json").read_text())["overall"][key]


def test_compare_writes_report_and_plots_with_numbers_from_the_files(run_dirs, tmp_path):
    base, lora1, lora2, pissa = run_dirs
    groups = load_groups(run_dirs)
    assert [group.label for group in groups] == ["base", "lora", "pissa"]
    path = write_report(groups, tmp_path / "report", n_resamples=200)
    report = path.read_text()
    for name in ("metrics.png", "loss_vs_step.png", "loss_vs_time.png", "eval_elbo.png"):
        assert (tmp_path / "report" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({name})" in report

    # Headline: one run as written in metrics.json, two seeds as mean ± sample std of the files' values.
    base_row = _table_row(report, "## Headline", "base")
    assert base_row[1] == "1"
    assert base_row[2] == f"{_overall(base, 'chrf_pp'):.2f}"
    assert base_row[6] == f"{_overall(base, 'nelbo_per_token'):.3f}"
    assert base_row[-1] == "-"
    lora_row = _table_row(report, "## Headline", "lora")
    assert lora_row[1] == "2 (seeds 1, 2)"
    for column, key, digits in [
        (2, "chrf_pp", 2),
        (3, "bleu", 2),
        (5, "exact_match", 1),
        (8, "empty_rate", 1),
    ]:
        values = [_overall(lora1, key), _overall(lora2, key)]
        assert (
            lora_row[column]
            == f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"
        )
    assert lora_row[-1] == "12,288 (0.307%)"
    assert _table_row(report, "## Headline", "pissa")[2] == f"{_overall(pissa, 'chrf_pp'):.2f}"

    # Intervals: estimate is the files' (seed-mean) value, bounds from the bootstrap of generations.jsonl.
    rows = [
        [json.loads(line) for line in (run / "eval" / "generations.jsonl").read_text().splitlines()]
        for run in (lora1, lora2)
    ]
    rows = [sorted(run_rows, key=lambda row: row["id"]) for run_rows in rows]
    ci = seed_mean_bootstrap_ci(rows, METRICS_BY_NAME["chrf_pp"], n_resamples=200, seed=0)
    assert ci.estimate == pytest.approx(
        statistics.mean([_overall(lora1, "chrf_pp"), _overall(lora2, "chrf_pp")])
    )
    assert (
        _table_row(report, "## 95% confidence intervals", "lora")[1]
        == f"{ci.estimate:.2f} [{ci.low:.2f}, {ci.high:.2f}]"
    )

    # Training cost from run_info.json and the last metrics.jsonl entry, seeds aggregated.
    train_row = _table_row(report, "## Training cost", "lora")
    assert train_row[2] == f"315.0 ± {statistics.stdev([300.0, 330.0]):.1f}"  # MiB
    assert train_row[3] == f"{statistics.mean([0.125, 0.1375]):.3f} ± {statistics.stdev([0.125, 0.1375]):.3f}"
    assert train_row[5] == "40 ± 0"
    assert train_row[6] == f"{statistics.mean([1.0, 1.1]):.4f} ± {statistics.stdev([1.0, 1.1]):.4f}"
    assert train_row[7] == "2.5000 ± 0.0000"
    assert "| base |" not in report.split("## Training cost", 1)[1].split("## Evaluation settings")[0]

    # Per subset: rows per subset and each method's value from per_subset.
    per_subset = json.loads((pissa / "eval" / "metrics.json").read_text())["per_subset"]["dolly"]
    assert _table_row(report, "## Per subset", "dolly")[1] == "2"
    assert _table_row(report, "## Per subset", "dolly")[-1] == f"{per_subset['chrf_pp']:.2f}"
    assert _table_row(report, "NELBO/token:", "dolly")[-1] == f"{per_subset['nelbo_per_token']:.3f}"
    assert _table_row(report, "Exact match %:", "dolly")[-1] == f"{per_subset['exact_match']:.1f}"

    # Examples: one row from each subset, every method's generation side by side.
    examples = report.split("## Example generations", 1)[1]
    assert "**Test row 0** (wikihow)" in examples and "**Test row 2** (dolly)" in examples
    assert "**Test row 4** (indo_puisi)" in examples
    assert "| base | *(empty)* |" in examples


def test_headline_table_for_the_demo(run_dirs):
    table = headline_table(load_groups(run_dirs[:2]))
    lines = table.splitlines()
    assert lines[0].startswith("| Method | Runs | chrF++ | BLEU | ROUGE-L |")
    assert [line.split("|")[1].strip() for line in lines[2:]] == ["base", "lora"]


def test_base_only_comparison_has_no_training_figures(run_dirs, tmp_path):
    path = write_report(load_groups(run_dirs[:1]), tmp_path, n_resamples=50)
    assert "No trained runs were given." in path.read_text()
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["metrics.png"]


def test_compare_cli_and_its_errors(run_dirs, tmp_path, capsys):
    assert main(["compare", *map(str, run_dirs), "--out", str(tmp_path / "out"), "--resamples", "50"]) == 0
    assert "| lora | 2 (seeds 1, 2) |" in capsys.readouterr().out
    assert (tmp_path / "out" / "report.md").is_file()

    assert main(["compare", str(tmp_path), "--out", str(tmp_path / "x")]) == 2
    assert f"difusi compare: error: {tmp_path} has no eval/metrics.json" in capsys.readouterr().err
    with pytest.raises(DifusiError, match="are both 'lora' with seed 1"):
        load_groups([run_dirs[1], run_dirs[1]])
