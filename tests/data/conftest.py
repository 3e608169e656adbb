"""Shared fixtures for the data-preparation tests: one small generated Cendol, built once per run."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from difusi.data.synth import synth_cendol

CENDOL_ROWS = 8_000


@pytest.fixture(scope="session")
def cendol_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated 8,000-row Cendol in 3 parquet shards (seed 3)."""
    out = tmp_path_factory.mktemp("cendol") / "cendol"
    synth_cendol(out, CENDOL_ROWS, seed=3, shards=3)
    return out


@pytest.fixture(scope="session")
def cendol_table(cendol_dir: Path) -> pa.Table:
    """All rows of `cendol_dir`, in shard order."""
    return pa.concat_tables(pq.read_table(p) for p in sorted((cendol_dir / "data").glob("*.parquet")))
