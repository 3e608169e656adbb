"""Cendol-shaped sources: a hub dataset id, a local directory of shards, or parquet/JSONL/CSV files.

A `Source` is a fixed, ordered list of files holding the seven string columns. Rows are addressed by a
global index (file order, then row order), so later stages can come back for the text of only the rows
they picked.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from difusi.errors import DifusiError

COLUMNS = ("dataset_name", "subset_name", "prompt_id", "template_name", "dataset_key", "input", "output")
SCHEMA = pa.schema([(name, pa.string()) for name in COLUMNS])
DEFAULT_SOURCE = "indonlp/cendol_collection_v2"
SUFFIXES = (".parquet", ".jsonl", ".json", ".csv")
BATCH_ROWS = 16_384


@dataclass(frozen=True)
class Source:
    """An ordered list of shard files with the seven Cendol columns (validated on creation)."""

    files: tuple[Path, ...]

    def __post_init__(self) -> None:
        if not self.files:
            raise DifusiError(
                "the source holds no parquet, JSONL or CSV files; point --source at Cendol shards"
            )
        for path in self.files:
            names = _column_names(path)
            missing = [name for name in COLUMNS if name not in names]
            if missing:
                raise DifusiError(
                    f"{path} has no column '{missing[0]}'; a Cendol source needs the columns {', '.join(COLUMNS)}"
                )
        if self.num_rows == 0:
            raise DifusiError(
                f"the source {self.files[0].parent} holds no rows; point --source at Cendol shards"
            )

    @cached_property
    def file_rows(self) -> np.ndarray:
        """Rows per file, in file order."""
        return np.array([_num_rows(path) for path in self.files], dtype=np.int64)

    @cached_property
    def offsets(self) -> np.ndarray:
        """Global index of each file's first row (one extra entry: the total)."""
        return np.concatenate([[0], np.cumsum(self.file_rows)])

    @property
    def num_rows(self) -> int:
        return int(self.offsets[-1])

    def iter_batches(self, file_index: int, columns: list[str]) -> Iterator[pa.RecordBatch]:
        """Stream one file's `columns` as string record batches, in row order."""
        path = self.files[file_index]
        if path.suffix == ".parquet":
            for batch in pq.ParquetFile(path).iter_batches(batch_size=BATCH_ROWS, columns=columns):
                yield _as_strings(batch, columns)
        else:
            yield from _read_text_table(path).select(columns).to_batches(BATCH_ROWS)

    def read_rows(self, rows: np.ndarray) -> pa.Table:
        """The seven columns of the rows with these global indices, in the order given."""
        rows = np.asarray(rows, dtype=np.int64)
        order = np.argsort(rows, kind="stable")
        wanted = rows[order]
        files = np.searchsorted(self.offsets, wanted, side="right") - 1
        jobs = [(i, wanted[files == i] - self.offsets[i]) for i in np.unique(files)]
        with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
            pieces = list(pool.map(lambda job: self._take_from_file(*job), jobs))
        table = pa.concat_tables(pieces) if pieces else SCHEMA.empty_table()
        return table.take(pa.array(np.argsort(order, kind="stable")))

    def _take_from_file(self, file_index: int, local: np.ndarray) -> pa.Table:
        """Rows `local` (sorted) of one file, decoding only the row groups that hold them."""
        path = self.files[file_index]
        if path.suffix != ".parquet":
            return _read_text_table(path).select(list(COLUMNS)).take(pa.array(local))
        parquet = pq.ParquetFile(path)
        sizes = [parquet.metadata.row_group(g).num_rows for g in range(parquet.num_row_groups)]
        bounds = np.concatenate([[0], np.cumsum(sizes)])
        pieces = []
        for group in np.unique(np.searchsorted(bounds, local, side="right") - 1):
            seen = bounds[group]
            for batch in parquet.iter_batches(BATCH_ROWS, row_groups=[int(group)], columns=list(COLUMNS)):
                inside = local[(local >= seen) & (local < seen + batch.num_rows)] - seen
                if len(inside):
                    pieces.append(_as_strings(batch.take(pa.array(inside)), list(COLUMNS)))
                seen += batch.num_rows
        return pa.Table.from_batches(pieces, SCHEMA)


def resolve_source(spec: str | Path) -> Source:
    """A `Source` from a local directory or file, or else a hub dataset id downloaded to the local cache."""
    path = Path(spec)
    if path.is_dir():
        files = _shard_files(path)
    elif path.is_file():
        if path.suffix not in SUFFIXES:
            raise DifusiError(f"cannot read {path}: --source takes .parquet, .jsonl or .csv files")
        files = [path]
    elif _looks_like_hub_id(str(spec)):
        files = _shard_files(_download(str(spec)))
    else:
        raise DifusiError(f"source {spec} is neither a local path nor a hub dataset id like {DEFAULT_SOURCE}")
    return Source(tuple(files))


def _shard_files(directory: Path) -> list[Path]:
    """Shard files under `directory`, parquet preferred, sorted by path (the hub's shard order)."""
    for suffix in SUFFIXES:
        files = sorted(p for p in directory.rglob(f"*{suffix}") if not p.name.startswith("."))
        if files:
            return files
    return []


def _looks_like_hub_id(spec: str) -> bool:
    parts = spec.split("/")
    return len(parts) == 2 and all(parts) and not spec.startswith((".", "/"))


def _download(repo_id: str) -> Path:
    """Fetch a hub dataset's parquet shards (cached by huggingface_hub; offline it fails with a hint)."""
    from huggingface_hub import snapshot_download

    try:
        local = snapshot_download(repo_id, repo_type="dataset", allow_patterns=["*.parquet", "**/*.parquet"])
    except Exception as error:  # the hub client raises many types (connection, auth, missing repo)
        raise DifusiError(
            f"could not download dataset {repo_id} from the Hugging Face Hub ({type(error).__name__}); "
            "pass a local directory of parquet shards with --source"
        ) from error
    return Path(local)


def _column_names(path: Path) -> list[str]:
    if path.suffix == ".parquet":
        return pq.read_schema(path).names
    return _read_text_table(path).column_names


def _num_rows(path: Path) -> int:
    if path.suffix == ".parquet":
        return pq.ParquetFile(path).metadata.num_rows
    return _read_text_table(path).num_rows


@lru_cache(maxsize=4)
def _read_text_table(path: Path) -> pa.Table:
    """A JSONL or CSV file as a table of strings (these formats are for small sources, read whole)."""
    if path.suffix == ".csv":
        options = pacsv.ConvertOptions(
            column_types=dict.fromkeys(COLUMNS, pa.string()), strings_can_be_null=True
        )
        table = pacsv.read_csv(path, convert_options=options)
    else:
        table = pajson.read_json(path)
    present = [name for name in COLUMNS if name in table.column_names]
    return pa.Table.from_batches([_as_strings(b, present) for b in table.to_batches()], _schema(present))


def _schema(columns: list[str]) -> pa.Schema:
    return pa.schema([(name, pa.string()) for name in columns])


def _as_strings(batch: pa.RecordBatch, columns: list[str]) -> pa.RecordBatch:
    """Cast every column to plain strings (shards may store large_string, dictionary or all-null columns)."""
    arrays = []
    for name in columns:
        array = batch.column(name)
        if pa.types.is_dictionary(array.type):
            array = array.dictionary_decode()
        arrays.append(array if array.type == pa.string() else array.cast(pa.string()))
    return pa.RecordBatch.from_arrays(arrays, schema=_schema(columns))
