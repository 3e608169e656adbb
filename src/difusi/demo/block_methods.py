"""The seed's methods on the block objective: full fine-tuning, LoRA, LoRA+ and PiSSA each convert the
demo's diffusion base to block diffusion, compared with paired verdicts and against the AR twin."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from rich.console import Console

from difusi.demo.config import (
    BLOCK_TIMING_REPEATS,
    FULL_DEMO,
    METHODS,
    DemoConfig,
    check_settings,
    evaluation_config,
    training_config,
)
from difusi.demo.speed_quality import speed_quality_stages, sweep_against_ar_twin
from difusi.demo.stages import Stage, afresh, evaluating, run_stages
from difusi.diffusion.sampler import SamplerSettings
from difusi.errors import DifusiError
from difusi.evaluation.report import write_report
from difusi.evaluation.runs import load_groups
from difusi.tuning.train import train


def block_method_runs(out: Path, config: DemoConfig) -> list[tuple[str, Path]]:
    """(method, run directory) of the seed's methods converting the diffusion base to block diffusion
    (the full one is also the speed-quality sweep's "block from diffusion base")."""
    return [(method, out / "runs" / f"block-diffusion-{method}-seed{config.seed}") for method in METHODS]


def block_method_stages(out: Path, config: DemoConfig) -> list[Stage]:
    """Full fine-tuning, LoRA, LoRA+ and PiSSA each convert the demo's diffusion base to block
    diffusion (the D2F question: can an adapter teach a bidirectional model block decoding?) with
    the demo's fine-tuning settings, are evaluated on its test set with the block sampler
    (threshold 0.9, `sweep_gen_length` tokens: an answer ends at its end of text), and compared in
    a report with paired verdicts; then each against the AR twin (fine-tuned here if the
    speed-quality stages have not) on every test row, speed and quality."""
    base, data = out / "base" / "model", out / "data"
    gen_length = config.sweep_gen_length
    evaluation = dataclasses.replace(
        evaluation_config(config, out),
        sampler=SamplerSettings(steps=gen_length, gen_length=gen_length, block_length=gen_length, threshold=0.9),
        max_length=config.max_length + gen_length,
    )  # fmt: skip
    runs = block_method_runs(out, config)
    ar_twin = speed_quality_stages(out, config, None, (1, 8))[:2]  # its base and fine-tuning (reused)
    stages = list(ar_twin)
    for method, run in runs:
        training = training_config(config, run, base, data, method, config.seed, objective="block")
        training = dataclasses.replace(training, block_size=config.block_size)
        trained = run / ("model" if method == "full" else "adapter")
        stages.append(Stage(f"fine-tune block {method}", trained, lambda t=training: train(afresh(t))))
    stages += [evaluating(f"block {method}", run, base, data, evaluation) for method, run in runs]
    report = out / "block-report"
    stages.append(
        Stage(
            "write the block-objective report",
            report / "report.md",
            lambda: write_report(load_groups([run for _, run in runs]), report),
        )
    )
    blocks = {
        f"block {method}": (run / "model", None) if method == "full" else (base, run / "adapter")
        for method, run in runs
    }
    stages.append(
        Stage(
            "block methods against the AR twin on every test row",
            report / "against-ar-twin" / "speed_quality.md",
            lambda: sweep_against_ar_twin(
                out,
                config,
                None,
                report / "against-ar-twin",
                None,
                (1, 8),
                block_models=blocks,
                repeats=BLOCK_TIMING_REPEATS,
            ),
        )
    )
    return stages


def run_block_methods(
    out: str | Path, config: DemoConfig = FULL_DEMO, console: Console | None = None
) -> Path:
    """After `run_demo` in `out`: the seed's methods on the block objective; returns the report."""
    console = console or Console()
    out = Path(out)
    if not (out / "base" / "model").exists() or not (out / "data").exists():
        raise DifusiError(f"{out} holds no finished demo; run `difusi demo --out {out}` (same options) first")
    check_settings(out, config)
    run_stages(block_method_stages(out, config), console)
    report = out / "block-report" / "report.md"
    against = out / "block-report" / "against-ar-twin" / "speed_quality.md"
    console.print(against.read_text(encoding="utf-8"), soft_wrap=True, markup=False)
    console.print(f"Block-objective report: {report}")
    return report
