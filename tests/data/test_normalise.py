"""Normalisation stays exactly `" ".join(unicodedata.normalize("NFKC", s).lower().split())`, whatever the
text: characters NFKC rewrites, case mappings that are special or depend on context, every kind of
whitespace, in every position."""

from __future__ import annotations

import random
import unicodedata

import numpy as np
import polars as pl
import pyarrow as pa

from difusi.data.normalise import normalise, normalised_hashes, pair_keys


def reference(text: str | None) -> str:
    return " ".join(unicodedata.normalize("NFKC", text or "").lower().split())


def reference_hashes(texts: list[str | None]) -> np.ndarray:
    return pl.Series([reference(t) for t in texts], dtype=pl.String).hash(seed=0).to_numpy()


TRICKY = [
    None,
    "",
    " ",
    "   ",
    "\t\n",
    "plain ascii",
    "Plain ASCII With Capitals",
    "  leading and trailing  ",
    "double  space",
    "tab\tand\r\nCRLF\nnewline",
    "ﬁnal ﬂow ﬃ",  # ligatures
    "ＦＵＬＬ－ｗｉｄｔｈ　ｓｐａｃｅ",  # full-width letters and ideographic space
    "km² x³ H₂O",  # super- and subscripts
    "abad Ⅻ Ⅳ ⅻ",  # Roman numerals
    "İstanbul İİ",  # Turkish dotted capital I: lowercases to two code points
    "STRASSE Straße ẞ",  # German sharp s, and its capital
    "ΟΔΥΣΣΕΥΣ ΣΑΣ Σ.",  # Greek capital sigma: final form depends on context
    "cafe\u0301 Cafe\u0301 E\u0301",  # decomposed accents
    "e\u0301\u0323 a\u0323\u0301",  # combining marks out of canonical order
    "café Café É",  # precomposed
    "👨‍👩‍👧 👍🏽 🇮🇩 ❤️",  # ZWJ sequence, skin tone, flag, variation selector
    "no\u00a0break\u00a0space",
    "line\u2028separator\u2029paragraph",
    "next\x85line",
    "unit\x1fseparator\x1c\x1d\x1e",
    "thin\u2009space\u202fnarrow\u3000ideographic\u205fmath\u1680ogham",
    "“curly” ‘quotes’ – en — em … ellipsis",
    "Ελλάδα Москва 東京 أحمد",
    "\u00a0\u2028 edges \x85\u3000",
    "한국어 \u1100\u1161\u11a8 가\u11a8",  # Hangul: conjoining jamo compose
    "Å Å Å",  # angstrom sign, A with ring, A + combining ring
    "ǅ ǈ ǋ",  # title-case digraphs
    "ﬅ ﬆ ŉ",  # ligatures and a letter that lowercases to itself but decomposes
    "\u0345 \u03b9\u0345",  # combining ypogegrammeni
    "x\u0000y\x07z",  # control characters that are not whitespace
]

# Characters from all of the above, and more, to mix at random.
ALPHABET = sorted(
    set("".join(t for t in TRICKY if t))
    | set("aAzZ09.,- \t\n\r\x0b\x0cÉéÆæØĲĳΣσςΐİıẞßǄǅǆ\u0300\u0301\u0308\u0327\u0338\u200b\u200d\ufe0f")
    | {"\u00a0", "\u2028", "\u2029", "\x85", "\x1c", "\x1f", "\u3000", "\u1161", "\u11a8", "\uac00"}
)


def random_strings(count: int, seed: int) -> list[str | None]:
    rng = random.Random(seed)
    texts: list[str | None] = []
    for _ in range(count):
        if rng.random() < 0.02:
            texts.append(None)
            continue
        # Mostly ASCII words with a few tricky characters, as in real text, and some all-tricky strings.
        tricky = rng.choice([0.02, 0.1, 0.5, 1.0])
        pieces = [
            rng.choice(ALPHABET) if rng.random() < tricky else rng.choice("abc ABC xyz ")
            for _ in range(rng.randrange(0, 40))
        ]
        texts.append("".join(pieces))
    return texts


def random_code_point_strings(count: int, seed: int) -> list[str]:
    """ASCII mixed with code points drawn from all of Unicode (assigned or not, any Unicode version)."""
    rng = random.Random(seed)

    def code_point() -> str:
        while True:
            code = rng.randrange(0x110000) if rng.random() < 0.5 else rng.randrange(0x3000)
            if not 0xD800 <= code < 0xE000:  # surrogates are not text
                return chr(code)

    return [
        "".join(
            code_point() if rng.random() < 0.3 else rng.choice("ab A \n") for _ in range(rng.randrange(30))
        )
        for _ in range(count)
    ]


def check(texts: list[str | None]) -> None:
    got = normalise(pa.array(texts, pa.string())).to_pylist()
    for text, value in zip(texts, got, strict=True):
        assert value == reference(text), repr(text)
    hashes, empty = normalised_hashes(pa.array(texts, pa.string()))
    np.testing.assert_array_equal(hashes, reference_hashes(texts))
    np.testing.assert_array_equal(empty, [reference(t) == "" for t in texts])


def test_tricky_strings_normalise_exactly():
    check(TRICKY)


def test_tricky_strings_one_at_a_time():
    for text in TRICKY:
        check([text])


def test_random_mixes_normalise_exactly():
    check(random_strings(5_000, seed=7))


def test_random_code_points_normalise_exactly():
    check(random_code_point_strings(5_000, seed=5))


def test_sliced_and_chunked_input():
    texts = random_strings(600, seed=11)
    chunked = pa.chunked_array([pa.array(texts[:250], pa.string()), pa.array(texts[250:], pa.string())])
    assert normalise(chunked).to_pylist() == [reference(t) for t in texts]
    sliced = pa.array(texts, pa.string()).slice(123, 300)
    assert normalise(sliced).to_pylist() == [reference(t) for t in texts[123:423]]


def test_pair_keys_match_reference_hashes():
    inputs, outputs = random_strings(1_000, seed=1), random_strings(1_000, seed=2)
    keys, has_empty = pair_keys(pa.array(inputs, pa.string()), pa.array(outputs, pa.string()))
    expected = reference_hashes(inputs) * np.uint64(0x9E3779B97F4A7C15) + reference_hashes(outputs)
    np.testing.assert_array_equal(keys, expected)
    np.testing.assert_array_equal(
        has_empty, [reference(a) == "" or reference(b) == "" for a, b in zip(inputs, outputs, strict=True)]
    )
