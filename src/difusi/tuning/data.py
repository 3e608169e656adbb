"""Prepared Cendol parquet -> tokenized SFT examples in the LLaDA chat format, and their collator."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pyarrow.parquet as pq
from transformers import PreTrainedTokenizerBase

from difusi.data.chat_format import build_sft_example, collate_sft
from difusi.errors import DifusiError


@dataclass
class SFTData:
    """Tokenized examples of one split, with how many rows were read and how many were truncated."""

    examples: list[dict]
    rows: int
    truncated: int


def split_path(data_dir: str | Path, split: str) -> Path:
    """`DATA/{split}.parquet`, as `difusi prepare` writes it."""
    return Path(data_dir) / f"{split}.parquet"


def load_sft_data(
    data_dir: str | Path,
    split: str,
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
    limit: int = 0,
) -> SFTData:
    """Read `split`.parquet (columns `input`, `output`) and build one SFT example per row.

    `limit` > 0 keeps the first `limit` rows. Answers longer than max_length allows are cut and
    counted; a prompt that leaves no room for the answer is an error naming the row.
    """
    path = split_path(data_dir, split)
    if not path.is_file():
        raise DifusiError(
            f"no {path.name} in {data_dir}; run `difusi prepare` or pass the prepared data directory"
        )
    table = pq.read_table(path, columns=["input", "output"])
    if limit > 0:
        table = table.slice(0, limit)
    if table.num_rows == 0:
        raise DifusiError(f"{path} holds no rows; prepare a non-empty data set")
    examples = []
    for row, (prompt, answer) in enumerate(
        zip(table["input"].to_pylist(), table["output"].to_pylist(), strict=True)
    ):
        try:
            examples.append(build_sft_example(tokenizer, prompt or "", answer or "", max_length))
        except DifusiError as error:
            raise DifusiError(f"{path.name} row {row}: {error}") from error
    return SFTData(examples, len(examples), sum(e["truncated"] for e in examples))


def sft_collator(pad_id: int, answer_area: int = 0):
    """Trainer data collator: EOS-padded input_ids [B, T] and prompt_lengths [B] (see `collate_sft`)."""
    return partial(collate_sft, pad_id=pad_id, answer_area=answer_area)
