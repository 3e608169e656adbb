"""Paired bootstrap of method differences and the report's verdict."""

from __future__ import annotations

import json

import numpy as np
import pytest

from difusi.evaluation.metrics import (
    EXACT_MATCH,
    NELBO_PER_TOKEN,
    paired_bootstrap_difference,
    seed_mean_bootstrap_ci,
)
from difusi.evaluation.report import verdict_section
from difusi.evaluation.runs import load_groups


def rows(matches: list[bool]) -> list[dict]:
    return [{"reference": "ya", "generation": "ya" if hit else "tidak"} for hit in matches]


def test_two_row_case_matches_the_exact_bootstrap_distribution():
    # Per-row differences are 100 and 0 points. Resampling 2 rows gives a mean of 100 (both draws
    # the first row, probability 1/4), 50 (1/2) or 0 (1/4): the 2.5% and 97.5% quantiles are 0 and 100,
    # and P(difference <= 0) = 1/4, so the two-sided p-value is 2 x 1/4 = 0.5.
    result = paired_bootstrap_difference(
        [rows([False, False])], [rows([True, False])], EXACT_MATCH, 8000, seed=3
    )
    assert result.estimate == 50.0
    assert (result.low, result.high) == (0.0, 100.0)
    assert result.p_value == pytest.approx(0.5, abs=0.03)
    assert not result.significant


def test_pairing_finds_a_small_consistent_gain_that_separate_intervals_miss():
    rng = np.random.default_rng(0)
    hard = rng.uniform(5, 60, size=40)  # rows differ a lot in difficulty ...
    a = [{"nelbo": float(value), "reference_tokens": 10} for value in hard]
    b = [
        {"nelbo": float(value) - 0.5, "reference_tokens": 10} for value in hard
    ]  # ... B is 0.05/token better on each
    difference = paired_bootstrap_difference([a], [b], NELBO_PER_TOKEN, 500, seed=0)
    assert difference.estimate == pytest.approx(-0.05)
    assert difference.low == pytest.approx(-0.05) and difference.high == pytest.approx(-0.05)
    assert difference.significant and difference.p_value == 0.0
    alone_a, alone_b = (seed_mean_bootstrap_ci([r], NELBO_PER_TOKEN, 500, 0) for r in (a, b))
    assert alone_b.high > alone_a.low  # unpaired, the two intervals overlap


def test_seeds_enter_as_a_second_level():
    a = [rows([False] * 10)]
    b_same = [rows([True] * 5 + [False] * 5)] * 2  # two seeds that agree
    b_spread = [rows([True] * 10), rows([False] * 10)]  # same mean (50%), seeds disagree completely
    same = paired_bootstrap_difference(a, b_same, EXACT_MATCH, 2000, seed=1)
    spread = paired_bootstrap_difference(a, b_spread, EXACT_MATCH, 2000, seed=1)
    assert same.estimate == spread.estimate == 50.0
    assert spread.high - spread.low > same.high - same.low  # seed disagreement widens the interval


def _run(path, label: str, matches: list[bool], general_nelbo: float) -> str:
    (path / "eval").mkdir(parents=True)
    generations = [
        {"id": i, "subset_name": "dolly", "template_name": "dolly_0", "prompt": "p", "reference": "ya",
         "generation": "ya" if hit else "tidak", "answer_tokens": 1, "nelbo": 3.0 - hit, "reference_tokens": 2}
        for i, hit in enumerate(matches)
    ]  # fmt: skip
    (path / "eval" / "generations.jsonl").write_text("".join(json.dumps(g) + "\n" for g in generations))
    (path / "eval" / "metrics.json").write_text(json.dumps({"label": label, "overall": {}, "per_subset": {}}))
    general = [{"id": i, "nelbo": general_nelbo + i % 3, "reference_tokens": 5} for i in range(30)]
    (path / "eval" / "general.jsonl").write_text("".join(json.dumps(g) + "\n" for g in general))
    return str(path)


def test_verdict_says_which_differences_are_significant(tmp_path):
    runs = [
        _run(tmp_path / "base", "base", [False] * 30, 10.0),
        _run(tmp_path / "lora", "lora", [True] * 27 + [False] * 3, 10.0),
        _run(tmp_path / "pissa", "pissa", [True] * 26 + [False] * 4, 12.0),
    ]
    text = verdict_section(load_groups(runs), n_resamples=500, seed=0)
    assert "| lora − base | +" in text and "| pissa − lora | " in text
    assert (
        "**lora** against **base**: better on chrF++, ROUGE-L, Exact match %, NELBO/token; no significant difference on General-text NELBO/token."
        in text
    )
    assert (
        "**pissa** against **base**: better on chrF++, ROUGE-L, Exact match %, NELBO/token; worse on General-text NELBO/token."
        in text
    )
    assert (
        "**pissa** against **lora**: worse on General-text NELBO/token; no significant difference on chrF++, ROUGE-L, Exact match %, NELBO/token."
        in text
    )
