"""Real Indonesian text that works offline: the POS-tagged news corpus shipped in the `nlp-id` wheel.

The wheel is fetched from PyPI once with `pip download` (no install: the package pins heavy
dependencies) and cached; the sentences are read straight out of the zip.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import zipfile
from functools import lru_cache
from pathlib import Path

WHEEL_SPEC = "nlp-id==0.1.23.0"
CORPUS_MEMBER = "nlp_id/data/dataset_postag.txt"
_NO_SPACE_BEFORE = {".", ",", ")", "!", "?", ":", ";", "%", "'", '"'}
_NO_SPACE_AFTER = {"(", '"'}
_CLITICS = {"nya", "lah", "kah", "pun"}


def cache_dir() -> Path:
    """Where difusi keeps downloaded offline resources (`DIFUSI_CACHE`, default ~/.cache/difusi)."""
    return Path(os.environ.get("DIFUSI_CACHE", Path.home() / ".cache" / "difusi"))


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ensure", action="store_true", help="download the corpus wheel if missing")
    parser.parse_args()
    print(f"{len(indonesian_sentences())} sentences in {corpus_wheel()}")


if __name__ == "__main__":
    main()
