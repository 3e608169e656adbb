"""Stage 7: `per_cluster` random rows from every cluster, short clusters topped up from the others."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from difusi.errors import DifusiError


@dataclass(frozen=True)
class Selection:
    """Chosen positions (sorted by cluster, then position) and whether each came in as a top-up."""

    positions: np.ndarray
    topped_up: np.ndarray


def select_per_cluster(
    labels: np.ndarray, clusters: int, per_cluster: int, rng: np.random.Generator
) -> Selection:
    """Exactly clusters x per_cluster rows: up to `per_cluster` at random from each cluster, then the
    shortfall of short clusters drawn at random from the other clusters' leftovers (`top_up`)."""
    labels = np.asarray(labels, dtype=np.int64)
    wanted = clusters * per_cluster
    if len(labels) < wanted:
        raise DifusiError(
            f"only {len(labels):,} rows to cluster but --clusters {clusters} x --per-cluster {per_cluster} "
            f"= {wanted:,} are needed; raise --strat-fraction or lower --per-cluster"
        )
    sizes = np.bincount(labels, minlength=clusters)
    order = np.lexsort((rng.random(len(labels)), labels))
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    rank = np.arange(len(labels)) - np.repeat(starts, sizes)
    drawn = order[rank < per_cluster]
    top_up = np.sort(rng.choice(order[rank >= per_cluster], wanted - len(drawn), replace=False))
    positions = np.concatenate([drawn, top_up])
    flags = np.concatenate([np.zeros(len(drawn), bool), np.ones(len(top_up), bool)])
    order = np.lexsort((positions, labels[positions]))
    return Selection(positions=positions[order], topped_up=flags[order])
