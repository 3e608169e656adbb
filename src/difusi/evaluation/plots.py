"""PNG figures for the comparison report: training curves and metric bars with confidence intervals.

Figures are built with matplotlib's object API (no pyplot state, no display needed) and saved
atomically. A method keeps one colour in every figure; its seeds share that colour.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from difusi.evaluation.metrics import ConfidenceInterval
from difusi.evaluation.runs import MethodGroup, ReportedMetric
from difusi.io import atomic_path

SMOOTHING = 20  # the running mean spans 1/SMOOTHING of a curve: masked-diffusion losses are noisy


def save_figure(figure: Figure, path: str | Path) -> None:
    """Lay `figure` out and write it as PNG, atomically."""
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=120, format="png")


def plot_per_batch_size(
    rows: Sequence, width: float, height: float, path: str | Path, draw: Callable, **labels
) -> None:
    """One panel per batch size found in `rows` (objects with `batch_size`), side by side, each drawn by
    `draw(axis, that batch size's rows, first panel or not)` and labelled with `labels` (`Axes.set`
    keywords); saved as PNG at `path`."""
    batch_sizes = sorted({row.batch_size for row in rows})
    figure = Figure(figsize=(width * len(batch_sizes), height))
    axes = figure.subplots(1, len(batch_sizes), squeeze=False)[0]
    for number, (axis, batch_size) in enumerate(zip(axes, batch_sizes, strict=True)):
        draw(axis, [row for row in rows if row.batch_size == batch_size], number == 0)
        axis.set(title=f"batch {batch_size}", **labels)
        axis.grid(alpha=0.3)
    save_figure(figure, path)


def _running_mean(values: np.ndarray) -> tuple[np.ndarray, int]:
    window = max(1, len(values) // SMOOTHING)
    return np.convolve(values, np.ones(window) / window, mode="valid"), window


def plot_training_curves(groups: Sequence[MethodGroup], key: str, x: str, path: Path, ylabel: str) -> bool:
    """Plot `key` against `x` from every run's metrics.jsonl (raw faint, running mean bold); False if no data."""
    figure = Figure(figsize=(7, 4.5))
    axes = figure.subplots()
    drawn = False
    for colour, group in enumerate(groups):
        labelled = False
        for run in group.runs:
            points = [
                (entry[x], entry[key])
                for entry in run.train_log
                if entry.get(key) is not None and entry.get(x) is not None
            ]
            if not points:
                continue
            xs, ys = (np.asarray(values, dtype=float) for values in zip(*points, strict=True))
            smooth, window = _running_mean(ys)
            axes.plot(xs, ys, color=f"C{colour}", alpha=0.25, linewidth=0.8)
            label = None if labelled else group.label
            axes.plot(xs[window - 1 :], smooth, color=f"C{colour}", linewidth=1.8, label=label)
            labelled = drawn = True
    if not drawn:
        return False
    axes.set_xlabel({"step": "optimizer step", "wall_time_s": "wall time (s)"}.get(x, x))
    axes.set_ylabel(ylabel)
    axes.grid(alpha=0.3)
    axes.legend()
    save_figure(figure, path)
    return True


def plot_metric_bars(
    groups: Sequence[MethodGroup],
    metrics: Sequence[ReportedMetric],
    intervals: dict[str, dict[str, ConfidenceInterval]],
    path: Path,
) -> None:
    """One panel per metric: a bar per method (estimate) with its 95% bootstrap interval."""
    figure = Figure(figsize=(3.2 * len(metrics), 3.8))
    positions = np.arange(len(groups))
    for axes, metric in zip(figure.subplots(1, len(metrics)), metrics, strict=True):
        cis = [intervals[group.label][metric.key] for group in groups]
        estimates = np.array([ci.estimate for ci in cis])
        errors = np.array([[ci.estimate - ci.low for ci in cis], [ci.high - ci.estimate for ci in cis]])
        axes.bar(positions, estimates, color=[f"C{i}" for i in positions], yerr=errors, capsize=4)
        axes.set_xticks(positions, [group.label for group in groups], rotation=30, ha="right")
        axes.set_title(metric.title + (" (lower is better)" if metric.lower_is_better else ""))
        axes.grid(axis="y", alpha=0.3)
    save_figure(figure, path)
