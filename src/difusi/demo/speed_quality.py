"""Diffusion against its AR twin at equal training: the AR twin (the base's architecture pretrained
causally, fine-tuned on the same rows and steps), block-diffusion conversions of both bases, and the
sampler sweep against the AR twin (difusi.benchmarks.speed_quality)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from rich.console import Console

from difusi.benchmarks.speed_quality import speed_quality, write_speed_quality
from difusi.demo.config import BLOCK_TIMING_REPEATS, FULL_DEMO, DemoConfig, check_settings, training_config
from difusi.demo.stages import Stage, afresh, base_stage, run_stages
from difusi.errors import DifusiError
from difusi.evaluation.evaluate import load_test_rows
from difusi.model.loading import load_model
from difusi.tuning.train import train


def sweep_against_ar_twin(
    out: Path,
    config: DemoConfig,
    diffusion: Path | None,
    result: Path,
    limit: int | None,
    batch_sizes: tuple[int, ...],
    described: str = "Demo's fully fine-tuned diffusion model",
    block_models: dict[str, tuple[Path, Path | None]] | None = None,
    repeats: int = 1,
) -> str:
    """The sampler sweep of the diffusion model in `diffusion` (None: none) and the block-diffusion
    models in `block_models` (name -> checkpoint and adapter or None) against the demo's fine-tuned AR twin on the first `limit` test
    rows (None: all); writes speed_quality.json, .md and .png in `result`, returns the .md."""
    rows = load_test_rows(out / "data" / "test.parquet", limit)
    ar_model, tokenizer = load_model(out / "runs" / f"ar-full-seed{config.seed}" / "model", device="cpu")
    model = load_model(diffusion, device="cpu")[0] if diffusion is not None else None
    blocks = {name: load_model(c, a, device="cpu")[0] for name, (c, a) in (block_models or {}).items()}
    gen_length = config.sweep_gen_length
    results = speed_quality(
        model, tokenizer, rows, ar_model, gen_length, config.block_length, batch_sizes,
        block_models=blocks, repeats=repeats,
    )  # fmt: skip
    header = (
        f"{described} against its AR twin: {len(rows)} test rows, "
        f"{gen_length} generated tokens, block {config.block_length}, CPU"
        if model is not None
        else f"Block diffusion against the AR twin: {len(rows)} test rows, {gen_length} generated tokens, CPU"
    )
    header += f", best of {repeats} interleaved timings." if repeats > 1 else "."
    if blocks:
        header += (
            f" Block diffusion: {', '.join(blocks)}, each fine-tuned with the block objective "
            f"(blocks of {config.block_size}) for the AR twin's {config.train_steps} steps on the same data."
        )
    return write_speed_quality(results, len(rows), result, header)


def speed_quality_stages(
    out: Path, config: DemoConfig, limit: int | None, batch_sizes: tuple[int, ...]
) -> list[Stage]:
    """The AR twin (the base's architecture made causal; pretrained, then fully fine-tuned, on the
    same data, steps and tokens as the diffusion runs), block-diffusion conversions of the AR twin's
    base and of the diffusion base (the same fine-tuning, with the block objective), and the sampler
    sweep against the AR twin."""
    diffusion = out / "runs" / f"full-seed{config.seed}" / "model"
    ar_base, ar_run = out / "ar-base", out / "runs" / f"ar-full-seed{config.seed}"
    result = out / "speed-quality"

    def fine_tune(label: str, run: Path, base: Path, objective: str, token_shift: bool = False) -> Stage:
        training = training_config(config, run, base, out / "data", "full", config.seed, objective=objective)
        training = dataclasses.replace(training, block_size=config.block_size, token_shift=token_shift)
        return Stage(label, run / "model", lambda: train(afresh(training)))

    block_runs = {
        "block from AR twin": out / "runs" / f"block-ar-full-seed{config.seed}",
        "block from diffusion base": out / "runs" / f"block-diffusion-full-seed{config.seed}",
    }
    block_bases = [ar_base / "model", out / "base" / "model"]
    blocks = {name: (run / "model", None) for name, run in block_runs.items()}
    return [
        base_stage(config, ar_base, objective="ar"),
        fine_tune("fine-tune the AR twin (full)", ar_run, ar_base / "model", "ar"),
        *(  # the AR twin keeps its next-token head (token shift); the diffusion base predicts in place
            fine_tune(f"fine-tune {name} (full)", run, base, "block", token_shift=base == ar_base / "model")
            for (name, run), base in zip(block_runs.items(), block_bases, strict=True)
        ),
        Stage(
            "sweep samplers against the AR twin",
            result / "speed_quality.md",
            lambda: sweep_against_ar_twin(
                out, config, diffusion, result, limit, batch_sizes, block_models=blocks
            ),
        ),
        # The block models are fast enough to meet the AR twin on every test row: intervals that decide.
        Stage(
            "block diffusion against the AR twin on every test row",
            out / "speed-quality-block" / "speed_quality.md",
            lambda: sweep_against_ar_twin(
                out,
                config,
                None,
                out / "speed-quality-block",
                None,
                batch_sizes,
                block_models=blocks,
                repeats=BLOCK_TIMING_REPEATS,
            ),
        ),
    ]


def run_speed_quality(
    out: str | Path,
    config: DemoConfig = FULL_DEMO,
    console: Console | None = None,
    limit: int = 16,
    batch_sizes: tuple[int, ...] = (1, 8),
) -> Path:
    """After `run_demo` in `out`: the AR twin, the block conversions, the speed-quality sweep on
    `limit` test rows and the block models against the AR twin on every row; returns the last table."""
    console = console or Console()
    out = Path(out)
    if not (out / "runs" / f"full-seed{config.seed}" / "model").exists():
        raise DifusiError(f"{out} holds no finished demo; run `difusi demo --out {out}` (same options) first")
    check_settings(out, config)
    run_stages(speed_quality_stages(out, config, limit, batch_sizes), console)
    for table in (
        out / "speed-quality" / "speed_quality.md",
        out / "speed-quality-block" / "speed_quality.md",
    ):
        console.print(table.read_text(encoding="utf-8"), soft_wrap=True, markup=False)
    return table
