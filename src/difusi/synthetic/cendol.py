"""An offline Cendol Collection v2 look-alike: the same columns, subsets, proportions and flaws.

Every subset of the real collection appears in its real proportion (at least one row each when there is
room), with several templates per subset, the real duplicate patterns (safety_prompt and identity_prompt
as 500 copies of each pair, dolly as 5, every indo_puisi poem under 20 templates) and a few rows with a
null or empty input or output. The text is real Indonesian news prose from `indonesian_sentences()` put
into instruction tasks a small model can learn (continue a sentence, title or summarise a paragraph,
write a wiki section, a poem, steps). Rows are shuffled across shards, the worst case for streaming
readers. Everything is vectorised, so the full 12.8M-row collection takes minutes, not hours.

The news corpus is nearly all ASCII. `realistic=True` gives the text what Wikipedia text has: curly
quotes and apostrophes, en and em dashes, accented and non-Latin names, emoji, no-break spaces before
units, a few compatibility characters (km², ligatures, decomposed accents) and paragraph breaks, so most
rows hold some non-ASCII character or newline.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from difusi.data.source import SCHEMA
from difusi.io import atomic_directory
from difusi.synthetic.prose import Pool, sentence_pool
from difusi.synthetic.templates import (
    DOLLY_TEMPLATES,
    IDENTITY_ANSWER,
    IDENTITY_QUESTIONS,
    IDENTITY_TEMPLATE,
    NUSA_TEMPLATES,
    PUISI_TEMPLATES,
    REFUSALS,
    SAFETY_TEMPLATE,
    WIKI_DAERAH_TEMPLATES,
    WIKI_TEMPLATES,
    WIKIHOW_TEMPLATES,
    Template,
)

FULL_ROWS = 12_810_390
FULL_SHARDS = 23
_NUSA_LANGUAGES = ("btk", "bew", "bug", "jav", "mad", "mak", "min", "mui", "rej", "sun")
_NUSA_SUBSETS = tuple(
    f"nusaparagraph_{task}_{lang}_nusantara_text"
    for task in ("topic", "emot", "rhetoric")
    for lang in _NUSA_LANGUAGES
)
# Rows per subset in the real collection (the 30 nusaparagraph subsets share 1,586,799 rows).
REAL_SUBSET_ROWS = {
    "wikipedia_id": 6_069_267,
    "wikipedia_ms": 2_094_812,
    **{name: 1_586_799 / len(_NUSA_SUBSETS) for name in _NUSA_SUBSETS},
    "wikipedia_min": 1_431_747,
    "wikipedia_su": 465_517,
    "wikipedia_jv": 375_368,
    "indo_puisi": 144_460,
    "wikihow": 97_848,
    "safety_prompt": 93_500,
    "wikipedia_ban": 92_778,
    "dolly": 75_055,
    "wikipedia_map-bms": 64_048,
    "identity_prompt": 62_500,
    "wikipedia_gor": 62_076,
    "wikipedia_bjn": 55_585,
    "wikipedia_ace": 22_270,
    "wikipedia_nia": 8_865,
    "wikipedia_tet": 7_262,
    "wikipedia_bug": 633,
}
COPIES = {"safety_prompt": 500, "identity_prompt": 500, "dolly": 5}
NULL_EVERY = 20_000  # about one row in this many has a null or empty input or output
_NUSA_LABELS = ["politik", "ekonomi", "olahraga", "budaya", "kesehatan", "pendidikan", "hukum", "teknologi"]


def subset_counts(rows: int) -> dict[str, int]:
    """Rows per subset for a collection of `rows` rows: real proportions, largest-remainder rounding,
    every subset at least one row when rows allow."""
    names = list(REAL_SUBSET_ROWS)
    exact = np.array([REAL_SUBSET_ROWS[n] for n in names]) * rows / sum(REAL_SUBSET_ROWS.values())
    counts = np.floor(exact).astype(np.int64)
    counts[np.argsort(-(exact - counts), kind="stable")[: rows - counts.sum()]] += 1
    if rows >= len(names):
        for i in np.flatnonzero(counts == 0):
            counts[i], counts[np.argmax(counts)] = 1, counts[np.argmax(counts)] - 1
    return dict(zip(names, counts.tolist(), strict=True))


def synth_cendol(
    out_dir: str | Path, rows: int, seed: int = 0, shards: int = FULL_SHARDS, realistic: bool = False
) -> list[Path]:
    """Write a Cendol-shaped collection of `rows` rows as `shards` parquet files (data/train-*.parquet);
    `realistic` gives it Wikipedia-like non-ASCII text and paragraph breaks (see the module docstring)."""
    if rows < 1 or shards < 1:
        raise ValueError(f"--rows and --shards must be at least 1, got {rows} and {shards}")
    counts = subset_counts(rows)
    names = list(counts)
    rng = np.random.default_rng(seed)
    subset_of_row = rng.permutation(np.repeat(np.arange(len(names)), list(counts.values())))
    # ordinal: the row's position within its own subset, which fixes duplicate and poem structure.
    order = np.argsort(subset_of_row, kind="stable")
    starts = np.concatenate([[0], np.cumsum(list(counts.values()))[:-1]])
    ordinal = np.empty(rows, dtype=np.int64)
    ordinal[order] = np.arange(rows) - np.repeat(starts, list(counts.values()))
    null_rows = (
        set(rng.choice(rows, rows // NULL_EVERY + 2, replace=False).tolist()) if rows >= 200 else set()
    )
    bounds = np.linspace(0, rows, shards + 1).astype(np.int64)
    paths = []
    with atomic_directory(out_dir) as work:
        (work / "data").mkdir()
        for shard in tqdm(range(shards), desc="synth shards", unit="shard", disable=None):
            lo, hi = bounds[shard], bounds[shard + 1]
            table = _shard_table(names, subset_of_row[lo:hi], ordinal[lo:hi], counts, seed, shard, realistic)
            table = _with_nulls(table, sorted(r - lo for r in null_rows if lo <= r < hi))
            name = f"train-{shard:05d}-of-{shards:05d}.parquet"
            pq.write_table(table, work / "data" / name, compression="zstd", row_group_size=100_000)
            paths.append(Path(out_dir) / "data" / name)
    return paths


def _shard_table(names, subset_ids, ordinals, counts, seed, shard, realistic=False) -> pa.Table:
    rng = np.random.default_rng([seed, shard])
    pieces, positions = [], []
    for code in np.unique(subset_ids):
        where = np.flatnonzero(subset_ids == code)
        pieces.append(_subset_rows(names[code], ordinals[where], counts[names[code]], rng, realistic))
        positions.append(where)
    table = pa.concat_tables(pieces)
    return table.take(pa.array(np.argsort(np.concatenate(positions), kind="stable")))


# A subset's rows: (templates, template of each row, inputs, outputs) from the subset's name, the rows'
# ordinals (positions within the subset, which decide duplicates and poems), the subset's size, the
# shard's generator, the sentence pool and whether the text is realistic.
Built = tuple[list[Template], np.ndarray, pa.Array, pa.Array]


def _wikipedia(subset: str, ordinals, total, rng, pool: Pool, realistic: bool) -> Built:
    templates = WIKI_TEMPLATES if subset == "wikipedia_id" else WIKI_DAERAH_TEMPLATES
    n, size = len(ordinals), len(pool.sentence)
    which = rng.integers(0, len(templates), n)
    start = rng.integers(0, size, n)
    inputs = _fill(templates, which, pool.title.take(pa.array(start)))
    # The first sentence carries the title; the rest are drawn at random, so paragraphs are
    # (nearly) all distinct, as in the real wiki subsets.
    follow = _paragraphs(
        pool.sentence,
        rng.integers(0, size, n),
        rng.integers(4, 13 if realistic else 14, n),
        " ",
        step=rng.integers(1, 1_000, n),
    )
    outputs = pc.binary_join_element_wise(pool.sentence.take(pa.array(start)), follow, " ")
    if realistic:  # paragraph breaks in nearly half of the sections
        breaks = pc.replace_substring(outputs, ". ", ".\n\n", max_replacements=2)
        outputs = pc.if_else(pa.array(rng.random(n) < 0.45), breaks, outputs)
    return templates, which, inputs, outputs


def _nusaparagraph(subset: str, ordinals, total, rng, pool: Pool, realistic: bool) -> Built:
    n, size = len(ordinals), len(pool.sentence)
    which = rng.integers(0, len(NUSA_TEMPLATES), n)
    start = rng.integers(0, size, n)
    inputs = _fill(NUSA_TEMPLATES, which, _paragraphs(pool.sentence, start, rng.integers(1, 4, n), " "))
    return NUSA_TEMPLATES, which, inputs, pa.array(_NUSA_LABELS).take(pa.array(start % len(_NUSA_LABELS)))


def _indo_puisi(subset: str, ordinals, total, rng, pool: Pool, realistic: bool) -> Built:
    which = ordinals % len(PUISI_TEMPLATES)
    poem = pa.array((ordinals // len(PUISI_TEMPLATES)) * 7919 % len(pool.sentence))
    return PUISI_TEMPLATES, which, _fill(PUISI_TEMPLATES, which, pool.title.take(poem)), pool.poem.take(poem)


def _wikihow(subset: str, ordinals, total, rng, pool: Pool, realistic: bool) -> Built:
    n, size = len(ordinals), len(pool.sentence)
    which = rng.integers(0, len(WIKIHOW_TEMPLATES), n)
    start = rng.integers(0, size, n)
    inputs = _fill(WIKIHOW_TEMPLATES, which, pc.utf8_lower(pool.title.take(pa.array(start))))
    outputs = _paragraphs(pool.sentence, start, rng.integers(3, 8, n), "\n", numbered=True)
    return WIKIHOW_TEMPLATES, which, inputs, outputs


def _pairs(subset: str, ordinals: np.ndarray, total: int, pool: Pool) -> tuple[np.ndarray, pa.Array]:
    """Duplicated subsets: each distinct pair is a function of ordinal % distinct, so copies are exact."""
    pair = ordinals % max(1, round(total / COPIES[subset]))
    return pair, pa.array(pair * 104_729 % len(pool.sentence))


def _dolly(subset: str, ordinals, total, rng, pool: Pool, realistic: bool) -> Built:
    pair, sentence = _pairs(subset, ordinals, total, pool)
    which = pair % len(DOLLY_TEMPLATES)
    inputs = _fill(DOLLY_TEMPLATES, which, pool.sentence.take(sentence))
    task_outputs = [pool.tail, pool.title, pc.utf8_lower(pool.sentence), pool.words]
    outputs = pc.choose(pa.array(which), *[column.take(sentence) for column in task_outputs])
    return DOLLY_TEMPLATES, which, inputs, outputs


def _safety_prompt(subset: str, ordinals, total, rng, pool: Pool, realistic: bool) -> Built:
    pair, sentence = _pairs(subset, ordinals, total, pool)
    which = np.zeros(len(ordinals), dtype=np.int64)
    inputs = _fill([SAFETY_TEMPLATE], which, pc.utf8_lower(pool.title.take(sentence)))
    return [SAFETY_TEMPLATE], which, inputs, pa.array(REFUSALS).take(pa.array(pair % len(REFUSALS)))


def _identity_prompt(subset: str, ordinals, total, rng, pool: Pool, realistic: bool) -> Built:
    pair, sentence = _pairs(subset, ordinals, total, pool)
    n = len(ordinals)
    questions = pa.array(IDENTITY_QUESTIONS).take(pa.array(pair % len(IDENTITY_QUESTIONS)))
    inputs = pc.binary_join_element_wise(questions, pool.title.take(sentence), " (")
    inputs = pc.binary_join_element_wise(inputs, pa.scalar(")"), "")
    return (
        [IDENTITY_TEMPLATE],
        np.zeros(n, dtype=np.int64),
        inputs,
        pa.array([IDENTITY_ANSWER] * n, pa.string()),
    )


# Subset name (or its family's prefix) -> the builder of its rows.
BUILDERS = {
    "wikipedia": _wikipedia,
    "nusaparagraph": _nusaparagraph,
    "indo_puisi": _indo_puisi,
    "wikihow": _wikihow,
    "dolly": _dolly,
    "safety_prompt": _safety_prompt,
    "identity_prompt": _identity_prompt,
}


def _subset_rows(
    subset: str, ordinals: np.ndarray, total: int, rng: np.random.Generator, realistic: bool = False
) -> pa.Table:
    """Rows of one subset in the Cendol schema."""
    family = subset if subset in BUILDERS else subset.split("_")[0]
    templates, which, inputs, outputs = BUILDERS[family](
        subset, ordinals, total, rng, sentence_pool(realistic), realistic
    )
    n = len(ordinals)
    names = pa.array([t.name for t in templates]).take(pa.array(which))
    # The real identity and safety rows carry the subset name as prompt_id.
    named = subset in ("safety_prompt", "identity_prompt")
    prompt_ids = pa.array([subset if named else t.prompt_id for t in templates])
    return pa.table(
        [
            pa.array([_dataset_name(subset)] * n, pa.string()),
            pa.array([subset] * n, pa.string()),
            prompt_ids.take(pa.array(which)),
            names,
            pa.array(["train"] * n, pa.string()),
            inputs,
            outputs,
        ],
        schema=SCHEMA,
    )


def _dataset_name(subset: str) -> str:
    if subset.startswith("nusaparagraph"):
        return "nusaparagraph_" + subset.split("_")[1]
    return subset.split("_")[0] if subset.startswith("wikipedia") else subset


def _fill(templates: list[Template], which: np.ndarray, subject: pa.Array) -> pa.Array:
    """prefix + subject + suffix per row, the template of row i being templates[which[i]]."""
    index = pa.array(which)
    prefix = pa.array([t.prefix for t in templates]).take(index)
    suffix = pa.array([t.suffix for t in templates]).take(index)
    return pc.binary_join_element_wise(prefix, subject, suffix, "")


def _paragraphs(
    sentences: pa.Array,
    start: np.ndarray,
    lengths: np.ndarray,
    sep: str,
    numbered: bool = False,
    step: np.ndarray | None = None,
) -> pa.Array:
    """Row i: `lengths[i]` corpus sentences start[i], start[i] + step[i], ... (wrapping; step 1 by
    default: consecutive sentences), joined by `sep`, numbered "1. ", "2. ", ... if asked."""
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    within = np.arange(offsets[-1]) - np.repeat(offsets[:-1], lengths)
    steps = np.ones(len(start), dtype=np.int64) if step is None else step
    values = sentences.take(
        pa.array((np.repeat(start, lengths) + within * np.repeat(steps, lengths)) % len(sentences))
    )
    if numbered:
        labels = pa.array([f"{i + 1}. " for i in range(int(lengths.max()))]).take(pa.array(within))
        values = pc.binary_join_element_wise(labels, values, "")
    return pc.binary_join(pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), values), sep)


def _with_nulls(table: pa.Table, rows: list[int]) -> pa.Table:
    """Blank the input or output of the given rows, cycling through null input, null output, empty
    input and empty output."""
    for kind, (name, value) in enumerate([("input", None), ("output", None), ("input", ""), ("output", "")]):
        mask = np.zeros(table.num_rows, dtype=bool)
        mask[rows[kind::4]] = True
        if mask.any():
            column = pc.if_else(pa.array(mask), pa.scalar(value, pa.string()), table[name])
            table = table.set_column(table.schema.get_field_index(name), name, column)
    return table
