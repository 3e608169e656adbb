"""Metrics against hand-computed values, and the bootstrap interval's basic properties."""

from __future__ import annotations

import math

import pytest

from difusi.errors import DifusiError
from difusi.evaluation.metrics import (
    BLEU_SCORE,
    CHRF_PP,
    EMPTY_RATE,
    EXACT_MATCH,
    MEAN_ANSWER_TOKENS,
    NELBO_PER_TOKEN,
    ONE_CHAR_RATE,
    ROUGE_L,
    WordTokenizer,
    bootstrap_ci,
    exact_match,
    is_one_character,
    normalize_answer,
    rouge_l,
    seed_mean_bootstrap_ci,
)


def _rows(pairs, answer_tokens=1):
    return [{"reference": ref, "generation": gen, "answer_tokens": answer_tokens} for ref, gen in pairs]


def test_identical_strings_score_100_on_chrf_pp_and_bleu():
    rows = _rows([("saya makan nasi goreng di rumah", "saya makan nasi goreng di rumah")])
    assert CHRF_PP(rows) == pytest.approx(100.0)
    assert BLEU_SCORE(rows) == pytest.approx(100.0)


def test_disjoint_strings_score_zero_on_chrf_pp():
    assert CHRF_PP(_rows([("abc", "xyz")])) == 0.0


def test_bleu_brevity_penalty_by_hand():
    # All n-gram precisions are 1; the hypothesis has 4 of the reference's 8 tokens: BP = exp(1 - 8/4).
    rows = _rows([("a b c d e f g h", "a b c d")])
    assert BLEU_SCORE(rows) == pytest.approx(100 * math.exp(-1))


def test_rouge_l_lcs_by_hand():
    # LCS of "the cat sat on the mat" and "the cat lay on a mat" is "the cat on mat": 4 of 6 words
    # each side, so precision = recall = F = 2/3.
    assert rouge_l("the cat sat on the mat", "the cat lay on a mat") == pytest.approx(2 / 3)
    rows = _rows([("the cat sat on the mat", "the cat lay on a mat"), ("satu dua", "satu dua")])
    assert ROUGE_L(rows) == pytest.approx(100 * (2 / 3 + 1) / 2)


def test_rouge_tokenizer_keeps_non_ascii_letters_and_digits():
    assert WordTokenizer().tokenize("Café 2024, naïve_x über!") == ["café", "2024", "naïve", "x", "über"]
    assert rouge_l("Müller über", "müller UBER") == pytest.approx(0.5)


def test_exact_match_normalises_case_punctuation_and_spaces():
    assert normalize_answer("  Ibu Kota:  JAKARTA. ") == "ibu kota jakarta"
    assert exact_match("Jakarta.", "jakarta")
    assert not exact_match("Jakarta", "Bandung")
    rows = _rows([("Jakarta", "jakarta!"), ("Bali", "Lombok"), ("dua", "tiga"), ("ya", "tidak")])
    assert EXACT_MATCH(rows) == 25.0


def test_one_character_answers_ignore_whitespace_and_repeats():
    assert is_one_character(".") and is_one_character(", , ,\n,") and is_one_character("1111")
    assert not is_one_character("") and not is_one_character("  ") and not is_one_character("1.")


def test_answer_length_empty_rate_and_nelbo_ratio():
    rows = [
        {"reference": "a", "generation": "", "answer_tokens": 0, "nelbo": 6.0, "reference_tokens": 3},
        {"reference": "a", "generation": "  \n", "answer_tokens": 0, "nelbo": 2.0, "reference_tokens": 1},
        {"reference": "a", "generation": "ada", "answer_tokens": 4, "nelbo": 1.0, "reference_tokens": 2},
        {"reference": "a", "generation": "b", "answer_tokens": 8, "nelbo": 3.0, "reference_tokens": 2},
    ]
    assert EMPTY_RATE(rows) == 50.0
    assert ONE_CHAR_RATE(rows) == 25.0  # "b"; "ada" has two characters, empty answers none
    assert MEAN_ANSWER_TOKENS(rows) == 3.0
    # Per reference token, not per row: (6 + 2 + 1 + 3) / (3 + 1 + 2 + 2).
    assert NELBO_PER_TOKEN(rows) == 1.5


def test_zero_rows_is_an_error():
    with pytest.raises(DifusiError, match="cannot compute chrf_pp over zero rows"):
        CHRF_PP([])


def _varied_rows(n):
    words = [
        "saya",
        "makan",
        "nasi",
        "goreng",
        "di",
        "rumah",
        "kami",
        "setiap",
        "hari",
        "dengan",
        "keluarga",
        "besar",
    ]
    return _rows(
        (" ".join(words[i % 7 : i % 7 + 5]), " ".join(words[(i * 3) % 8 : (i * 3) % 8 + 4])) for i in range(n)
    )


def test_bootstrap_interval_contains_estimate_and_narrows_with_more_rows():
    small = _varied_rows(20)
    large = small * 16
    for metric in (CHRF_PP, ROUGE_L):
        ci_small = bootstrap_ci(small, metric, n_resamples=500, seed=0)
        ci_large = bootstrap_ci(large, metric, n_resamples=500, seed=0)
        assert ci_small.estimate == pytest.approx(metric(small))
        assert ci_large.estimate == pytest.approx(metric(large))
        assert ci_small.low <= ci_small.estimate <= ci_small.high
        assert ci_large.low <= ci_large.estimate <= ci_large.high
        assert ci_large.high - ci_large.low < (ci_small.high - ci_small.low) / 2


def test_bootstrap_is_seeded_and_checks_alpha():
    rows = _varied_rows(12)
    assert bootstrap_ci(rows, BLEU_SCORE, n_resamples=200, seed=3) == bootstrap_ci(
        rows, BLEU_SCORE, n_resamples=200, seed=3
    )
    with pytest.raises(DifusiError, match="alpha must be in"):
        bootstrap_ci(rows, BLEU_SCORE, alpha=1.5)


def test_seed_mean_bootstrap_averages_runs_on_shared_resamples():
    first, second = _varied_rows(12), _varied_rows(13)[1:]
    single = bootstrap_ci(first, CHRF_PP, n_resamples=200, seed=1)
    # Two copies of one run: every resample scores both the same, so nothing changes.
    assert seed_mean_bootstrap_ci([first, first], CHRF_PP, n_resamples=200, seed=1) == single
    both = seed_mean_bootstrap_ci([first, second], CHRF_PP, n_resamples=200, seed=1)
    assert both.estimate == pytest.approx((CHRF_PP(first) + CHRF_PP(second)) / 2)
    assert both.low <= both.estimate <= both.high
    with pytest.raises(DifusiError, match="same, non-zero number of rows"):
        seed_mean_bootstrap_ci([first, second[:5]], CHRF_PP)
