"""Corpus metrics over test rows, and bootstrap confidence intervals for them.

A row is one generations.jsonl record: `reference` and `generation` strings, `answer_tokens` (the
generated answer's length in model tokens) and, when scored, `nelbo` / `reference_tokens` (the
reference answer's summed negative ELBO and its token count). Every metric is computed from per-row
sufficient statistics summed over rows (n-gram matches for chrF++ and BLEU, value and count for the
means), so a bootstrap resample only re-weights rows and never re-tokenises text.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from rouge_score import rouge_scorer
from sacrebleu.metrics import BLEU, CHRF

from difusi.errors import DifusiError

Row = Mapping[str, object]

# chrF++ is chrF with word unigrams and bigrams added (word_order=2), the variant MT papers report.
_CHRF_PP = CHRF(word_order=2)
_BLEU = BLEU()


@dataclass(frozen=True)
class CorpusMetric:
    """A corpus-level metric: per-row statistics [n_rows, k], summed, then turned into one score."""

    name: str
    statistics: Callable[[Sequence[Row]], np.ndarray]
    from_statistics: Callable[[np.ndarray], float]

    def __call__(self, rows: Sequence[Row]) -> float:
        if not rows:
            raise DifusiError(f"cannot compute {self.name} over zero rows; pass at least one test row")
        return self.from_statistics(self.statistics(rows).sum(axis=0))


@dataclass(frozen=True)
class ConfidenceInterval:
    """A point estimate with a percentile-bootstrap interval [low, high]."""

    estimate: float
    low: float
    high: float


def _sacrebleu_metric(name: str, metric: BLEU | CHRF) -> CorpusMetric:
    # sacrebleu splits corpus scoring into per-segment statistics and a score from their sum, for
    # exactly this use (its own paired bootstrap works the same way); summing them reproduces
    # corpus_score() to the last digit.
    def statistics(rows: Sequence[Row]) -> np.ndarray:
        hypotheses = [str(row["generation"]) for row in rows]
        references = [[str(row["reference"]) for row in rows]]
        return np.asarray(metric._extract_corpus_statistics(hypotheses, references), dtype=np.float64)

    return CorpusMetric(
        name, statistics, lambda summed: float(metric._compute_score_from_stats(summed).score)
    )


def _mean_metric(name: str, value: Callable[[Row], float], scale: float = 1.0) -> CorpusMetric:
    def statistics(rows: Sequence[Row]) -> np.ndarray:
        return np.asarray([[value(row), 1.0] for row in rows], dtype=np.float64)

    return CorpusMetric(name, statistics, lambda summed: float(scale * summed[0] / summed[1]))


def _ratio_metric(name: str, numerator: str, denominator: str) -> CorpusMetric:
    def statistics(rows: Sequence[Row]) -> np.ndarray:
        return np.asarray([[row[numerator], row[denominator]] for row in rows], dtype=np.float64)

    return CorpusMetric(name, statistics, lambda summed: float(summed[0] / summed[1]))


def normalize_answer(text: str) -> str:
    """Exact-match normal form: NFKC, case-folded, punctuation removed, whitespace collapsed."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = "".join(" " if unicodedata.category(ch).startswith("P") else ch for ch in text)
    return " ".join(text.split())


class WordTokenizer:
    """ROUGE tokenizer keeping every Unicode letter and digit run (rouge-score's default drops non-ASCII)."""

    _word = re.compile(r"[^\W_]+")

    def tokenize(self, text: str) -> list[str]:
        return self._word.findall(text.casefold())


_ROUGE_L = rouge_scorer.RougeScorer(["rougeL"], tokenizer=WordTokenizer())


def rouge_l(reference: str, generation: str) -> float:
    """Sentence ROUGE-L F-measure in [0, 1] (longest common subsequence of words)."""
    return _ROUGE_L.score(reference, generation)["rougeL"].fmeasure


def exact_match(reference: str, generation: str) -> bool:
    """True when the two answers are equal after `normalize_answer`."""
    return normalize_answer(reference) == normalize_answer(generation)


def is_empty(generation: str) -> bool:
    """True for an answer that is empty or whitespace once decoded up to EOS / end of turn."""
    return not generation.strip()


def is_one_character(generation: str) -> bool:
    """True for an answer made of a single character, maybe repeated (".", "1", ",,,,"), whitespace
    aside: the collapse of a model that learnt an answer's form but not its content."""
    return len(set("".join(generation.split()))) == 1


# Scores in metrics.json: chrF++, BLEU, ROUGE-L, exact match, empty and one-character rates on a 0-100 scale;
# answer length in model tokens; negative ELBO in nats per reference token.
CHRF_PP = _sacrebleu_metric("chrf_pp", _CHRF_PP)
BLEU_SCORE = _sacrebleu_metric("bleu", _BLEU)
ROUGE_L = _mean_metric("rouge_l", lambda row: rouge_l(str(row["reference"]), str(row["generation"])), 100.0)
EXACT_MATCH = _mean_metric(
    "exact_match", lambda row: exact_match(str(row["reference"]), str(row["generation"])), 100.0
)
MEAN_ANSWER_TOKENS = _mean_metric("mean_answer_tokens", lambda row: float(row["answer_tokens"]))
EMPTY_RATE = _mean_metric("empty_rate", lambda row: is_empty(str(row["generation"])), 100.0)
ONE_CHAR_RATE = _mean_metric("one_char_rate", lambda row: is_one_character(str(row["generation"])), 100.0)
NELBO_PER_TOKEN = _ratio_metric("nelbo_per_token", "nelbo", "reference_tokens")

GENERATION_METRICS = (
    CHRF_PP,
    BLEU_SCORE,
    ROUGE_L,
    EXACT_MATCH,
    MEAN_ANSWER_TOKENS,
    EMPTY_RATE,
    ONE_CHAR_RATE,
)
ALL_METRICS = (*GENERATION_METRICS, NELBO_PER_TOKEN)
METRICS_BY_NAME = {metric.name: metric for metric in ALL_METRICS}


def score_rows(rows: Sequence[Row], metrics: Sequence[CorpusMetric] = ALL_METRICS) -> dict[str, float]:
    """Every metric over the same rows, as {name: score}."""
    return {metric.name: metric(rows) for metric in metrics}


def bootstrap_ci(
    rows: Sequence[Row],
    metric_fn: CorpusMetric,
    n_resamples: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> ConfidenceInterval:
    """Percentile bootstrap over test rows: resample rows with replacement, recompute the corpus metric.

    The estimate is the metric on all rows; [low, high] holds the central 1 - alpha of the resampled
    scores. The same seed gives the same interval.
    """
    return seed_mean_bootstrap_ci([rows], metric_fn, n_resamples, seed, alpha)


def seed_mean_bootstrap_ci(
    row_sets: Sequence[Sequence[Row]],
    metric_fn: CorpusMetric,
    n_resamples: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> ConfidenceInterval:
    """Bootstrap interval of a metric averaged over runs (seeds) scored on the same test rows.

    `row_sets[s][i]` must be run s's row for test row i: one resample of test rows is applied to
    every run, so the interval reflects test-set sampling, not seed-to-seed spread. The estimate
    is the mean over runs of the metric on all rows.
    """
    if not row_sets or not all(row_sets) or len({len(rows) for rows in row_sets}) != 1:
        raise DifusiError(
            f"cannot bootstrap {metric_fn.name}: pass one or more runs with the same, non-zero number of rows"
        )
    if not 0 < alpha < 1:
        raise DifusiError(f"alpha must be in (0, 1), got {alpha}; use 0.05 for a 95% interval")
    stats = [metric_fn.statistics(rows) for rows in row_sets]
    n = len(row_sets[0])
    rng = np.random.default_rng(seed)
    scores = np.empty(n_resamples)
    for i in range(n_resamples):
        # A resample is a multiset of rows: how often each row was drawn weights its statistics.
        weights = np.bincount(rng.integers(0, n, size=n), minlength=n)
        scores[i] = np.mean([metric_fn.from_statistics(weights @ run_stats) for run_stats in stats])
    low, high = np.quantile(scores, [alpha / 2, 1 - alpha / 2])
    estimate = np.mean([metric_fn.from_statistics(run_stats.sum(axis=0)) for run_stats in stats])
    return ConfidenceInterval(float(estimate), float(low), float(high))


@dataclass(frozen=True)
class PairedDifference:
    """Method B minus method A on the same test rows: estimate, 95% interval and two-sided p-value."""

    estimate: float
    low: float
    high: float
    p_value: float

    @property
    def significant(self) -> bool:
        """True when the interval excludes zero."""
        return self.low > 0 or self.high < 0


def paired_bootstrap_difference(
    a_sets: Sequence[Sequence[Row]],
    b_sets: Sequence[Sequence[Row]],
    metric_fn: CorpusMetric,
    n_resamples: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> PairedDifference:
    """Paired bootstrap of metric(B) - metric(A), each the mean over its runs (seeds).

    `a_sets[s][i]` and `b_sets[s][i]` are run s's rows for test row i; every run of both methods
    must cover the same rows in the same order. Each resample draws one multiset of test rows for
    both methods (the pairing: a hard row counts against both), and, when a method has several
    runs, resamples its runs too (seeds as a second level). The p-value is twice the smaller share
    of resampled differences on either side of zero (capped at 1).
    """
    for sets in (a_sets, b_sets):
        if not sets or not all(sets):
            raise DifusiError(
                f"cannot compare {metric_fn.name}: each method needs one or more non-empty runs"
            )
    if len({len(rows) for rows in (*a_sets, *b_sets)}) != 1:
        raise DifusiError(f"cannot compare {metric_fn.name}: the runs were scored on different test rows")
    a_stats = np.stack([metric_fn.statistics(rows) for rows in a_sets])  # [runs, rows, k]
    b_stats = np.stack([metric_fn.statistics(rows) for rows in b_sets])
    n = a_stats.shape[1]
    rng = np.random.default_rng(seed)

    def seed_mean(stats: np.ndarray, weights: np.ndarray, runs: np.ndarray) -> float:
        return float(np.mean([metric_fn.from_statistics(weights @ stats[run]) for run in runs]))

    every_row = np.ones(n)
    estimate = seed_mean(b_stats, every_row, np.arange(len(b_stats))) - seed_mean(
        a_stats, every_row, np.arange(len(a_stats))
    )
    differences = np.empty(n_resamples)
    for i in range(n_resamples):
        weights = np.bincount(rng.integers(0, n, size=n), minlength=n)
        a_runs = rng.integers(0, len(a_stats), size=len(a_stats))
        b_runs = rng.integers(0, len(b_stats), size=len(b_stats))
        differences[i] = seed_mean(b_stats, weights, b_runs) - seed_mean(a_stats, weights, a_runs)
    low, high = np.quantile(differences, [alpha / 2, 1 - alpha / 2])
    p_value = min(1.0, 2 * min(np.mean(differences <= 0), np.mean(differences >= 0)))
    return PairedDifference(estimate, float(low), float(high), float(p_value))
