"""Stage 1: reading and validating sources (parquet directory, JSONL, CSV, hub id)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from difusi.data.source import COLUMNS, resolve_source
from difusi.errors import DifusiError


def rows(n: int) -> list[dict]:
    return [
        {
            "dataset_name": "d",
            "subset_name": "dolly",
            "prompt_id": str(i),
            "template_name": "t",
            "dataset_key": "train",
            "input": f"tanya {i}",
            "output": f"jawab {i}",
        }
        for i in range(n)
    ]


def test_directory_of_parquet_shards_keeps_shard_order(cendol_dir, cendol_table):
    source = resolve_source(cendol_dir)
    assert [p.name for p in source.files] == [f"train-0000{i}-of-00003.parquet" for i in range(3)]
    assert source.num_rows == cendol_table.num_rows == 8_000
    picked = np.array([7_999, 0, 4_321, 2_667])
    assert source.read_rows(picked).to_pylist() == cendol_table.take(pa.array(picked)).to_pylist()


def test_jsonl_and_csv_files(tmp_path):
    jsonl = tmp_path / "rows.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows(5)))
    csv = tmp_path / "rows.csv"
    pacsv.write_csv(pa.Table.from_pylist(rows(4)), csv)
    for path, n in ((jsonl, 5), (csv, 4)):
        source = resolve_source(path)
        table = source.read_rows(np.array([n - 1, 0]))
        assert table.column_names == list(COLUMNS)
        assert table["prompt_id"].to_pylist() == [str(n - 1), "0"]


def test_missing_column_is_named(tmp_path):
    table = pa.Table.from_pylist(rows(3)).drop_columns(["template_name"])
    pq.write_table(table, tmp_path / "part.parquet")
    with pytest.raises(
        DifusiError, match=r"part.parquet has no column 'template_name'; a Cendol source needs"
    ):
        resolve_source(tmp_path)


def test_empty_sources(tmp_path):
    with pytest.raises(DifusiError, match="the source holds no parquet, JSONL or CSV files"):
        resolve_source(tmp_path)
    pq.write_table(pa.Table.from_pylist(rows(1)).slice(0, 0), tmp_path / "empty.parquet")
    with pytest.raises(DifusiError, match=r"the source .* holds no rows"):
        resolve_source(tmp_path)


def test_unknown_path_and_failed_hub_download(monkeypatch):
    with pytest.raises(DifusiError, match="neither a local path nor a hub dataset id"):
        resolve_source("./no/such/dir")

    def offline(*args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr("huggingface_hub.snapshot_download", offline)
    with pytest.raises(DifusiError) as error:
        resolve_source("indonlp/cendol_collection_v2")
    assert str(error.value) == (
        "could not download dataset indonlp/cendol_collection_v2 from the Hugging Face Hub (ConnectionError); "
        "pass a local directory of parquet shards with --source"
    )
