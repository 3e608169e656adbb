"""The offline Cendol-shaped generator."""

from __future__ import annotations

import pyarrow.compute as pc
import pyarrow.parquet as pq

from difusi.cli import main
from difusi.data.source import COLUMNS
from difusi.synthetic.cendol import REAL_SUBSET_ROWS, subset_counts, synth_cendol


def test_subset_counts_follow_the_real_proportions():
    full = subset_counts(12_810_390)
    assert len(full) == 18 + 30 and sum(full.values()) == 12_810_390
    assert (
        full["wikipedia_id"] == 6_069_267 and full["safety_prompt"] == 93_500 and full["wikipedia_bug"] == 633
    )
    small = subset_counts(1_000)
    assert sum(small.values()) == 1_000 and min(small.values()) == 1
    assert list(small) == list(REAL_SUBSET_ROWS)


def test_generated_collection_has_the_real_shape(cendol_dir, cendol_table):
    assert sorted(p.name for p in (cendol_dir / "data").iterdir()) == [
        "train-00000-of-00003.parquet",
        "train-00001-of-00003.parquet",
        "train-00002-of-00003.parquet",
    ]
    assert cendol_table.column_names == list(COLUMNS)
    counts = pc.value_counts(cendol_table["subset_name"]).to_pylist()
    subsets = {item["values"]: item["counts"] for item in counts}
    assert subsets == subset_counts(8_000)
    # Duplicates: safety_prompt 58 rows are copies of one pair, dolly 5 copies per pair.
    for subset, distinct in (("safety_prompt", 1), ("dolly", 9), ("identity_prompt", 1)):
        part = cendol_table.filter(pc.equal(cendol_table["subset_name"], subset))
        pairs = {(r["input"], r["output"]) for r in part.select(["input", "output"]).to_pylist()}
        assert len(pairs) <= distinct + 1, subset  # the + 1: a blanked (null) row
    puisi = cendol_table.filter(pc.equal(cendol_table["subset_name"], "indo_puisi"))
    assert len(set(puisi["template_name"].to_pylist())) == 20
    nulls = (
        pc.sum(pc.is_null(cendol_table["input"])).as_py() + pc.sum(pc.is_null(cendol_table["output"])).as_py()
    )
    empties = (
        pc.sum(pc.equal(cendol_table["input"], "")).as_py()
        + pc.sum(pc.equal(cendol_table["output"], "")).as_py()
    )
    assert nulls == 2 and empties == 0  # 8000 // 20000 + 2 = 2 blanked rows: null input, null output
    text = pc.add(pc.binary_length(cendol_table["input"]), pc.binary_length(cendol_table["output"]))
    assert 700 < pc.mean(text).as_py() < 1_100


def test_same_seed_same_bytes(tmp_path):
    first = synth_cendol(tmp_path / "a", 500, seed=9, shards=2)
    second = synth_cendol(tmp_path / "b", 500, seed=9, shards=2)
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]
    assert pq.read_table(first[0]).num_rows == 250


def test_cli(tmp_path, capsys):
    assert (
        main(["synth-cendol", "--out", str(tmp_path / "c"), "--rows", "300", "--shards", "2", "--seed", "1"])
        == 0
    )
    assert capsys.readouterr().out == f"wrote 300 rows in 2 shards to {tmp_path / 'c'}/data\n"
    assert main(["synth-cendol", "--out", str(tmp_path / "d"), "--rows", "0"]) == 2
    assert (
        capsys.readouterr().err
        == "difusi synth-cendol: error: --rows and --shards must be at least 1, got 0 and 23\n"
    )
    assert not (tmp_path / "d").exists()
