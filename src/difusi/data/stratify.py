"""Stage 4: stratified random sampling with exact, documented rounding."""

from __future__ import annotations

import numpy as np

STRATIFIED_ROUNDING = (
    "each stratum first gets floor(f * n) rows; the round(f * N) - sum(floor) rows left over go one each "
    "to the strata with the largest remainders f * n - floor(f * n) (ties: larger stratum, then name), "
    "so the sample has exactly round(f * N) rows (halves round up)"
)
# Guards floor() against binary fractions such as 0.29 * 100 = 28.999999999999996.
_EPS = 1e-9


def stratum_quotas(sizes: np.ndarray, fraction: float) -> np.ndarray:
    """Rows to draw from each stratum: largest-remainder rounding (see STRATIFIED_ROUNDING)."""
    sizes = np.asarray(sizes, dtype=np.int64)
    exact = sizes * fraction
    quotas = np.floor(exact + _EPS).astype(np.int64)
    left_over = int(np.floor(sizes.sum() * fraction + 0.5 + _EPS)) - int(quotas.sum())
    remainders = np.where(exact - quotas > _EPS, exact - quotas, 0.0)
    order = np.lexsort((np.arange(len(sizes)), -sizes, -remainders))
    quotas[order[:left_over]] += 1
    return np.minimum(quotas, sizes)


def stratified_sample(strata: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Sorted positions of a stratified random sample: `stratum_quotas` rows drawn from each stratum."""
    strata = np.asarray(strata, dtype=np.int64)
    if len(strata) == 0:
        return np.zeros(0, dtype=np.int64)
    sizes = np.bincount(strata)
    quotas = stratum_quotas(sizes, fraction)
    # Grouped by stratum, random within: the first `quota` of each group are the draw.
    order = np.lexsort((rng.random(len(strata)), strata))
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    rank = np.arange(len(strata)) - np.repeat(starts, sizes)
    return np.sort(order[rank < np.repeat(quotas, sizes)])
