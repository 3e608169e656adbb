"""The report's Markdown tables: headline, intervals, per subset, training cost, settings and examples
side by side, each from method groups (difusi.evaluation.runs)."""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from difusi.evaluation.metrics import ConfidenceInterval
from difusi.evaluation.runs import EXAMPLE_CHARS, EXAMPLES, REPORTED_METRICS, MethodGroup, ReportedMetric


def mean_std(values: Sequence[float], digits: int) -> str:
    """One value as is; several as `mean ± sample std`."""
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def markdown_table(
    header: Sequence[str], rows: Sequence[Sequence[str]], right_from: int | None = None
) -> str:
    """A Markdown table of `rows` (cells already formatted) under `header`; columns `right_from` on
    (numbers) right-aligned."""
    rule = ["---:" if right_from is not None and i >= right_from else "---" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(rule) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _runs_cell(group: MethodGroup) -> str:
    seeds = [run.seed for run in group.runs if run.seed is not None]
    if not seeds:
        return str(len(group.runs))
    return f"{len(group.runs)} (seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))})"


def _trainable_cell(group: MethodGroup) -> str:
    trainable, total = group.info_values("trainable_params"), group.info_values("total_params")
    if not trainable:
        return "-"
    share = f" ({100 * trainable[0] / total[0]:.3f}%)" if total else ""
    return f"{trainable[0]:,}{share}"


def headline_table(groups: Sequence[MethodGroup]) -> str:
    """Markdown table: one row per method, its test metrics (mean ± std over seeds) and trainable parameters."""
    header = ["Method", "Runs", *(metric.title for metric in REPORTED_METRICS), "Trainable params"]
    rows = [
        [
            group.label,
            _runs_cell(group),
            *(mean_std(group.values(metric.key), metric.digits) for metric in REPORTED_METRICS),
            _trainable_cell(group),
        ]
        for group in groups
    ]
    return markdown_table(header, rows)


def interval_table(groups: Sequence[MethodGroup], intervals: dict[str, dict[str, ConfidenceInterval]]) -> str:
    """Markdown table of each metric's estimate with its 95% interval, `estimate [low, high]`."""
    header = ["Method", *(metric.title for metric in REPORTED_METRICS)]
    rows = []
    for group in groups:
        cells = []
        for metric in REPORTED_METRICS:
            ci, d = intervals[group.label][metric.key], metric.digits
            cells.append(f"{ci.estimate:.{d}f} [{ci.low:.{d}f}, {ci.high:.{d}f}]")
        rows.append([group.label, *cells])
    return markdown_table(header, rows)


def subset_table(groups: Sequence[MethodGroup], metric: ReportedMetric) -> str:
    """Markdown table of one metric per subset_name (rows) and method (columns), mean over seeds."""
    subsets = sorted(
        {name for group in groups for run in group.runs for name in run.eval_metrics["per_subset"]}
    )
    rows = []
    for name in subsets:
        counts = {
            run.eval_metrics["per_subset"][name]["n"]
            for g in groups
            for run in g.runs
            if name in run.eval_metrics["per_subset"]
        }
        cells = []
        for group in groups:
            values = [
                run.eval_metrics["per_subset"][name][metric.key]
                for run in group.runs
                if name in run.eval_metrics["per_subset"]
            ]
            cells.append(mean_std(values, metric.digits) if values else "-")
        rows.append([name, "/".join(map(str, sorted(counts))), *cells])
    return markdown_table(["Subset", "Rows", *(group.label for group in groups)], rows)


def _last(log: list[dict], key: str) -> float | None:
    return next((entry[key] for entry in reversed(log) if entry.get(key) is not None), None)


def training_table(groups: Sequence[MethodGroup]) -> str:
    """Markdown table of cost and training figures per trained method (mean ± std over seeds)."""
    rows = []
    for group in groups:
        if not group.trained:
            continue
        logs = [run.train_log for run in group.runs if run.train_log]

        def from_logs(key: str, digits: int, logs=logs) -> str:
            values = [value for log in logs if (value := _last(log, key)) is not None]
            return mean_std(values, digits) if values else "-"

        def from_info(key: str, digits: int, scale: float = 1.0, group=group) -> str:
            values = [value * scale for value in group.info_values(key)]
            return mean_std(values, digits) if values else "-"

        rows.append(
            [
                group.label,
                _trainable_cell(group),
                from_info("peak_memory_bytes", 1, 2**-20),
                from_info("time_per_step_s", 3),
                from_info("tokens_per_s", 1),
                from_logs("step", 0),
                from_logs("loss", 4),
                from_logs("eval_elbo", 4),
                from_logs("wall_time_s", 1),
            ]
        )
    header = [
        "Method",
        "Trainable params",
        "Peak memory (MiB)",
        "Time/step (s)",
        "Tokens/s",
        "Steps",
        "Final loss",
        "Final eval ELBO",
        "Train time (s)",
    ]
    return markdown_table(header, rows)


def settings_table(groups: Sequence[MethodGroup]) -> str:
    """Markdown table of how each run was evaluated (sampler, Monte Carlo draws, time)."""
    rows = []
    for group in groups:
        for run in group.runs:
            m, s = run.eval_metrics, run.eval_metrics["sampler"]
            rows.append(
                [
                    group.label,
                    "-" if run.seed is None else str(run.seed),
                    str(m["n"]),
                    str(s["steps"]),
                    str(s["gen_length"]),
                    str(s["block_length"]),
                    str(s["temperature"]),
                    str(s["cfg_scale"]),
                    s["remasking"],
                    str(m["mc_num"]),
                    f"{m['seconds']:.1f}",
                ]
            )
    header = [
        "Method",
        "Seed",
        "Rows",
        "Steps",
        "Gen length",
        "Block",
        "Temp.",
        "CFG",
        "Remasking",
        "MC draws",
        "Eval time (s)",
    ]
    return markdown_table(header, rows)


def _cell_text(text: str) -> str:
    text = " ".join(str(text).split())
    text = text if len(text) <= EXAMPLE_CHARS else text[: EXAMPLE_CHARS - 1] + "…"
    return text.replace("|", "\\|") or "*(empty)*"


def examples_section(groups: Sequence[MethodGroup], count: int = EXAMPLES) -> str:
    """A few test rows (one per subset first) with every method's generation side by side (first seed)."""
    first = groups[0].runs[0].generations
    chosen, seen = [], set()
    for row in first:  # one row from each subset before a second from any
        if row["subset_name"] not in seen:
            seen.add(row["subset_name"])
            chosen.append(row)
    chosen += [row for row in first if row not in chosen]
    sections = []
    for row in chosen[:count]:
        answers = [
            [
                group.label,
                _cell_text(next(g["generation"] for g in group.runs[0].generations if g["id"] == row["id"])),
            ]
            for group in groups
        ]
        sections.append(
            f"**Test row {row['id']}** ({row['subset_name']})\n\n"
            f"> Prompt: {_cell_text(row['prompt'])}\n>\n> Reference: {_cell_text(row['reference'])}\n\n"
            + markdown_table(["Method", "Generation"], answers)
        )
    return "\n\n".join(sections)
