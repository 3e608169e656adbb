"""Fixtures for tuning tests: a small prepared data directory (train/test parquet) and a config factory."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from difusi.synthetic.corpus import indonesian_sentences
from difusi.tuning.config import TrainConfig

COLUMNS = ("dataset_name", "subset_name", "prompt_id", "template_name", "dataset_key", "input", "output")


def write_split(path: Path, pairs: list[tuple[str, str]]) -> None:
    """A parquet file in the prepared-data schema holding (input, output) pairs."""
    n = len(pairs)
    columns = {
        "dataset_name": ["cendol_collection_v2"] * n,
        "subset_name": ["wikipedia_id"] * n,
        "prompt_id": ["p0"] * n,
        "template_name": ["wikipedia_section_0"] * n,
        "dataset_key": ["train"] * n,
        "input": [p for p, _ in pairs],
        "output": [a for _, a in pairs],
    }
    pq.write_table(pa.table(columns), path)


def continuation_pairs(start: int, count: int) -> list[tuple[str, str]]:
    """Prompt: the first words of a real Indonesian sentence; answer: its next words."""
    pairs = []
    for sentence in indonesian_sentences()[start : start + count]:
        words = sentence.split()
        pairs.append(("Lanjutkan: " + " ".join(words[:4]), " ".join(words[4:12])))
    return pairs


@pytest.fixture(name="write_split")
def write_split_fixture():
    """The `write_split(path, pairs)` helper, for tests that build their own data."""
    return write_split


@pytest.fixture(scope="session")
def sft_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Data directory with 16 train rows (no test split: no eval ELBO)."""
    root = tmp_path_factory.mktemp("sft_data")
    write_split(root / "train.parquet", continuation_pairs(0, 16))
    return root


@pytest.fixture(scope="session")
def sft_data_with_test(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Data directory with 16 train rows and 4 test rows."""
    root = tmp_path_factory.mktemp("sft_data_with_test")
    write_split(root / "train.parquet", continuation_pairs(0, 16))
    write_split(root / "test.parquet", continuation_pairs(100, 4))
    return root


@pytest.fixture
def make_config(tiny_checkpoint: Path, sft_data: Path, tmp_path: Path):
    """TrainConfig factory for short fp32 CPU runs on the tiny model; keyword arguments override."""

    def make(**overrides) -> TrainConfig:
        settings = dict(
            base=str(tiny_checkpoint),
            data=str(sft_data),
            out=str(tmp_path / "run"),
            rank=4,
            alpha=8.0,
            dropout=0.0,
            learning_rate=1e-2,
            batch_size=4,
            grad_accumulation=2,
            max_steps=4,
            warmup_ratio=0.0,
            scheduler="linear",
            precision="fp32",
            max_length=64,
            eval_steps=0,
            eval_mc_num=2,
            logging_steps=1,
            save_steps=2,
        )
        return TrainConfig().with_overrides(settings | overrides)

    return make
