"""Stages 1-2 at full scale: every shard streamed once in batches of a few tens of thousands of rows,
subsets counted, the chosen ones kept with their template and the key of their normalised pair
(difusi.data.normalise); and the de-duplication that keeps each key's first row in source order."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from tqdm.auto import tqdm

from difusi.data.normalise import pair_keys
from difusi.data.source import Source


@dataclass
class Scan:
    """What stages 1-2 keep of a source: a few numbers per row of the chosen subsets."""

    source_rows: int
    subset_names: list[str]  # the chosen subsets; `subsets` indexes this list
    rows_per_subset: dict[str, int]  # every subset_name in the source (null as "")
    rows: np.ndarray  # global row index of each kept row (chosen subset, non-empty input and output)
    subsets: np.ndarray
    templates: np.ndarray  # index into template_names (sorted, so codes follow name order)
    template_names: list[str]
    keys: np.ndarray  # pair_keys of the normalised (input, output)
    empty_per_subset: np.ndarray  # rows of each chosen subset dropped for null or empty input/output

    @property
    def subset_rows(self) -> int:
        return sum(self.rows_per_subset.get(name, 0) for name in self.subset_names)

    @property
    def empty_dropped(self) -> int:
        return int(self.empty_per_subset.sum())


@dataclass
class _FileScan:
    rows_per_subset: dict[str, int]
    rows: np.ndarray
    subsets: np.ndarray
    templates: pa.Array
    keys: np.ndarray
    empty_per_subset: np.ndarray


def scan(source: Source, subsets: list[str] | tuple[str, ...], workers: int | None = None) -> Scan:
    """Stream every shard once: count subsets, keep the chosen ones with non-empty text, key their pairs."""
    chosen = pa.array(list(subsets), pa.string())
    workers = workers or min(4, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        jobs = pool.map(lambda i: _scan_file(source, i, chosen), range(len(source.files)))
        parts = list(tqdm(jobs, total=len(source.files), desc="scan shards", unit="shard", disable=None))
    rows_per_subset: dict[str, int] = {}
    for part in parts:
        for name, count in part.rows_per_subset.items():
            rows_per_subset[name] = rows_per_subset.get(name, 0) + count
    templates = pa.chunked_array([p.templates for p in parts], pa.string())
    template_names = sorted(pc.unique(templates).to_pylist())
    codes = pc.index_in(templates, pa.array(template_names, pa.string()))
    return Scan(
        source_rows=source.num_rows,
        subset_names=list(subsets),
        rows_per_subset=dict(sorted(rows_per_subset.items(), key=lambda kv: (-kv[1], kv[0]))),
        rows=np.concatenate([p.rows for p in parts]),
        subsets=np.concatenate([p.subsets for p in parts]),
        templates=np.asarray(codes.to_numpy(), dtype=np.int64),
        template_names=template_names,
        keys=np.concatenate([p.keys for p in parts]),
        empty_per_subset=np.sum([p.empty_per_subset for p in parts], axis=0),
    )


def _scan_file(source: Source, file_index: int, chosen: pa.Array) -> _FileScan:
    rows_per_subset: dict[str, int] = {}
    rows, subsets, templates, keys = [], [], [], []
    empty = np.zeros(len(chosen), dtype=np.int64)
    start = int(source.offsets[file_index])
    columns = ["subset_name", "template_name", "input", "output"]
    for batch in source.iter_batches(file_index, columns):
        subset = pc.fill_null(batch.column("subset_name"), "")
        for item in pc.value_counts(subset).to_pylist():
            rows_per_subset[item["values"]] = rows_per_subset.get(item["values"], 0) + item["counts"]
        code = pc.index_in(subset, chosen)
        in_subsets = pc.is_valid(code)
        index = np.flatnonzero(in_subsets.to_numpy(zero_copy_only=False))
        if len(index) == 0:
            start += batch.num_rows
            continue
        kept = batch.filter(in_subsets)
        batch_keys, has_empty = pair_keys(kept.column("input"), kept.column("output"))
        code_np = pc.filter(code, in_subsets).to_numpy(zero_copy_only=False)
        empty += np.bincount(code_np[has_empty], minlength=len(chosen))
        rows.append(start + index[~has_empty])
        subsets.append(code_np[~has_empty])
        templates.append(pc.fill_null(kept.column("template_name"), "").filter(pa.array(~has_empty)))
        keys.append(batch_keys[~has_empty])
        start += batch.num_rows
    return _FileScan(
        rows_per_subset=rows_per_subset,
        rows=np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64),
        subsets=np.concatenate(subsets) if subsets else np.zeros(0, dtype=np.int64),
        templates=pa.concat_arrays(templates) if templates else pa.array([], pa.string()),
        keys=np.concatenate(keys) if keys else np.zeros(0, dtype=np.uint64),
        empty_per_subset=empty,
    )


def first_occurrences(keys: np.ndarray) -> np.ndarray:
    """Boolean mask keeping the first row (in source order) of every distinct key."""
    _, first = np.unique(keys, return_index=True)
    keep = np.zeros(len(keys), dtype=bool)
    keep[first] = True
    return keep
