"""Evaluated runs: a run directory's files read back, runs grouped by method (evaluation label, one
run per seed), and the metrics a report shows.

A run directory holds `eval/metrics.json` and `eval/generations.jsonl` (from `difusi evaluate`) and,
for a trained run, `metrics.jsonl` and `run_info.json` (from `difusi train`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from difusi.errors import DifusiError
from difusi.io import read_json, read_jsonl


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
