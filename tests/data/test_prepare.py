"""`prepare` end to end on generated data: stage counts, subsets, top-up, overlap, determinism, atomicity."""

from __future__ import annotations

import os
import unicodedata
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from difusi.cli import main
from difusi.data.prepare import INDONESIAN_SUBSETS, TRAIN_SCHEMA, PrepareConfig, prepare
from difusi.data.source import SCHEMA
from difusi.data.stratify import stratum_quotas
from difusi.errors import DifusiError

SMALL = dict(
    embedder="tfidf",
    clusters=3,
    per_cluster=40,
    strat_fraction=0.05,
    test_fraction=0.02,
    test_size=15,
    plot_umap=False,
)


def norm(text: str | None) -> str:
    return " ".join(unicodedata.normalize("NFKC", text or "").lower().split())


def pairs(table: pa.Table) -> list[tuple[str, str]]:
    return [(norm(r["input"]), norm(r["output"])) for r in table.select(["input", "output"]).to_pylist()]


@pytest.fixture(scope="module")
def prepared(cendol_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("prepared") / "out"
    return out, prepare(cendol_dir, out, PrepareConfig(**SMALL))


def test_every_stage_count_matches_a_plain_python_recount(prepared, cendol_table):
    out, card = prepared
    rows = cendol_table.to_pylist()
    chosen = [r for r in rows if r["subset_name"] in INDONESIAN_SUBSETS]
    non_empty = [r for r in chosen if norm(r["input"]) and norm(r["output"])]
    first: dict[tuple[str, str], dict] = {}
    for r in non_empty:
        first.setdefault((norm(r["input"]), norm(r["output"])), r)
    templates = Counter(r["template_name"] for r in first.values())
    stratified = int(stratum_quotas(np.array([templates[t] for t in sorted(templates)]), 0.05).sum())
    pool = len(first) - 120  # the 120 training pairs are distinct, so each removes one unique pair
    assert card["stages"] == {
        "source_rows": 8_000,
        "subset_rows": len(chosen),
        "empty_dropped": len(chosen) - len(non_empty),
        "non_empty_rows": len(non_empty),
        "duplicates_removed": len(non_empty) - len(first),
        "unique_rows": len(first),
        "stratified_rows": stratified,
        "train_rows": 120,
        "topped_up_rows": card["stages"]["topped_up_rows"],
        "test_pool_rows": pool,
        "test_undersampled_rows": int(
            stratum_quotas(np.array(list(card_pool_templates(first, out))), 0.02).sum()
        ),
        "test_rows": 15,
    }
    assert stratified == int(np.floor(0.05 * len(first) + 0.5))
    assert card["stages"]["duplicates_removed"] > 50  # safety/identity copies, dolly x5
    assert card["overlap"] == 0


def card_pool_templates(first: dict, out: Path) -> list[int]:
    """Template sizes of the test pool: unique pairs not in the training set, sorted by template name."""
    train = set(pairs(pq.read_table(out / "train.parquet")))
    counts = Counter(r["template_name"] for pair, r in first.items() if pair not in train)
    return [counts[t] for t in sorted(counts)]


def test_outputs_hold_only_chosen_subsets_and_no_overlap(prepared):
    out, card = prepared
    train, test = pq.read_table(out / "train.parquet"), pq.read_table(out / "test.parquet")
    assert train.schema == TRAIN_SCHEMA and test.schema == SCHEMA
    assert set(train["subset_name"].to_pylist()) <= set(INDONESIAN_SUBSETS)
    assert set(test["subset_name"].to_pylist()) <= set(INDONESIAN_SUBSETS)
    assert len(set(pairs(train))) == 120 and len(set(pairs(test))) == 15
    assert not set(pairs(train)) & set(pairs(test))
    assert sorted(p.name for p in out.iterdir()) == [
        "data_card.json",
        "data_card.md",
        "test.parquet",
        "train.parquet",
    ]
    assert "| stratified_rows |" in (out / "data_card.md").read_text()
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o777 & ~umask  # the usual permissions, not mkdtemp's 0700


def test_clusters_are_exactly_full_with_top_up(prepared):
    out, card = prepared
    train = pq.read_table(out / "train.parquet").to_pydict()
    sizes = card["distributions"]["kmeans_cluster_sizes"]
    drawn = Counter(c for c, t in zip(train["cluster"], train["topped_up"], strict=True) if not t)
    assert {str(c): n for c, n in drawn.items()} == {c: min(40, n) for c, n in sizes.items() if n}
    assert sum(train["topped_up"]) == 120 - sum(min(40, n) for n in sizes.values())
    assert train["cluster"] == sorted(train["cluster"])


def test_forced_short_cluster_is_topped_up(cendol_dir, tmp_path, monkeypatch):
    def short_first_cluster(embeddings, clusters, seed):
        labels = np.arange(len(embeddings)) % 2 + 1
        labels[:5] = 0
        return labels

    monkeypatch.setattr("difusi.data.prepare.kmeans_clusters", short_first_cluster)
    card = prepare(cendol_dir, tmp_path / "out", PrepareConfig(**SMALL))
    train = pq.read_table(tmp_path / "out" / "train.parquet").to_pydict()
    flags = list(zip(train["cluster"], train["topped_up"], strict=True))
    assert Counter(c for c, topped in flags if not topped) == {0: 5, 1: 40, 2: 40}
    assert {c for c, topped in flags if topped} <= {1, 2}  # top-ups come from the other clusters
    assert sum(train["topped_up"]) == 35 and card["stages"]["topped_up_rows"] == 35


def test_rerun_gives_identical_files(prepared, cendol_dir, tmp_path):
    out, _ = prepared
    prepare(cendol_dir, tmp_path / "again", PrepareConfig(**SMALL))
    for name in ("train.parquet", "test.parquet"):
        assert (tmp_path / "again" / name).read_bytes() == (out / name).read_bytes()


def test_failure_mid_run_leaves_no_files(cendol_dir, tmp_path, monkeypatch):
    def broken(*args):
        raise RuntimeError("disk full")

    monkeypatch.setattr("difusi.data.prepare.write_card", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        prepare(cendol_dir, tmp_path / "out", PrepareConfig(**SMALL))
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / "old.txt").write_text("earlier run")
    with pytest.raises(RuntimeError):
        prepare(cendol_dir, tmp_path / "kept", PrepareConfig(**SMALL))
    assert [p.name for p in tmp_path.iterdir()] == ["kept"]
    assert [p.name for p in (tmp_path / "kept").iterdir()] == ["old.txt"]


def test_keep_duplicates_reproduces_the_seed(cendol_dir, tmp_path):
    card = prepare(cendol_dir, tmp_path / "out", PrepareConfig(**SMALL, keep_duplicates=True))
    assert card["stages"]["duplicates_removed"] == 0
    assert card["stages"]["unique_rows"] == card["stages"]["non_empty_rows"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"subsets": ("nope",)}, r"^no rows left after keeping subsets nope; the source has wikipedia_id, "),
        (
            {"per_cluster": 10_000},
            r"^only \d,\d+ rows remain after de-duplication but --clusters 3 x --per-cluster 10000 = 30,000",
        ),
        (
            {"test_size": 5000},
            r"^only \d,\d+ rows are eligible for the test set but --test-size is 5000; lower",
        ),
        ({"strat_fraction": 0.0}, r"^--strat-fraction must be in \(0, 1\], got 0.0$"),
        (
            {"embedder": "word2vec"},
            r"^unknown --embedder 'word2vec'; use indobert, hf:NAME_OR_PATH or tfidf$",
        ),
    ],
)
def test_bad_input_errors(cendol_dir, tmp_path, change, message):
    with pytest.raises(DifusiError, match=message):
        prepare(cendol_dir, tmp_path / "out", PrepareConfig(**{**SMALL, **change}))
    assert list(tmp_path.iterdir()) == []


def test_too_small_fractions_are_raised_to_give_the_requested_rows(cendol_dir, tmp_path):
    change = {"strat_fraction": 0.001, "test_fraction": 0.0002}
    card = prepare(cendol_dir, tmp_path / "out", PrepareConfig(**{**SMALL, **change}))
    stages = card["stages"]
    assert stages["stratified_rows"] == 120 and stages["train_rows"] == 120
    assert stages["test_undersampled_rows"] == 15 and stages["test_rows"] == 15
    assert card["fractions_used"] == {
        "strat_fraction": 120 / stages["unique_rows"],
        "test_fraction": 15 / stages["test_pool_rows"],
    }


def test_null_only_subset_is_reported(tmp_path):
    rows = [
        {
            "dataset_name": "d",
            "subset_name": "dolly",
            "prompt_id": "p",
            "template_name": "t",
            "dataset_key": "train",
            "input": None if i % 2 else " ",
            "output": "x",
        }
        for i in range(4)
    ]
    pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), tmp_path / "rows.parquet")
    with pytest.raises(
        DifusiError, match=r"^no rows left: all 4 rows of the chosen subsets have empty text$"
    ):
        prepare(tmp_path / "rows.parquet", tmp_path / "out", PrepareConfig(**SMALL))


def test_cli_runs_and_reports_errors_in_one_line(cendol_dir, tmp_path, capsys):
    options = [
        "--embedder",
        "tfidf",
        "--clusters",
        "2",
        "--per-cluster",
        "30",
        "--strat-fraction",
        "0.03",
        "--test-fraction",
        "0.01",
        "--test-size",
        "10",
    ]
    subsets = ["--subsets", "wikipedia_id,dolly", "safety_prompt"]  # spaces or commas
    code = main(["prepare", "--source", str(cendol_dir), "--out", str(tmp_path / "out"), *options, *subsets])
    assert code == 0
    assert (tmp_path / "out" / "clusters_umap.png").stat().st_size > 10_000
    train = pq.read_table(tmp_path / "out" / "train.parquet")
    assert train.num_rows == 60
    assert set(train["subset_name"].to_pylist()) <= {"wikipedia_id", "dolly", "safety_prompt"}
    capsys.readouterr()
    code = main(
        ["prepare", "--source", str(cendol_dir), "--out", str(tmp_path / "bad"), *options, "--subsets", "x"]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("difusi prepare: error: no rows left after keeping subsets x; the source has ")
    assert err.count("\n") == 1
