"""Stage 3's notion of "the same pair": normalised text, and one 64-bit key per (input, output).

Each batch's input and output are normalised with pyarrow, polars and numpy kernels and reduced to one
64-bit key per row, so memory holds a few numbers per row whatever the text volume. Only the few
strings holding a character that NFKC may rewrite (km², ligatures, decomposed accents) go through
Python, one by one.

Normalisation: Unicode NFKC, then lowercase, then every run of whitespace collapsed to one space, then
leading and trailing whitespace stripped; for a Python string that is
`" ".join(unicodedata.normalize("NFKC", s).lower().split())`.
"""

from __future__ import annotations

import threading
import unicodedata
from functools import lru_cache

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

NORMALISATION = (
    "NFKC, lowercase, whitespace runs collapsed to one space, stripped "
    '(Python: " ".join(unicodedata.normalize("NFKC", s).lower().split()))'
)


def normalise(text: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Normalised strings (nulls become empty); see the module docstring for the rule."""
    lowered, special, fixed = _normalise_split(text)
    return pc.replace_with_mask(lowered, special, fixed) if len(fixed) else lowered


def normalised_hashes(text: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """A uint64 hash of every normalised string and a mask of the strings that normalise to empty.

    Equivalent to hashing `normalise(text)`, without rebuilding the whole array: the rewritten
    strings are hashed on their own and scattered into place.
    """
    lowered, special, fixed = _normalise_split(text)
    hashes = pl.from_arrow(lowered).hash(seed=0).to_numpy(writable=True)
    empty = np.array(pc.equal(pc.binary_length(lowered), 0).to_numpy(zero_copy_only=False))
    if len(fixed):
        where = np.flatnonzero(special)
        hashes[where] = pl.from_arrow(fixed).hash(seed=0).to_numpy()
        empty[where] = pc.equal(pc.binary_length(fixed), 0).to_numpy(zero_copy_only=False)
    return hashes, empty


def pair_keys(inputs: pa.Array, outputs: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """One uint64 key per normalised (input, output) pair, and a mask of pairs with an empty side.

    Keys only decide equality (the row kept among equals is chosen by source order), so the hash
    function's values never reach the output files; 64 bits make a collision among 10^7 rows about a
    one-in-a-million event.
    """
    input_hashes, input_empty = normalised_hashes(inputs)
    output_hashes, output_empty = normalised_hashes(outputs)
    # An odd multiplier keeps the map from input hash to key one-to-one (it is invertible mod 2^64).
    keys = input_hashes * np.uint64(0x9E3779B97F4A7C15) + output_hashes
    return keys, input_empty | output_empty


# What a string needs beyond ASCII lowercasing, as bits (a code point's class is one of them).
_SPACES = 1  # whitespace other than single inner spaces
_UNICODE_LOWER = 2  # a non-ASCII letter that lowercasing changes
_REFERENCE = 4  # a character NFKC may change, or whose lowercase Arrow and Python disagree on
_UNKNOWN = 8
_CLASSES = np.full(0x110000, _UNKNOWN, dtype=np.uint8)
_CLASSES[:0x80] = 0
_CLASSES_LOCK = threading.Lock()
_ASCII_SPACE = np.zeros(0x20, dtype=bool)
_ASCII_SPACE[[0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x1C, 0x1D, 0x1E, 0x1F]] = True


def _normalise_split(text: pa.Array | pa.ChunkedArray) -> tuple[pa.Array, np.ndarray, pa.Array]:
    """ASCII-lowercased text, a mask of the strings that need more, and those strings fully normalised.

    A string is already normalised once ASCII-lowercased if every character is ASCII or a non-ASCII
    character that NFKC and lowercasing leave alone in any context (most of real text: curly quotes,
    dashes, lowercase accented letters, emoji), and its only whitespace is single inner spaces. The
    others get, by what they hold: whitespace collapsed, Arrow's Unicode lowercasing (for letters where
    it agrees with Python's), and only for strings with a character NFKC may rewrite (or that Arrow
    lowercases differently), the Python definition itself.
    """
    text = pc.fill_null(text, "")
    if isinstance(text, pa.ChunkedArray):
        text = text.combine_chunks()
    if text.type != pa.string():
        text = text.cast(pa.string())
    offsets, data = _string_buffers(text)
    needs = np.zeros(len(text), dtype=np.uint8)
    body = data[offsets[0] : offsets[-1]]
    # Non-ASCII characters, found by their UTF-8 lead bytes (a few per row), classed by code point.
    lead = np.flatnonzero(body >= 0xC0) + offsets[0]
    wide_spaces: list[str] = []
    if len(lead):
        owner = np.searchsorted(offsets, lead, side="right") - 1
        code_points = _decode(data, lead)
        classes = _code_point_classes(code_points)
        _mark(needs, owner, classes)
        wide_spaces = [chr(c) for c in np.unique(code_points[classes == _SPACES]).tolist()]
    # ASCII control characters: tabs and newlines (the others, left alone by the collapse, cost little).
    control = np.flatnonzero(body < 0x20) + offsets[0]
    needs[np.searchsorted(offsets, control, side="right") - 1] |= _SPACES
    lengths = np.diff(offsets)
    full = lengths > 0
    stray = np.zeros(len(text), dtype=bool)
    stray[full] = (data[offsets[:-1][full]] == 0x20) | (data[offsets[1:][full] - 1] == 0x20)
    stray |= pl.from_arrow(text).str.contains("  ", literal=True).to_numpy()
    needs[stray] |= _SPACES
    special = needs != 0
    lowered = pc.ascii_lower(text)
    if not special.any():
        return lowered, special, pa.array([], pa.string())
    need = needs[special]
    reference = need & _REFERENCE != 0
    fixed = lowered.filter(pa.array(special))
    fixed = _replace(fixed, (need & _UNICODE_LOWER != 0) & ~reference, pc.utf8_lower)
    fixed = _replace(fixed, (need & _SPACES != 0) & ~reference, lambda t: _collapse_spaces(t, wide_spaces))
    if reference.any():
        originals = text.filter(pa.array(needs & _REFERENCE != 0))
        fixed = pc.replace_with_mask(fixed, pa.array(reference), _reference(originals))
    return lowered, special, fixed


def _string_buffers(text: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """The offsets (one per string and one past the end) and the UTF-8 bytes of a string array."""
    _, offsets, data = text.buffers()
    offsets = np.frombuffer(offsets, dtype=np.int32)[text.offset : text.offset + len(text) + 1]
    return offsets.astype(np.int64), np.frombuffer(data, dtype=np.uint8) if data else np.zeros(0, np.uint8)


def _decode(data: np.ndarray, lead: np.ndarray) -> np.ndarray:
    """Code points of the UTF-8 sequences starting at `lead` (lead bytes of valid UTF-8)."""
    first = data[lead].astype(np.int64)
    last = len(data) - 1
    cont = [data[np.minimum(lead + k, last)].astype(np.int64) & 0x3F for k in (1, 2, 3)]
    two = ((first & 0x1F) << 6) | cont[0]
    three = ((first & 0x0F) << 12) | (cont[0] << 6) | cont[1]
    four = ((first & 0x07) << 18) | (cont[0] << 12) | (cont[1] << 6) | cont[2]
    return np.where(first >= 0xF0, four, np.where(first >= 0xE0, three, two))


def _mark(needs: np.ndarray, owner: np.ndarray, classes: np.ndarray) -> None:
    for bit in (_SPACES, _UNICODE_LOWER, _REFERENCE):
        needs[owner[classes & bit != 0]] |= bit


def _code_point_classes(code_points: np.ndarray) -> np.ndarray:
    """Each non-ASCII code point's class bit, learnt from Python's unicodedata on first sight."""
    classes = _CLASSES[code_points]
    if (classes == _UNKNOWN).any():
        with _CLASSES_LOCK:
            new = np.unique(code_points[_CLASSES[code_points] == _UNKNOWN])
            if len(new):
                characters = [chr(c) for c in new.tolist()]
                arrow_lower = pc.utf8_lower(pa.array(characters, pa.string())).to_pylist()
                _CLASSES[new] = [_classify(c, low) for c, low in zip(characters, arrow_lower, strict=True)]
        classes = _CLASSES[code_points]
    return classes


def _classify(character: str, arrow_lower: str) -> int:
    """The class of one non-ASCII character (see _normalise_split)."""
    nfkc = unicodedata.normalize("NFKC", character)
    # Safe only when NFKC leaves it alone whatever surrounds it: a starter (combining class 0) that
    # never composes with a preceding character.
    if unicodedata.combining(character) or ord(character) in _composing_seconds():
        return _REFERENCE
    if character.isspace():
        # Whitespace stays whitespace under NFKC, so it only ends up as a separator.
        return _SPACES if nfkc.isspace() else _REFERENCE
    if nfkc != character or character == "\u03a3":  # capital sigma lowercases by context
        return _REFERENCE
    # Arrow lowercases every string with a _UNICODE_LOWER letter, so even letters Python leaves alone
    # must lowercase alike (Arrow's Unicode version may be newer than Python's).
    lower = character.lower()
    if lower != arrow_lower:
        return _REFERENCE
    return 0 if lower == character else _UNICODE_LOWER


@lru_cache(maxsize=1)
def _composing_seconds() -> frozenset[int]:
    """Code points that canonical composition can merge into the character before them."""
    seconds = set(range(0x1161, 0x1176)) | set(range(0x11A8, 0x11C3))  # Hangul vowels, final consonants
    decompositions = (unicodedata.decomposition(chr(code)) for code in range(0x110000))
    for parts in (d.split() for d in decompositions if d and not d.startswith("<")):
        if len(parts) == 2:
            seconds.add(int(parts[1], 16))
    return frozenset(seconds)


def _replace(strings: pa.Array, mask: np.ndarray, transform) -> pa.Array:
    """`strings` with the masked ones replaced by `transform` of themselves."""
    if not mask.any():
        return strings
    arrow_mask = pa.array(mask)
    return pc.replace_with_mask(strings, arrow_mask, transform(strings.filter(arrow_mask)))


def _collapse_spaces(strings: pa.Array, wide_spaces: list[str]) -> pa.Array:
    """Every whitespace run as one space, none at either end (`wide_spaces`: the non-ASCII whitespace
    characters the strings may hold)."""
    # Each whitespace character becomes a space (ASCII ones in place, the rest by literal search, both
    # far faster than a regex over every space), then runs of spaces shrink to one.
    offsets, data = _string_buffers(strings)
    data = data.copy()
    control = np.flatnonzero(data < 0x20)
    control = control[_ASCII_SPACE[data[control]]]
    data[control] = 0x20
    spaced = pa.Array.from_buffers(
        pa.string(),
        len(strings),
        [
            None,
            pa.py_buffer((offsets - offsets[0]).astype(np.int32)),
            pa.py_buffer(data[offsets[0] : offsets[-1]]),
        ],
    )
    series = pl.from_arrow(spaced)
    for character in wide_spaces:
        series = series.str.replace_all(character, " ", literal=True)
    return series.str.replace_all("  +", " ").str.strip_chars(" ").to_arrow().cast(pa.string())


def _reference(strings: pa.Array) -> pa.Array:
    """The normalisation's Python definition, for the few strings NFKC may change."""
    return pa.array(
        [" ".join(unicodedata.normalize("NFKC", s).lower().split()) for s in strings.to_pylist()],
        pa.string(),
    )
