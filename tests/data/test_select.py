"""Stage 7: per-cluster sampling with top-up."""

from __future__ import annotations

import numpy as np
import pytest

from difusi.data.select import select_per_cluster
from difusi.errors import DifusiError


def test_short_cluster_is_topped_up_from_the_others():
    # Cluster 1 has only 3 rows: it gives all 3, and 2 rows are topped up from clusters 0 and 2.
    labels = np.array([0] * 20 + [1] * 3 + [2] * 12)
    selection = select_per_cluster(labels, clusters=3, per_cluster=5, rng=np.random.default_rng(0))
    assert len(selection.positions) == 15
    assert len(set(selection.positions.tolist())) == 15
    chosen = labels[selection.positions]
    drawn = np.bincount(chosen[~selection.topped_up], minlength=3)
    assert drawn.tolist() == [5, 3, 5]
    assert selection.topped_up.sum() == 2
    assert set(chosen[selection.topped_up].tolist()) <= {0, 2}
    assert chosen.tolist() == sorted(chosen.tolist())  # ordered by cluster


def test_empty_cluster_and_exact_fit():
    labels = np.array([0, 0, 0, 0, 2, 2])
    selection = select_per_cluster(labels, clusters=3, per_cluster=2, rng=np.random.default_rng(1))
    assert sorted(selection.positions.tolist()) == [0, 1, 2, 3, 4, 5]
    assert selection.topped_up.sum() == 2


def test_too_few_rows_is_an_error():
    with pytest.raises(DifusiError, match=r"only 5 rows to cluster but --clusters 3 x --per-cluster 2 = 6"):
        select_per_cluster(np.zeros(5, dtype=int), clusters=3, per_cluster=2, rng=np.random.default_rng(0))
