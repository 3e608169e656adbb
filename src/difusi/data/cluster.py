"""Stage 6: K-Means over the embeddings (Euclidean, the seed's random_state) and a UMAP picture."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

# Below this many points a UMAP neighbourhood graph is meaningless; the picture falls back to PCA.
MIN_UMAP_POINTS = 50


def kmeans_clusters(embeddings: np.ndarray, clusters: int, seed: int) -> np.ndarray:
    """Cluster label (0..clusters-1) of every row."""
    import warnings

    from sklearn.cluster import KMeans
    from sklearn.exceptions import ConvergenceWarning

    # Fewer distinct points than clusters leaves some clusters empty; top-up copes with that.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = KMeans(n_clusters=clusters, random_state=seed, n_init="auto")
        return model.fit_predict(embeddings).astype(np.int64)


def plot_clusters(embeddings: np.ndarray, labels: np.ndarray, path: Path, seed: int, max_points: int) -> None:
    """A PNG of a 2-D UMAP projection coloured by cluster, on at most `max_points` random rows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(seed)
    shown = np.sort(rng.choice(len(labels), min(max_points, len(labels)), replace=False))
    points, method = _project(embeddings[shown], seed)
    figure, axes = plt.subplots(figsize=(7, 6), dpi=120)
    scatter = axes.scatter(points[:, 0], points[:, 1], c=labels[shown], cmap="tab10", s=4, alpha=0.7)
    axes.legend(*scatter.legend_elements(), title="cluster", loc="best", fontsize="small")
    axes.set_title(f"K-Means clusters ({method} of {len(shown):,} of {len(labels):,} rows)")
    axes.set_xticks([])
    axes.set_yticks([])
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def _project(embeddings: np.ndarray, seed: int) -> tuple[np.ndarray, str]:
    if len(embeddings) >= MIN_UMAP_POINTS:
        try:
            import umap

            return umap.UMAP(n_components=2, random_state=seed, n_jobs=1).fit_transform(embeddings), "UMAP"
        except Exception as error:  # the picture is an aid: a degenerate point set must not stop the run
            log.warning("UMAP failed (%s); drawing a PCA projection instead", error)
    from sklearn.decomposition import PCA

    points = np.zeros((len(embeddings), 2), dtype=np.float32)
    components = min(2, len(embeddings), embeddings.shape[1])
    if len(embeddings) > 1:
        points[:, :components] = PCA(n_components=components, random_state=seed).fit_transform(embeddings)
    return points, "PCA"
