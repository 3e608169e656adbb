"""Real Indonesian text that works offline: the POS-tagged news corpus shipped in the `nlp-id` wheel.

The wheel is fetched from PyPI once with `pip download` (no install: the package pins heavy
dependencies) and cached; the sentences are read straight out of the zip. This is the one way library
code gets general text: `indonesian_sentences()` whole, or split into `task_sentences()` (what tasks,
tokenizers and pretraining may use) and `held_out_sentences()` (the last HELD_OUT_SENTENCES, used by
none of them: general text for a forgetting measure).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import zipfile
from functools import lru_cache
from pathlib import Path

from difusi.io import cache_dir

WHEEL_SPEC = "nlp-id==0.1.23.0"
CORPUS_MEMBER = "nlp_id/data/dataset_postag.txt"
_NO_SPACE_BEFORE = {".", ",", ")", "!", "?", ":", ";", "%", "'", '"'}
_NO_SPACE_AFTER = {"(", '"'}
_CLITICS = {"nya", "lah", "kah", "pun"}
HELD_OUT_SENTENCES = 2_000


def corpus_wheel() -> Path:
    """Path of the cached nlp-id wheel, downloading it from the package registry if absent."""
    target = cache_dir() / "wheels"
    found = sorted(target.glob("nlp_id-*.whl"))
    if found:
        return found[-1]
    target.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", WHEEL_SPEC, "-d", str(target)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    found = sorted(target.glob("nlp_id-*.whl"))
    if result.returncode != 0 or not found:
        raise RuntimeError(
            f"could not download {WHEEL_SPEC} for the offline Indonesian corpus; "
            f"run `pip download --no-deps {WHEEL_SPEC} -d {target}` with registry access"
        )
    return found[-1]


def detokenize(tokens: list[str]) -> str:
    """Join corpus tokens into running text: clitics re-attached, no space inside punctuation."""
    text = ""
    for token in tokens:
        glue = not text or token in _NO_SPACE_BEFORE or token in _CLITICS or text[-1] in _NO_SPACE_AFTER
        text += token if glue else " " + token
    return text


@lru_cache(maxsize=1)
def indonesian_sentences() -> tuple[str, ...]:
    """The 32,780 Indonesian news sentences of nlp-id's POS corpus, as plain strings, in file order."""
    with zipfile.ZipFile(corpus_wheel()) as wheel:
        raw = wheel.read(CORPUS_MEMBER).decode("utf-8")
    sentences, tokens = [], []
    for line in raw.splitlines():
        if line.strip():
            tokens.append(line.split("\t")[0])
        elif tokens:
            sentences.append(detokenize(tokens))
            tokens = []
    if tokens:
        sentences.append(detokenize(tokens))
    return tuple(sentences)


def task_sentences() -> tuple[str, ...]:
    """The corpus sentences tasks, tokenizers and pretraining may use (all but the held-out tail)."""
    return indonesian_sentences()[:-HELD_OUT_SENTENCES]


def held_out_sentences() -> tuple[str, ...]:
    """The last HELD_OUT_SENTENCES corpus sentences: in no task, no general example, no base pretraining."""
    return indonesian_sentences()[-HELD_OUT_SENTENCES:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ensure", action="store_true", help="download the corpus wheel if missing")
    parser.parse_args()
    print(f"{len(indonesian_sentences())} sentences in {corpus_wheel()}")


if __name__ == "__main__":
    main()
