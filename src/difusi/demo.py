"""The offline end-to-end demo: the seed's whole pipeline, CPU-sized, with nothing downloaded.

offline Indonesian corpus -> project tokenizer -> `small` base pretrained with the diffusion loss
-> generated Cendol data -> prepare (TF-IDF embedder, demo-sized counts) -> LoRA, LoRA+, PiSSA
-> evaluation of the base and each method -> comparison report.

Every stage writes its own directory under OUT and is skipped when that output already exists, so
a rerun (or a run after an interruption) only does what is missing.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from difusi.errors import DifusiError
from difusi.io import write_json

METHODS = ("lora", "loraplus", "pissa")


@dataclass(frozen=True)
class DemoConfig:
    """Sizes of every demo stage (the defaults are the full demo; see QUICK_DEMO)."""

    preset: str = "small"
    pretrain_steps: int = 320
    pretrain_batch_size: int = 16
    pretrain_seq_len: int = 96
    cendol_rows: int = 40_000
    strat_fraction: float = 0.03
    clusters: int = 10
    per_cluster: int = 40
    test_fraction: float = 0.0002
    test_size: int = 40
    train_steps: int = 60
    train_batch_size: int = 8
    max_length: int = 128
    learning_rate: float = 5e-3
    gen_length: int = 32
    block_length: int = 32
    eval_mc_num: int = 8
    seed: int = 42


QUICK_DEMO = DemoConfig(
    pretrain_steps=50, cendol_rows=20_000, per_cluster=20, test_size=20, train_steps=20, gen_length=16,
    block_length=16, eval_mc_num=4,
)  # fmt: skip


@dataclass
class Stage:
    name: str
    output: Path  # the stage is done when this exists
    run: Callable[[], object]


def demo_stages(out: Path, config: DemoConfig) -> list[Stage]:
    """The pipeline as an ordered list of stages, each writing under `out`."""
    from difusi.data.prepare import PrepareConfig, prepare
    from difusi.data.synth import synth_cendol
    from difusi.diffusion.sampler import SamplerSettings
    from difusi.evaluation.evaluate import EvaluationConfig, evaluate
    from difusi.evaluation.report import load_groups, write_report
    from difusi.tuning.config import PretrainConfig, TrainConfig
    from difusi.tuning.pretrain import pretrain
    from difusi.tuning.train import train

    base = out / "base" / "model"
    data = out / "data"
    runs = out / "runs"
    settings = dict(seed=config.seed, logging_steps=1, save_steps=10_000, precision="auto")
    evaluation = EvaluationConfig(
        sampler=SamplerSettings(
            steps=config.gen_length, gen_length=config.gen_length, block_length=config.block_length
        ),
        batch_size=16,
        mc_num=config.eval_mc_num,
        max_length=config.max_length + config.gen_length,
        seed=config.seed,
    )
    pretraining = PretrainConfig(
        out=str(out / "base"), preset=config.preset, max_steps=config.pretrain_steps,
        batch_size=config.pretrain_batch_size, seq_len=config.pretrain_seq_len, **settings,
    )  # fmt: skip
    preparation = PrepareConfig(
        embedder="tfidf", clusters=config.clusters, per_cluster=config.per_cluster,
        strat_fraction=config.strat_fraction, test_fraction=config.test_fraction, test_size=config.test_size,
        seed=config.seed,
    )  # fmt: skip

    def training(method: str) -> TrainConfig:
        return TrainConfig(
            out=str(runs / method), base=str(base), data=str(data), method=method, max_steps=config.train_steps,
            batch_size=config.train_batch_size, grad_accumulation=1, max_length=config.max_length,
            learning_rate=config.learning_rate, eval_steps=max(config.train_steps // 4, 1),
            eval_mc_num=config.eval_mc_num, eval_rows=config.test_size, **settings,
        )  # fmt: skip

    def evaluating(label: str, adapter: Path | None) -> Callable[[], object]:
        return lambda: evaluate(
            str(base), data / "test.parquet", runs / label / "eval", str(adapter) if adapter else None,
            label=label, config=evaluation, progress=False,
        )  # fmt: skip

    run_dirs = [runs / "base", *(runs / method for method in METHODS)]
    return [
        Stage(f"pretrain the {config.preset} base", base, lambda: pretrain(pretraining)),
        Stage("generate Cendol-shaped data", out / "cendol", lambda: synth_cendol(out / "cendol", config.cendol_rows, config.seed, shards=4)),
        Stage("prepare train and test sets", data, lambda: prepare(out / "cendol", data, preparation)),
        *(Stage(f"fine-tune with {m}", runs / m / "adapter", lambda m=m: train(training(m))) for m in METHODS),
        Stage("evaluate the base", runs / "base" / "eval" / "metrics.json", evaluating("base", None)),
        *(
            Stage(f"evaluate {m}", runs / m / "eval" / "metrics.json", evaluating(m, runs / m / "adapter"))
            for m in METHODS
        ),
        Stage("write the comparison report", out / "report" / "report.md", lambda: write_report(load_groups(run_dirs), out / "report")),
    ]  # fmt: skip


def check_settings(out: Path, config: DemoConfig) -> None:
    """Refuse to mix two demo configurations in one directory (stages would be reused wrongly)."""
    stamp = out / "demo-settings.json"
    settings = dataclasses.asdict(config)
    if stamp.is_file() and json.loads(stamp.read_text()) != settings:
        raise DifusiError(f"{out} holds a demo run with other settings; pass another --out or delete {out}")
    out.mkdir(parents=True, exist_ok=True)
    write_json(stamp, settings)


def run_demo(out: str | Path, config: DemoConfig = DemoConfig(), console: Console | None = None) -> Path:
    """Run (or finish) the demo in `out`; print each stage's time and the headline table; return the report."""
    from difusi.evaluation.report import headline_table, load_groups

    console = console or Console()
    out = Path(out)
    check_settings(out, config)
    started = time.perf_counter()
    stages = demo_stages(out, config)
    for number, stage in enumerate(stages, 1):
        label = f"[{number}/{len(stages)}] {stage.name}"
        if stage.output.exists():
            console.print(f"{label}: done earlier, reused", style="dim")
            continue
        stage_started = time.perf_counter()
        with console.status(label):
            stage.run()
        console.print(f"{label}: {time.perf_counter() - stage_started:.0f} s")
    report = out / "report" / "report.md"
    console.print(f"\nDemo finished in {time.perf_counter() - started:.0f} s. Report: {report}\n")
    table = headline_table(load_groups([out / "runs" / name for name in ("base", *METHODS)]))
    console.print(table, soft_wrap=True, markup=False)
    return report
