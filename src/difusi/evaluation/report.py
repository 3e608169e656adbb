"""Compare evaluated runs (base, LoRA, LoRA+, PiSSA, ...) in one Markdown report with plots.

A run directory holds `eval/metrics.json` and `eval/generations.jsonl` (from `difusi evaluate`) and,
for a trained run, `metrics.jsonl` and `run_info.json` (from `difusi train`). Runs with the same
evaluation label are one method; their seeds are aggregated as mean ± sample standard deviation.
Every number in the report is read from those files or computed from them (confidence intervals
by bootstrap over the test rows in generations.jsonl).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from difusi.errors import DifusiError
from difusi.evaluation.metrics import (
    METRICS_BY_NAME,
    NELBO_PER_TOKEN,
    ConfidenceInterval,
    PairedDifference,
    paired_bootstrap_difference,
    seed_mean_bootstrap_ci,
)
from difusi.io import read_json, read_jsonl, write_text


@dataclass(frozen=True)
class ReportedMetric:
    """A metric as the report shows it: key in metrics.json, column title, decimals."""

    key: str
    title: str
    digits: int
    lower_is_better: bool = False


REPORTED_METRICS = (
    ReportedMetric("chrf_pp", "chrF++", 2),
    ReportedMetric("bleu", "BLEU", 2),
    ReportedMetric("rouge_l", "ROUGE-L", 2),
    ReportedMetric("exact_match", "Exact match %", 1),
    ReportedMetric("nelbo_per_token", "NELBO/token", 3, lower_is_better=True),
    ReportedMetric("mean_answer_tokens", "Answer tokens", 1),
    ReportedMetric("empty_rate", "Empty %", 1, lower_is_better=True),
    ReportedMetric("one_char_rate", "One-char %", 1, lower_is_better=True),
)
# The quality metrics drawn as bars (answer length, empty and one-character rates stay in the tables).
BAR_METRICS = tuple(
    m for m in REPORTED_METRICS if m.key in ("chrf_pp", "bleu", "rouge_l", "exact_match", "nelbo_per_token")
)
# The metrics the verdict tests, method against method; plus forgetting when runs measured it.
VERDICT_METRICS = tuple(
    m for m in REPORTED_METRICS if m.key in ("chrf_pp", "rouge_l", "exact_match", "nelbo_per_token")
)
GENERAL_NELBO = ReportedMetric("general_nelbo_per_token", "General-text NELBO/token", 3, lower_is_better=True)
# The metrics broken down per subset in the report (metrics.json holds them all).
SUBSET_METRICS = tuple(m for m in REPORTED_METRICS if m.key in ("chrf_pp", "exact_match", "nelbo_per_token"))
EXAMPLES = 3  # test rows shown side by side
EXAMPLE_CHARS = 240  # longer texts are cut in the examples table


@dataclass(frozen=True)
class Run:
    """One run directory's files."""

    path: Path
    eval_metrics: dict
    generations: list[dict]
    train_log: list[dict]
    run_info: dict | None
    general: list[dict]  # eval/general.jsonl: held-out general text, one scored document a row

    @property
    def label(self) -> str:
        return str(self.eval_metrics["label"])

    @property
    def seed(self) -> int | None:
        return self.run_info.get("seed") if self.run_info else None


@dataclass(frozen=True)
class MethodGroup:
    """All runs of one method (one evaluation label), one per seed."""

    label: str
    runs: list[Run]

    def values(self, metric: str) -> list[float]:
        """The metric's overall value in each run's metrics.json."""
        return [run.eval_metrics["overall"][metric] for run in self.runs]

    def info_values(self, key: str) -> list[float]:
        """A run_info.json figure across the trained runs that report it."""
        return [run.run_info[key] for run in self.runs if run.run_info and run.run_info.get(key) is not None]

    @property
    def trained(self) -> bool:
        return any(run.run_info for run in self.runs)


def load_run(path: str | Path) -> Run:
    """Read a run directory; eval/ is required, the training files only where they exist."""
    path = Path(path)
    eval_dir = path / "eval"
    if not (eval_dir / "metrics.json").is_file():
        raise DifusiError(f"{path} has no eval/metrics.json; run `difusi evaluate --out {eval_dir}` first")
    run_info_path, log_path = path / "run_info.json", path / "metrics.jsonl"
    return Run(
        path=path,
        eval_metrics=read_json(eval_dir / "metrics.json"),
        generations=sorted(read_jsonl(eval_dir / "generations.jsonl"), key=lambda row: row["id"]),
        train_log=read_jsonl(log_path) if log_path.is_file() else [],
        run_info=read_json(run_info_path) if run_info_path.is_file() else None,
        general=read_jsonl(eval_dir / "general.jsonl") if (eval_dir / "general.jsonl").is_file() else [],
    )


def load_groups(run_dirs: Sequence[str | Path]) -> list[MethodGroup]:
    """Load run directories and group them by evaluation label, in the order first given."""
    if not run_dirs:
        raise DifusiError("no run directories given; pass at least one RUN_DIR holding eval/metrics.json")
    groups: dict[str, list[Run]] = {}
    for run in map(load_run, run_dirs):
        same = groups.setdefault(run.label, [])
        clash = next((other for other in same if other.seed == run.seed), None)
        if clash is not None:
            raise DifusiError(
                f"{clash.path} and {run.path} are both {run.label!r} with seed {run.seed}; "
                "evaluate them with distinct --label values or compare one of them"
            )
        same.append(run)
    return [MethodGroup(label, runs) for label, runs in groups.items()]


def confidence_intervals(
    group: MethodGroup, n_resamples: int = 1000, seed: int = 0
) -> dict[str, ConfidenceInterval]:
    """95% bootstrap interval of each reported metric over the test rows (seed-mean for several runs)."""
    ids = [row["id"] for row in group.runs[0].generations]
    for run in group.runs[1:]:
        if [row["id"] for row in run.generations] != ids:
            raise DifusiError(
                f"runs of {group.label!r} ({group.runs[0].path}, {run.path}) were evaluated on different "
                "test rows; evaluate every run on the same test.parquet"
            )
    row_sets = [run.generations for run in group.runs]
    return {
        metric.key: seed_mean_bootstrap_ci(row_sets, METRICS_BY_NAME[metric.key], n_resamples, seed)
        for metric in REPORTED_METRICS
    }


def mean_std(values: Sequence[float], digits: int) -> str:
    """One value as is; several as `mean ± sample std`."""
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table of `rows` (cells already formatted) under `header`."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
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


def paired_differences(
    a: MethodGroup, b: MethodGroup, n_resamples: int = 1000, seed: int = 0
) -> dict[str, PairedDifference]:
    """B minus A for each verdict metric (and general-text NELBO when both measured it), paired by test row."""
    differences = {
        metric.key: paired_bootstrap_difference(
            [run.generations for run in a.runs],
            [run.generations for run in b.runs],
            METRICS_BY_NAME[metric.key],
            n_resamples,
            seed,
        )
        for metric in VERDICT_METRICS
    }
    if all(run.general for run in (*a.runs, *b.runs)):
        differences[GENERAL_NELBO.key] = paired_bootstrap_difference(
            [run.general for run in a.runs],
            [run.general for run in b.runs],
            NELBO_PER_TOKEN,
            n_resamples,
            seed,
        )
    return differences


def _judgement(a: str, b: str, differences: dict[str, PairedDifference]) -> str:
    """One plain sentence: where B is significantly better or worse than A, and where it is not."""
    metrics = {metric.key: metric for metric in (*VERDICT_METRICS, GENERAL_NELBO)}
    better, worse, same = [], [], []
    for key, difference in differences.items():
        metric = metrics[key]
        if not difference.significant:
            same.append(metric.title)
        elif (difference.estimate < 0) == metric.lower_is_better:
            better.append(metric.title)
        else:
            worse.append(metric.title)
    parts = [f"better on {', '.join(better)}"] if better else []
    parts += [f"worse on {', '.join(worse)}"] if worse else []
    parts += [f"no significant difference on {', '.join(same)}"] if same else []
    return f"**{b}** against **{a}**: " + "; ".join(parts) + "."


def verdict_section(groups: Sequence[MethodGroup], n_resamples: int = 1000, seed: int = 0) -> str:
    """Every method against the base (the group labelled `base`, else the first), then the methods
    against each other: paired differences with 95% intervals and a sentence each."""
    reference = next((group for group in groups if group.label == "base"), groups[0])
    others = [group for group in groups if group is not reference]
    pairs = [(reference, group) for group in others]
    pairs += [(a, b) for i, a in enumerate(others) for b in others[i + 1 :]]
    if not pairs:
        return "Only one method was given: nothing to compare."
    measured_general = all(run.general for group in groups for run in group.runs)
    metrics = (*VERDICT_METRICS, GENERAL_NELBO) if measured_general else VERDICT_METRICS
    rows, sentences = [], []
    for a, b in pairs:
        differences = paired_differences(a, b, n_resamples, seed)
        cells = []
        for metric in metrics:
            difference, d = differences[metric.key], metric.digits
            mark = " *" if difference.significant else ""
            cells.append(
                f"{difference.estimate:+.{d}f} [{difference.low:+.{d}f}, {difference.high:+.{d}f}]{mark}"
            )
        rows.append([f"{b.label} − {a.label}", *cells])
        sentences.append("- " + _judgement(a.label, b.label, differences))
    table = markdown_table(["Difference", *(metric.title for metric in metrics)], rows)
    forgetting = (
        f" {GENERAL_NELBO.title} is the negative ELBO of held-out general Indonesian text that no run "
        "trained on: a rise after fine-tuning is forgetting."
        if measured_general
        else ""
    )
    return (
        f"Paired bootstrap over the test rows ({n_resamples} resamples, seed {seed}): each resample "
        "draws the same rows for both methods, and a method's runs (seeds) are resampled too. "
        f"`*` marks a difference whose 95% interval excludes zero (significant).{forgetting}\n\n"
        + table
        + "\n\n"
        + "\n".join(sentences)
    )


def write_report(
    groups: Sequence[MethodGroup], out: str | Path, n_resamples: int = 1000, seed: int = 0
) -> Path:
    """Write OUT/report.md and its PNG figures comparing the groups (see `load_groups`); returns its path."""
    from difusi.evaluation import plots

    intervals = {group.label: confidence_intervals(group, n_resamples, seed) for group in groups}
    out = Path(out)
    plots.plot_metric_bars(groups, BAR_METRICS, intervals, out / "metrics.png")
    curves = [
        ("loss_vs_step.png", "Training loss against optimizer steps", "loss", "step", "training loss"),
        ("loss_vs_time.png", "Training loss against wall time", "loss", "wall_time_s", "training loss"),
        (
            "eval_elbo.png",
            "Eval negative ELBO during training",
            "eval_elbo",
            "step",
            "eval negative ELBO per token",
        ),
    ]
    figures = [
        f"![{title}]({name})"
        for name, title, key, x, ylabel in curves
        if plots.plot_training_curves(groups, key, x, out / name, ylabel)
    ]
    n_rows = len(groups[0].runs[0].generations)
    sections = [
        "# Method comparison",
        "Runs: "
        + "; ".join(f"{group.label}: " + ", ".join(str(run.path) for run in group.runs) for group in groups),
        "## Headline",
        "Test-set scores from each run's eval/metrics.json; with several seeds, mean ± sample standard "
        "deviation. chrF++, BLEU, ROUGE-L, exact match and empty rate on a 0-100 scale; NELBO/token is the "
        "Monte Carlo negative ELBO of the reference answers in nats per token (lower is better).",
        headline_table(groups),
        "## Verdict",
        verdict_section(groups, n_resamples, seed),
        "## 95% confidence intervals",
        f"Percentile bootstrap over the test rows ({n_resamples} resamples of {n_rows} rows, seed {seed}); "
        "for several seeds the seed-mean is resampled, so the interval reflects the test set, not the seeds.",
        interval_table(groups, intervals),
        "![Test metrics with 95% bootstrap intervals](metrics.png)",
        "## Per subset",
        *(f"{metric.title}:\n\n{subset_table(groups, metric)}" for metric in SUBSET_METRICS),
        "## Training cost",
        training_table(groups) if any(group.trained for group in groups) else "No trained runs were given.",
        *figures,
        "## Evaluation settings",
        settings_table(groups),
        "## Example generations",
        examples_section(groups),
    ]
    path = out / "report.md"
    write_text(path, "\n\n".join(sections) + "\n")
    return path
