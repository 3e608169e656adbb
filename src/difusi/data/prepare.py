"""The seed's data preparation, end to end: Cendol Collection v2 to a training set and a test set.

1 read and validate the source, 2 keep the chosen subsets (rows with null or empty input/output
dropped), 3 drop exact duplicates of the normalised (input, output), 4 stratified sample on
template_name, 5 embed, 6 K-Means, 7 `per_cluster` rows per cluster with top-up, 8 a test set that
shares no normalised pair with the training set, 9 write everything atomically with a data card.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from difusi.config import Config, option
from difusi.data.card import distribution, software_versions, write_card
from difusi.data.cluster import kmeans_clusters, plot_clusters
from difusi.data.embed import embed_texts
from difusi.data.normalise import NORMALISATION, normalise
from difusi.data.scan import Scan, first_occurrences, scan
from difusi.data.select import select_per_cluster
from difusi.data.source import SCHEMA, Source, resolve_source
from difusi.data.stratify import STRATIFIED_ROUNDING, stratified_sample
from difusi.distributed import Processes
from difusi.errors import DifusiError
from difusi.io import atomic_directory

log = logging.getLogger(__name__)

# The seed's six Indonesian subsets, in the seed's order.
INDONESIAN_SUBSETS = ("indo_puisi", "wikihow", "wikipedia_id", "safety_prompt", "identity_prompt", "dolly")
TRAIN_SCHEMA = SCHEMA.append(pa.field("cluster", pa.int32())).append(pa.field("topped_up", pa.bool_()))
UMAP_PNG = "clusters_umap.png"


@dataclass
class PrepareConfig(Config):
    """The seed's data settings (defaults) plus the improvements: de-duplication and a capped UMAP plot.

    Its fields are `difusi prepare`'s options and the keys of its YAML (configs/prepare-seed.yaml).
    """

    subsets: tuple[str, ...] = option(INDONESIAN_SUBSETS, "subset_name values to keep (spaces or commas)")
    strat_fraction: float = option(0.03, "share of each template_name kept by the stratified sample")
    embedder: str = option("indobert", "indobert, hf:NAME_OR_PATH, or tfidf (offline)")
    clusters: int = option(10, "K-Means clusters")
    per_cluster: int = option(1000, "training rows drawn per cluster (topped up when a cluster is short)")
    test_fraction: float = option(
        0.0002, "share of each template_name of the rows not in training, undersampled before the test draw"
    )
    test_size: int = option(100, "test rows")
    seed: int = option(42, "random state of every sampling stage")
    keep_duplicates: bool = option(False, "skip de-duplication (the seed as written)")
    umap_points: int = option(20_000, "rows drawn in the UMAP picture (UMAP is slow on 10^5 points)")
    plot_umap: bool = option(True, "draw the clusters' UMAP picture")
    embed_batch_size: int = option(64, "texts per embedding batch")
    workers: int | None = option(None, "shards scanned in parallel (None: CPU count, at most 4)")

    def __post_init__(self) -> None:
        if isinstance(self.subsets, str):
            self.subsets = (self.subsets,)
        self.subsets = tuple(name for item in self.subsets for name in item.split(",") if name)
        for name in ("strat_fraction", "test_fraction"):
            if not 0 < getattr(self, name) <= 1:
                raise DifusiError(f"--{name.replace('_', '-')} must be in (0, 1], got {getattr(self, name)}")
        for name in ("clusters", "per_cluster", "test_size"):
            if getattr(self, name) < 1:
                raise DifusiError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if not self.subsets:
            raise DifusiError("--subsets needs at least one subset name")


@dataclass
class Candidates:
    """Stages 1-4: the scan, which rows survive de-duplication, and the stratified sample."""

    scan: Scan
    unique: np.ndarray  # mask over scan rows (all True with keep_duplicates)
    stratified: np.ndarray  # positions into scan rows
    strat_fraction: float  # the fraction used: --strat-fraction, or more if that gave too few rows


def rng_for(seed: int, stage: int) -> np.random.Generator:
    """An independent random stream per stage, so changing one stage's draw leaves the others alone."""
    return np.random.default_rng([seed, stage])


def sample_candidates(source: Source, config: PrepareConfig) -> Candidates:
    """Stages 1-4 over the whole source, streaming: subsets, non-empty, de-duplicated, stratified."""
    found = scan(source, config.subsets, config.workers)
    log.info("read %s rows from %d files", f"{found.source_rows:,}", len(source.files))
    if found.subset_rows == 0:
        present = ", ".join(list(found.rows_per_subset)[:8])
        raise DifusiError(
            f"no rows left after keeping subsets {', '.join(config.subsets)}; the source has {present}"
        )
    log.info("kept %s rows of the chosen subsets", f"{found.subset_rows:,}")
    if len(found.rows) == 0:
        raise DifusiError(
            f"no rows left: all {found.subset_rows:,} rows of the chosen subsets have empty text"
        )
    log.info("dropped %s rows with null or empty input/output", f"{found.empty_dropped:,}")
    unique = np.ones(len(found.rows), bool) if config.keep_duplicates else first_occurrences(found.keys)
    log.info("%s unique rows (%s duplicates removed)", f"{unique.sum():,}", f"{len(unique) - unique.sum():,}")
    pool = np.flatnonzero(unique)
    needed = config.clusters * config.per_cluster
    if len(pool) < needed:
        raise DifusiError(
            f"only {len(pool):,} rows remain after de-duplication but --clusters {config.clusters} x "
            f"--per-cluster {config.per_cluster} = {needed:,} are needed; lower --per-cluster or --clusters"
        )
    fraction = enough_fraction(config.strat_fraction, len(pool), needed, "--strat-fraction")
    stratified = pool[stratified_sample(found.templates[pool], fraction, rng_for(config.seed, 1))]
    log.info(
        "stratified sample: %s rows over %d templates", f"{len(stratified):,}", len(found.template_names)
    )
    return Candidates(scan=found, unique=unique, stratified=stratified, strat_fraction=fraction)


def enough_fraction(fraction: float, rows: int, needed: int, option: str) -> float:
    """`fraction`, or the smallest fraction of `rows` that yields `needed` rows if it falls short.

    At the real scale the seed's fractions leave plenty (196,279 for 10,000); on small collections
    they would not, and sampling a little more keeps the later stages' counts exact.
    """
    if np.floor(fraction * rows + 0.5) >= needed:
        return fraction
    log.warning(
        "%s %s gives fewer than %s of %s rows; using %.6g", option, fraction, needed, rows, needed / rows
    )
    return needed / rows


def prepare(
    source: str | Path | Source, out_dir: str | Path, config: PrepareConfig | None = None, card_note: str = ""
) -> dict | None:
    """Run every stage and write train.parquet, test.parquet, the data card (data_card.md ending with
    `card_note`, Markdown) and the UMAP picture.

    The files are built in a temporary directory next to `out_dir` that replaces it at the end, so a
    failure at any stage leaves no final files. Returns the data card (None on a launch's other
    processes, which only share the embedding).
    """
    config = config or PrepareConfig()
    # Under `accelerate launch` the processes share the encoder's work, by far the slowest stage
    # (measured on 2 CPU cores: a BERT-base encoder embeds 5 rows/s, the shard scan reads 470k
    # rows/s); the main process alone goes on and writes.
    processes = Processes.launched()
    resolved = source if isinstance(source, Source) else resolve_source(source)
    candidates = sample_candidates(resolved, config)
    sample = resolved.read_rows(candidates.scan.rows[candidates.stratified])
    texts = pc.binary_join_element_wise(
        pc.fill_null(sample["input"], ""), pc.fill_null(sample["output"], ""), "\n"
    ).to_pylist()
    embeddings = embed_texts(texts, config.embedder, config.seed, config.embed_batch_size, processes)
    if not processes.main:
        return None
    with atomic_directory(out_dir) as work:
        card = _build(source, resolved, candidates, sample, embeddings, work, config, card_note)
    log.info("wrote %s", out_dir)
    return card


def _build(
    source_spec: str | Path | Source,
    source: Source,
    candidates: Candidates,
    sample: pa.Table,
    embeddings: np.ndarray,
    work: Path,
    config: PrepareConfig,
    card_note: str,
) -> dict:
    """Stages 6 to 8 and the data card, written into `work`."""
    found, stratified = candidates.scan, candidates.stratified
    labels = kmeans_clusters(embeddings, config.clusters, config.seed)
    log.info("K-Means cluster sizes: %s", np.bincount(labels, minlength=config.clusters).tolist())
    if config.plot_umap:
        plot_clusters(embeddings, labels, work / UMAP_PNG, config.seed, config.umap_points)
    selection = select_per_cluster(labels, config.clusters, config.per_cluster, rng_for(config.seed, 2))
    train = sample.take(pa.array(selection.positions))
    train = train.append_column("cluster", pa.array(labels[selection.positions], pa.int32()))
    train = train.append_column("topped_up", pa.array(selection.topped_up)).cast(TRAIN_SCHEMA)
    log.info("training set: %s rows, %d topped up", f"{train.num_rows:,}", int(selection.topped_up.sum()))

    test, test_counts = _test_set(source, candidates, found.keys[stratified[selection.positions]], config)
    overlap = count_overlap(train, test)
    if overlap:
        raise DifusiError(f"internal error: {overlap} test rows repeat a training pair")
    pq.write_table(train, work / "train.parquet")
    pq.write_table(test.cast(SCHEMA), work / "test.parquet")
    card = _card(source_spec, source, candidates, labels, train, test, test_counts, config)
    write_card(work, card, card_note)
    return card


def _test_set(
    source: Source, candidates: Candidates, train_keys: np.ndarray, config: PrepareConfig
) -> tuple[pa.Table, dict[str, float]]:
    """Stage 8: rows sharing no normalised pair with training, stratified undersampling, then a random draw."""
    found = candidates.scan
    pool = np.flatnonzero(candidates.unique & ~np.isin(found.keys, train_keys))
    if len(pool) < config.test_size:
        raise DifusiError(
            f"only {len(pool):,} rows are eligible for the test set but --test-size is {config.test_size}; "
            "lower --test-size"
        )
    fraction = enough_fraction(config.test_fraction, len(pool), config.test_size, "--test-fraction")
    under = pool[stratified_sample(found.templates[pool], fraction, rng_for(config.seed, 3))]
    chosen = under[np.sort(rng_for(config.seed, 4).choice(len(under), config.test_size, replace=False))]
    log.info("test set: %s rows from %s undersampled of %s eligible", config.test_size, len(under), len(pool))
    counts = {"pool_rows": len(pool), "undersampled_rows": len(under), "fraction": fraction}
    return source.read_rows(found.rows[chosen]), counts


def count_overlap(train: pa.Table, test: pa.Table) -> int:
    """Test rows whose normalised (input, output) equals a training row's, compared as strings."""
    seen = set(
        zip(normalise(train["input"]).to_pylist(), normalise(train["output"]).to_pylist(), strict=True)
    )
    pairs = zip(normalise(test["input"]).to_pylist(), normalise(test["output"]).to_pylist(), strict=True)
    return sum(pair in seen for pair in pairs)


def _card(source_spec, source, candidates, labels, train, test, test_counts, config) -> dict:
    found = candidates.scan
    names = np.array(found.subset_names)
    removed = np.bincount(found.subsets[~candidates.unique], minlength=len(names))
    stages = {
        "source_rows": found.source_rows,
        "subset_rows": found.subset_rows,
        "empty_dropped": found.empty_dropped,
        "non_empty_rows": len(found.rows),
        "duplicates_removed": int((~candidates.unique).sum()),
        "unique_rows": int(candidates.unique.sum()),
        "stratified_rows": len(candidates.stratified),
        "train_rows": train.num_rows,
        "topped_up_rows": int(pc.sum(train["topped_up"]).as_py() or 0),
        "test_pool_rows": test_counts["pool_rows"],
        "test_undersampled_rows": test_counts["undersampled_rows"],
        "test_rows": test.num_rows,
    }
    stratified_subsets = pa.array(names[found.subsets[candidates.stratified]])
    return {
        "source": str(source_spec if not isinstance(source_spec, Source) else source.files[0].parent),
        "files": len(source.files),
        "stages": stages,
        "fractions_used": {
            "strat_fraction": candidates.strat_fraction,
            "test_fraction": test_counts["fraction"],
        },
        "normalisation": NORMALISATION,
        "stratified_rounding": STRATIFIED_ROUNDING,
        "overlap": 0,
        "duplicates_removed_per_subset": {str(n): int(c) for n, c in zip(names, removed, strict=True)},
        "distributions": {
            "source_subsets": found.rows_per_subset,
            "stratified_subsets": distribution(stratified_subsets),
            "kmeans_cluster_sizes": {
                str(c): int(n) for c, n in enumerate(np.bincount(labels, minlength=config.clusters))
            },
            "train_clusters": distribution(train["cluster"]),
            "train_subsets": distribution(train["subset_name"]),
            "train_templates": distribution(train["template_name"]),
            "test_subsets": distribution(test["subset_name"]),
            "test_templates": distribution(test["template_name"]),
        },
        "settings": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()},
        "versions": software_versions(),
    }
