"""The corpus sentences cut into the pieces the look-alike's rows are built from, plain or, with
`realistic=True`, with the typography and characters of Wikipedia text (curly quotes and apostrophes,
en and em dashes, accented and non-Latin names, emoji, no-break spaces before units, a few
compatibility characters)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pyarrow as pa

from difusi.synthetic.corpus import indonesian_sentences

# What `realistic=True` mixes into the sentences, as Wikipedia text has them.
_NAMES = (
    "José Rizal", "São Paulo", "Müller", "Việt Nam", "Łódź", "Zürich", "Curaçao", "Ngũgĩ wa Thiong’o",
    "Ελλάδα", "Москва", "東京", "أحمد دحلان", "Bahasa Bali: ᬩᬲᬩᬮᬶ", "Nguyễn Trãi", "Ṣaḥīḥ",
)  # fmt: skip
_EMOJI = ("🙂", "👍🏽", "👨‍👩‍👧", "🇮🇩", "❤️", "🎉")
# Characters NFKC rewrites (superscripts, ligatures, fractions, full-width, decomposed accents).
_COMPAT = ("luas 12\u00a0km²", "ﬁnalis", "½ bagian", "ＡＢＣ", "cafe\u0301", "abad Ⅻ", "ﬂora")


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
