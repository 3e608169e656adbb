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

import re
import uuid
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from difusi.corpus import indonesian_sentences
from difusi.data.source import SCHEMA
from difusi.io import atomic_directory

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


@dataclass(frozen=True)
class Template:
    """One instruction format: input = prefix + subject + suffix."""

    name: str
    prefix: str
    suffix: str

    @property
    def prompt_id(self) -> str:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"difusi-synth/{self.name}"))


def _family(stem: str, phrasings: list[tuple[str, str]]) -> list[Template]:
    return [Template(f"{stem}_{i}", prefix, suffix) for i, (prefix, suffix) in enumerate(phrasings)]


_SECTION = [
    ('Tuliskan bagian artikel Wikipedia tentang "', '".'),
    ('Jelaskan "', '" seperti dalam artikel Wikipedia.'),
    ('Buatlah satu bagian ensiklopedia dengan judul "', '".'),
    ('Apa yang kamu ketahui tentang "', '"? Jawab seperti Wikipedia.'),
    ('Tulis paragraf informatif berjudul "', '".'),
]
_SUBSECTION = [
    ('Tuliskan subbagian "', '" dari sebuah artikel Wikipedia.'),
    ('Jelaskan subbagian "', '" dari sebuah artikel Wikipedia.'),
    ('Buatlah subbagian "', '" dari sebuah artikel Wikipedia.'),
    ('Lanjutkan artikel Wikipedia dengan subbagian "', '".'),
    ('Isi subbagian "', '" pada artikel ensiklopedia.'),
]
WIKI_TEMPLATES = _family("wikipedia_section", _SECTION) + _family("wikipedia_subsection", _SUBSECTION)
WIKI_DAERAH_TEMPLATES = _family("wikipedia_section_daerah", _SECTION) + _family(
    "wikipedia_subsection_daerah", _SUBSECTION
)
_POEM_OPENINGS = (
    'Buatlah puisi berjudul "',
    'Tuliskan sebuah puisi dengan judul "',
    'Karang puisi tentang "',
    'Puisi "',
)
_POEM_ENDINGS = ('".', '" dalam empat baris.', '" untuk dibacakan.', '" yang indah.', '", tanpa penjelasan.')
PUISI_TEMPLATES = _family("indo_puisi", [(p, e) for p in _POEM_OPENINGS for e in _POEM_ENDINGS])
WIKIHOW_TEMPLATES = _family(
    "wikihow",
    [
        ("Bagaimana cara ", "?"),
        ("Jelaskan langkah-langkah untuk ", "."),
        ("Tuliskan panduan singkat: ", "."),
        ("Apa saja tahapan ", "?"),
        ("Beri saya petunjuk ", "."),
    ],
)
NUSA_TEMPLATES = _family(
    "nusaparagraph",
    [
        ("Apa topik paragraf berikut?\n", ""),
        ("Tentukan kategori teks ini:\n", ""),
        ("Baca paragraf berikut lalu sebutkan topiknya.\n", ""),
    ],
)
# dolly: learnable single-turn tasks on one sentence (continuation, title, lowercase, word count).
DOLLY_TEMPLATES = [
    Template("dolly_lanjutkan", "Lanjutkan kalimat berikut: ", ""),
    Template("dolly_judul", "Buatlah judul singkat untuk kalimat berikut: ", ""),
    Template("dolly_huruf_kecil", "Tulis ulang kalimat berikut dengan huruf kecil: ", ""),
    Template("dolly_hitung_kata", "Berapa jumlah kata pada kalimat berikut? ", ""),
]
SAFETY_TEMPLATE = Template("safety_prompt", "Tolong bantu saya ", " dengan cara yang merugikan orang lain.")
IDENTITY_TEMPLATE = Template("identity_prompt", "", "")
_REFUSALS = [
    "Maaf, saya tidak dapat membantu permintaan tersebut karena dapat membahayakan orang lain.",
    "Maaf, permintaan itu tidak bisa saya bantu. Mari cari cara yang aman dan bermanfaat.",
    "Saya tidak dapat memberikan bantuan untuk hal yang merugikan orang lain.",
]
_IDENTITY_QUESTIONS = [
    "Siapa kamu?",
    "Apa namamu?",
    "Siapa yang membuatmu?",
    "Kamu ini model apa?",
    "Perkenalkan dirimu.",
]
_IDENTITY_ANSWER = (
    "Saya Cendol, model bahasa yang dikembangkan oleh IndoNLP untuk membantu dalam Bahasa Indonesia."
)
# What `realistic=True` mixes into the sentences, as Wikipedia text has them.
_NAMES = (
    "José Rizal", "São Paulo", "Müller", "Việt Nam", "Łódź", "Zürich", "Curaçao", "Ngũgĩ wa Thiong’o",
    "Ελλάδα", "Москва", "東京", "أحمد دحلان", "Bahasa Bali: ᬩᬲᬩᬮᬶ", "Nguyễn Trãi", "Ṣaḥīḥ",
)  # fmt: skip
_EMOJI = ("🙂", "👍🏽", "👨‍👩‍👧", "🇮🇩", "❤️", "🎉")
# Characters NFKC rewrites (superscripts, ligatures, fractions, full-width, decomposed accents).
_COMPAT = ("luas 12\u00a0km²", "ﬁnalis", "½ bagian", "ＡＢＣ", "cafe\u0301", "abad Ⅻ", "ﬂora")
_NUSA_LABELS = ["politik", "ekonomi", "olahraga", "budaya", "kesehatan", "pendidikan", "hukum", "teknologi"]


@dataclass(frozen=True)
class Pool:
    """Per-sentence text pieces, precomputed once so rows are assembled with vectorised `take`s."""

    sentence: pa.Array
    head: pa.Array  # first half of the words (for continuation)
    tail: pa.Array
    title: pa.Array  # first three words, capitalised
    words: pa.Array  # word count as text
    poem: pa.Array  # this sentence and the next as four short lines


@lru_cache(maxsize=2)
def sentence_pool(realistic: bool = False) -> Pool:
    sentences = indonesian_sentences()
    if realistic:
        rng = np.random.default_rng(2024)
        sentences = tuple(_realistic(sentence, rng) for sentence in sentences)
    columns: dict[str, list[str]] = {name: [] for name in ("head", "tail", "title", "words", "poem")}
    for i, sentence in enumerate(sentences):  # 32,780 pool entries, not rows
        words = sentence.split()
        half = max(1, len(words) // 2)
        columns["head"].append(" ".join(words[:half]))
        columns["tail"].append(" ".join(words[half:]) or ".")
        columns["title"].append(" ".join(w.strip(".,;:!?\"'()").capitalize() for w in words[:3]).strip())
        columns["words"].append(f"Kalimat tersebut terdiri dari {len(words)} kata.")
        verse = (sentence + " " + sentences[(i + 1) % len(sentences)]).split()
        step = max(1, -(-len(verse) // 4))
        columns["poem"].append("\n".join(" ".join(verse[j : j + step]) for j in range(0, len(verse), step)))
    return Pool(
        sentence=pa.array(sentences, pa.string()), **{k: pa.array(v, pa.string()) for k, v in columns.items()}
    )


def _realistic(sentence: str, rng: np.random.Generator) -> str:
    """The sentence with, at random, the typography and characters of Wikipedia text."""
    draw = rng.random(7)
    if draw[0] < 0.6:  # curly quotes and apostrophes
        sentence = re.sub(r'"([^"]*)"', r"“\1”", sentence).replace("'", "’")
    if draw[1] < 0.5:
        sentence = sentence.replace(" - ", " – ")
    words = sentence.split(" ")
    at = int(rng.integers(1, len(words) + 1))
    if draw[2] < 0.05:
        words.insert(at, "—")
    if draw[3] < 0.06:
        words.insert(at, f"({_NAMES[int(rng.integers(len(_NAMES)))]})")
    if draw[4] < 0.03:
        words.insert(at, f"sejauh {int(rng.integers(2, 900))}\u00a0km")
    if draw[5] < 0.01:
        words.insert(at, _COMPAT[int(rng.integers(len(_COMPAT)))])
    if draw[6] < 0.015:
        words.append(_EMOJI[int(rng.integers(len(_EMOJI)))])
    return " ".join(words)


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


def _subset_rows(
    subset: str, ordinals: np.ndarray, total: int, rng: np.random.Generator, realistic: bool = False
) -> pa.Table:
    """Rows of one subset; `ordinals` (positions within the subset) decide duplicates and poems."""
    pool = sentence_pool(realistic)
    size = len(pool.sentence)
    n = len(ordinals)
    if subset.startswith("wikipedia"):
        templates = WIKI_TEMPLATES if subset == "wikipedia_id" else WIKI_DAERAH_TEMPLATES
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
    elif subset.startswith("nusaparagraph"):
        templates = NUSA_TEMPLATES
        which = rng.integers(0, len(templates), n)
        start = rng.integers(0, size, n)
        inputs = _fill(templates, which, _paragraphs(pool.sentence, start, rng.integers(1, 4, n), " "))
        outputs = pa.array(_NUSA_LABELS).take(pa.array(start % len(_NUSA_LABELS)))
    elif subset == "indo_puisi":
        templates = PUISI_TEMPLATES
        which = ordinals % len(templates)
        poem = pa.array((ordinals // len(templates)) * 7919 % size)
        inputs = _fill(templates, which, pool.title.take(poem))
        outputs = pool.poem.take(poem)
    elif subset == "wikihow":
        templates = WIKIHOW_TEMPLATES
        which = rng.integers(0, len(templates), n)
        start = rng.integers(0, size, n)
        inputs = _fill(templates, which, pc.utf8_lower(pool.title.take(pa.array(start))))
        outputs = _paragraphs(pool.sentence, start, rng.integers(3, 8, n), "\n", numbered=True)
    else:
        # Duplicated subsets: each distinct pair is a function of ordinal % distinct, so copies are exact.
        pair = ordinals % max(1, round(total / COPIES[subset]))
        sentence = pa.array(pair * 104_729 % size)
        if subset == "dolly":
            templates = DOLLY_TEMPLATES
            which = pair % len(templates)
            inputs = _fill(templates, which, pool.sentence.take(sentence))
            task_outputs = [pool.tail, pool.title, pc.utf8_lower(pool.sentence), pool.words]
            outputs = pc.choose(pa.array(which), *[column.take(sentence) for column in task_outputs])
        elif subset == "safety_prompt":
            templates = [SAFETY_TEMPLATE]
            which = np.zeros(n, dtype=np.int64)
            inputs = _fill(templates, which, pc.utf8_lower(pool.title.take(sentence)))
            outputs = pa.array(_REFUSALS).take(pa.array(pair % len(_REFUSALS)))
        else:
            templates = [IDENTITY_TEMPLATE]
            which = np.zeros(n, dtype=np.int64)
            questions = pa.array(_IDENTITY_QUESTIONS).take(pa.array(pair % len(_IDENTITY_QUESTIONS)))
            inputs = pc.binary_join_element_wise(questions, pool.title.take(sentence), " (")
            inputs = pc.binary_join_element_wise(inputs, pa.scalar(")"), "")
            outputs = pa.array([_IDENTITY_ANSWER] * n, pa.string())
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
