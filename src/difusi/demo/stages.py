"""The demo's stages: a stage is a named step with the output whose existence says it is done; the
stages that copy or pretrain the base, evaluate a run, prepare the data and write the report."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
from rich.console import Console

from difusi.data.prepare import PrepareConfig, prepare
from difusi.demo.config import DemoConfig, pretraining_config, run_dirs, shipped_base
from difusi.errors import DifusiError
from difusi.evaluation.evaluate import evaluate
from difusi.evaluation.report import write_report
from difusi.evaluation.runs import load_groups
from difusi.evaluation.tables import markdown_table
from difusi.io import atomic_directory, atomic_path
from difusi.synthetic.general import general_probe
from difusi.tuning.config import PretrainConfig
from difusi.tuning.pretrain import pretrain
from difusi.tuning.run_directory import differing_setting


@dataclass
class Stage:
    name: str
    output: Path  # the stage is done when this exists
    run: Callable[[], object]


def afresh(run_config):
    """`run_config`, its output directory emptied first: what is there is a run cut short."""
    shutil.rmtree(run_config.out, ignore_errors=True)
    return run_config


def run_stages(stages: list[Stage], console: Console) -> None:
    """Run each stage whose output is missing, printing its time."""
    for number, stage in enumerate(stages, 1):
        label = f"[{number}/{len(stages)}] {stage.name}"
        if stage.output.exists():
            console.print(f"{label}: done earlier, reused", style="dim")
            continue
        stage_started = time.perf_counter()
        with console.status(label):
            stage.run()
        console.print(f"{label}: {time.perf_counter() - stage_started:.0f} s")


def copy_shipped_base(pretraining: PretrainConfig) -> None:
    """Copy the shipped run of `pretraining`'s objective to `pretraining.out`, refusing one that was
    pretrained with other settings (the seed's experiment starts from a pretrained model too)."""
    source = shipped_base(pretraining.objective)
    shipped = PretrainConfig.from_yaml(source / "config.yaml")
    if differing_setting(shipped, pretraining) is not None:  # bookkeeping (out, logging) aside
        raise DifusiError(
            f"the shipped base {source.name} was pretrained with other settings than this demo's; "
            "pass --pretrain to pretrain one here"
        )
    with atomic_directory(pretraining.out) as staging:
        shutil.copytree(source, staging, dirs_exist_ok=True)


def base_stage(config: DemoConfig, out: Path, objective: str = "diffusion") -> Stage:
    """The stage that puts the base (or the AR twin's base) in `out`: pretrained here with
    `config.pretrain`, copied from the shipped run otherwise."""
    pretraining = pretraining_config(config, out, objective)
    what = "AR twin" if objective == "ar" else f"{config.preset} base"
    if config.pretrain:
        return Stage(f"pretrain the {what}", out / "model", lambda: pretrain(afresh(pretraining)))
    return Stage(f"copy the shipped {what}", out / "model", lambda: copy_shipped_base(pretraining))


def evaluating(label: str, run: Path, base: Path, data: Path, evaluation) -> Stage:
    """Evaluate a run into run/eval: a label ending in "full" its model/, "base" the base, any other
    base + the run's adapter/."""
    full = label.endswith("full")
    model = run / "model" if full else base
    adapter = run / "adapter" if not full and label != "base" else None
    return Stage(
        f"evaluate {run.name}",
        run / "eval" / "metrics.json",
        lambda: evaluate(
            str(model), data / "test.parquet", run / "eval", str(adapter) if adapter else None,
            label=label, config=evaluation, progress=False,
        ),
    )  # fmt: skip


DEMO_SPLIT_NOTE = """
## Departures from the seed's split (this demo only)

The source is `difusi synth-cendol --tasks` data: the six subsets in equal shares (the real
collection is 93% wikipedia_id), so the seed's stratified test draw on `template_name` leaves
every subset in the test set. Sizes are CPU-sized: {train} training rows ({clusters} clusters of
{per_cluster}), a {test}-row test set (the seed: 10,000 and 100), drawn from rows outside training
by the seed's procedure (stratified undersampling, fraction {test_fraction}, then a random draw).
"""


def prepare_demo_data(source: Path, data: Path, preparation: PrepareConfig) -> None:
    """`difusi prepare` on the task rows, with the demo's departures from the seed noted in the data card."""
    note = DEMO_SPLIT_NOTE.format(
        train=preparation.clusters * preparation.per_cluster, clusters=preparation.clusters,
        per_cluster=preparation.per_cluster, test=preparation.test_size, test_fraction=preparation.test_fraction,
    )  # fmt: skip
    prepare(source, data, preparation, card_note=note)


def write_probe(path: Path, config: DemoConfig) -> None:
    """The base's probe: every general task of its pretraining, on held-out sentences it never saw."""
    with atomic_path(path) as tmp:
        pq.write_table(general_probe(config.probe_per_kind, config.seed), tmp)


def probe_section(metrics: dict) -> str:
    """The report's section on the base's probe (`evaluate`'s metrics on the probe rows)."""

    def cells(name: str, n: int, scores: dict) -> list[str]:
        return [name, str(n), f"{scores['exact_match']:.1f}", f"{scores['chrf_pp']:.2f}"]

    rows = [cells(kind, scores["n"], scores) for kind, scores in metrics["per_subset"].items()]
    rows.append(cells("all", metrics["n"], metrics["overall"]))
    intro = (
        "The base's own pretraining tasks (difusi.synthetic.general.GENERAL_TASKS: copy a sentence, its first "
        "or last word, the word after a given word, ...), asked about held-out sentences that neither "
        "its tokenizer nor its pretraining saw: does the base follow the chat format and copy from "
        "its prompt before any fine-tuning?"
    )
    table = markdown_table(["Task", "Rows", "Exact match %", "chrF++"], rows)
    return f"## The base on its general tasks\n\n{intro}\n\n{table}"


def write_demo_report(out: Path, config: DemoConfig) -> Path:
    """The comparison report over every run, ending with the base's probe."""
    probe = json.loads((out / "base" / "probe" / "metrics.json").read_text())
    groups = load_groups(run_dirs(out, config))
    return write_report(groups, out / "report", extra_sections=[probe_section(probe)])
