"""Normalisation, pair keys, de-duplication and stratified sampling (stages 2-4)."""

from __future__ import annotations

import unicodedata

import numpy as np
import polars as pl
import pyarrow as pa
import pytest

from difusi.data.normalise import normalise, normalised_hashes, pair_keys
from difusi.data.scan import first_occurrences
from difusi.data.stratify import stratified_sample, stratum_quotas


def reference_normalise(text: str | None) -> str:
    return " ".join(unicodedata.normalize("NFKC", text or "").lower().split())


def test_normalise_matches_the_python_rule():
    texts = [
        "  Halo\tDunia\n\n",
        "ﬁle ＡＢＣ",
        "Satu  dua",
        "abc",
        "x\u00a0y\u3000z ",
        "",
        None,
        "\u2028a\u2029",
        "Éé  X",
    ]
    assert normalise(pa.array(texts)).to_pylist() == [reference_normalise(t) for t in texts]
    assert normalise(pa.array(texts)).to_pylist()[:3] == ["halo dunia", "file abc", "satu dua"]


def test_pair_keys_equal_exactly_for_equal_normalised_pairs():
    inputs = pa.array(["Apa kabar?", "apa  KABAR?", "Apa kabar?", " Apa\tkabar? ", "Apa kabar?", "  "])
    outputs = pa.array(["Baik.", "baik.", "Baik!", "BAIK.", None, "Baik."])
    keys, has_empty = pair_keys(inputs, outputs)
    assert keys.dtype == np.uint64
    assert keys[0] == keys[1] == keys[3] and len({keys[0], keys[2], keys[4]}) == 3
    assert has_empty.tolist() == [False, False, False, False, True, True]
    # The boundary between input and output matters: ("ab", "c") is not ("a", "bc").
    split, _ = pair_keys(pa.array(["ab", "a"]), pa.array(["c", "bc"]))
    assert split[0] != split[1]


def test_hashes_are_the_hashes_of_the_normalised_strings():
    texts = pa.array(["Éé  X", "plain ascii", "Tab\there", "ﬁne", " lead", "", None, "UPPER"])
    hashes, empty = normalised_hashes(texts)
    expected = pl.from_arrow(pa.array([reference_normalise(t) for t in texts.to_pylist()])).hash(seed=0)
    assert hashes.tolist() == expected.to_list()
    assert empty.tolist() == [False] * 5 + [True, True, False]


def test_first_occurrences_keeps_the_first_row_of_each_key():
    keys = np.array([5, 3, 5, 7, 3, 3], dtype=np.uint64)
    assert first_occurrences(keys).tolist() == [True, True, False, True, False, False]


def test_stratum_quotas_use_largest_remainders():
    # f = 0.03: exact 3, 1.5, 0.21, 0.03, 0.03 -> floors 3, 1, 0, 0, 0; round(4.77) = 5, one left
    # over, which goes to the largest remainder (0.5, the stratum of 50).
    assert stratum_quotas(np.array([100, 50, 7, 1, 1]), 0.03).tolist() == [3, 2, 0, 0, 0]
    # 0.5, 1.5, 0.5: round(2.5) = 3, two left over, all remainders equal: the larger stratum wins,
    # then the earlier name (lower code).
    assert stratum_quotas(np.array([10, 30, 10]), 0.05).tolist() == [1, 2, 0]
    # 0.29 * 100 is 28.999999999999996 in binary; the quota is still 29.
    assert stratum_quotas(np.array([100]), 0.29).tolist() == [29]
    assert stratum_quotas(np.array([1, 1, 1]), 1.0).tolist() == [1, 1, 1]


@pytest.mark.parametrize("fraction", [0.03, 0.5, 1.0])
def test_stratified_sample_takes_the_quota_of_every_stratum(fraction):
    strata = np.random.default_rng(0).integers(0, 6, 2_000)
    positions = stratified_sample(strata, fraction, np.random.default_rng(1))
    assert positions.tolist() == sorted(set(positions.tolist()))
    counts = np.bincount(strata[positions], minlength=6)
    assert counts.tolist() == stratum_quotas(np.bincount(strata, minlength=6), fraction).tolist()
    assert len(positions) == int(np.floor(2_000 * fraction + 0.5))
    again = stratified_sample(strata, fraction, np.random.default_rng(1))
    assert np.array_equal(positions, again)
