"""The demo: the base, the tasks, the seed's data preparation, the four methods fine-tuned at equal
steps, tokens and learning rate, every run evaluated, and the comparison report."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from rich.console import Console

from difusi.data.prepare import PrepareConfig
from difusi.demo.config import (
    FULL_DEMO,
    DemoConfig,
    check_settings,
    evaluation_config,
    fine_tuning_runs,
    run_dirs,
    training_config,
)
from difusi.demo.stages import (
    Stage,
    afresh,
    base_stage,
    evaluating,
    prepare_demo_data,
    run_stages,
    write_demo_report,
    write_probe,
)
from difusi.evaluation.evaluate import evaluate
from difusi.evaluation.runs import load_groups
from difusi.evaluation.tables import headline_table
from difusi.io import write_text
from difusi.synthetic.corpus import held_out_sentences
from difusi.synthetic.tasks import synth_tasks
from difusi.tuning.train import train


def demo_stages(out: Path, config: DemoConfig) -> list[Stage]:
    """The pipeline as an ordered list of stages, each writing under `out`."""
    base = out / "base" / "model"
    data = out / "data"
    general_text = out / "general-held-out.txt"
    probe = out / "general-probe.parquet"
    evaluation = evaluation_config(config, out)
    probing = dataclasses.replace(evaluation, general_text=None)  # the probe's rows are the measure
    preparation = PrepareConfig(
        embedder="tfidf", clusters=config.clusters, per_cluster=config.per_cluster,
        strat_fraction=config.strat_fraction, test_fraction=config.test_fraction, test_size=config.test_size,
        plot_umap=False, seed=config.seed,  # UMAP's compile alone takes most of a CPU minute
    )  # fmt: skip

    def fine_tune(run: Path, method: str, seed: int) -> Stage:
        trained = run / ("model" if method == "full" else "adapter")
        training = training_config(config, run, base, data, method, seed)
        return Stage(f"fine-tune with {method} (seed {seed})", trained, lambda: train(afresh(training)))

    runs = fine_tuning_runs(out, config)
    held_out = "\n".join(held_out_sentences()[: config.general_rows]) + "\n"
    return [
        base_stage(config, out / "base"),
        Stage("generate Cendol-shaped tasks", out / "cendol", lambda: synth_tasks(out / "cendol", config.task_rows, config.seed)),
        Stage("prepare train and test sets", data, lambda: prepare_demo_data(out / "cendol", data, preparation)),
        Stage("write held-out general text", general_text, lambda: write_text(general_text, held_out)),
        Stage("write the base's probe", probe, lambda: write_probe(probe, config)),
        Stage(
            "probe the base on its general tasks", out / "base" / "probe" / "metrics.json",
            lambda: evaluate(str(base), probe, out / "base" / "probe", label="base", config=probing, progress=False),
        ),
        *(fine_tune(run, method, seed) for method, seed, run in runs),
        evaluating("base", out / "runs" / "base", base, data, evaluation),
        *(evaluating(method, run, base, data, evaluation) for method, _, run in runs),
        Stage("write the comparison report", out / "report" / "report.md", lambda: write_demo_report(out, config)),
    ]  # fmt: skip


def run_demo(out: str | Path, config: DemoConfig = FULL_DEMO, console: Console | None = None) -> Path:
    """Run (or finish) the demo in `out`; print each stage's time and the headline table; return the report."""
    console = console or Console()
    out = Path(out)
    check_settings(out, config)
    started = time.perf_counter()
    run_stages(demo_stages(out, config), console)
    report = out / "report" / "report.md"
    console.print(f"\nDemo finished in {time.perf_counter() - started:.0f} s. Report: {report}\n")
    console.print(headline_table(load_groups(run_dirs(out, config))), soft_wrap=True, markup=False)
    return report
