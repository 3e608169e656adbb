"""Compare evaluated runs (base, LoRA, LoRA+, PiSSA, ...) in one Markdown report with plots.

Runs with the same evaluation label are one method (difusi.evaluation.runs); their seeds are aggregated
as mean ± sample standard deviation. Every number in the report is read from the run directories' files
or computed from them: confidence intervals by bootstrap over the test rows in generations.jsonl, and the
verdict's paired differences between methods on the same rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from difusi.errors import DifusiError
from difusi.evaluation import plots
from difusi.evaluation.metrics import (
    METRICS_BY_NAME,
    NELBO_PER_TOKEN,
    ConfidenceInterval,
    PairedDifference,
    paired_bootstrap_difference,
    seed_mean_bootstrap_ci,
)
from difusi.evaluation.runs import (
    BAR_METRICS,
    GENERAL_NELBO,
    REPORTED_METRICS,
    SUBSET_METRICS,
    VERDICT_METRICS,
    MethodGroup,
)
from difusi.evaluation.tables import (
    examples_section,
    headline_table,
    interval_table,
    markdown_table,
    settings_table,
    subset_table,
    training_table,
)
from difusi.io import write_text


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
    groups: Sequence[MethodGroup],
    out: str | Path,
    n_resamples: int = 1000,
    seed: int = 0,
    extra_sections: Sequence[str] = (),
) -> Path:
    """Write OUT/report.md and its PNG figures comparing the groups (see `load_groups`), the report ending
    with `extra_sections` (Markdown, each with its own heading); returns its path."""
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
        *extra_sections,
    ]
    path = out / "report.md"
    write_text(path, "\n\n".join(sections) + "\n")
    return path
