"""General instruction data for pretraining the base: other templates and rules than the task mode's
families (copy a sentence, first/last word, the word after a given word, ...), on `task_sentences()`;
and the probe of the same tasks on the held-out sentences, which tells how well a base follows the
chat format and copies from its prompt on unseen text."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from difusi.synthetic.corpus import held_out_sentences, task_sentences
from difusi.synthetic.tasks import bare

# Task kind -> (prompt, answer) from the drawn sentence `s`, its words, the generator and the sentences.
_BUILDERS = {
    "salin": lambda s, words, rng, sentences: (f"Salin kalimat ini apa adanya:\n{s}", s),
    "kata_pertama": lambda s, words, rng, sentences: (
        f"Apa kata pertama dari kalimat berikut?\n{s}",
        words[0],
    ),
    "kata_terakhir": lambda s, words, rng, sentences: (
        f"Apa kata terakhir dari kalimat berikut?\n{s}",
        bare(words[-1]),
    ),
    "tiga_kata": lambda s, words, rng, sentences: (
        f"Tuliskan tiga kata pertama kalimat ini:\n{s}",
        " ".join(words[:3]),
    ),
    "kata_setelah": lambda s, words, rng, sentences: _word_after(s, words, int(rng.integers(len(words) - 1))),
    "ulangi": lambda s, words, rng, sentences: _repeat(bare(words[rng.integers(len(words))]) or words[0]),
    "kalimat_kedua": lambda s, words, rng, sentences: (
        f"Tulis ulang kalimat kedua saja:\n{sentences[rng.integers(len(sentences))]} {s}",
        s,
    ),
}
GENERAL_TASKS = tuple(_BUILDERS)


def _word_after(s: str, words: list[str], i: int) -> tuple[str, str]:
    return f'Kalimat: {s}\nKata apa yang tepat sesudah "{words[i]}"?', words[i + 1]


def _repeat(word: str) -> tuple[str, str]:
    return f'Ulangi kata "{word}" dua kali.', f"{word} {word}"


def general_example(kind: str, rng: np.random.Generator, sentences: list[str]) -> tuple[str, str]:
    """One (prompt, answer) of general task `kind` on corpus `sentences`."""
    if kind not in _BUILDERS:
        raise ValueError(f"unknown general task {kind!r}; choose one of {', '.join(GENERAL_TASKS)}")
    s = sentences[rng.integers(len(sentences))]
    return _BUILDERS[kind](s, s.split(), rng, sentences)


def _short(sentences: tuple[str, ...]) -> list[str]:
    return [s for s in sentences if 4 <= len(s.split()) <= 14]


def general_examples(count: int, seed: int = 0) -> list[tuple[str, str]]:
    """`count` general (prompt, answer) pairs, task kinds in turn, on short task sentences."""
    sentences = _short(task_sentences())
    rng = np.random.default_rng([seed, 7])
    return [general_example(GENERAL_TASKS[i % len(GENERAL_TASKS)], rng, sentences) for i in range(count)]


def general_probe(per_kind: int, seed: int = 0) -> pa.Table:
    """A test set of `per_kind` rows of every general task on held-out sentences, `subset_name` the
    task kind: how well a base follows the chat format and copies from its prompt on unseen text."""
    sentences = _short(held_out_sentences())
    rng = np.random.default_rng([seed, 11])
    rows = [(kind, *general_example(kind, rng, sentences)) for kind in GENERAL_TASKS for _ in range(per_kind)]
    kinds, prompts, answers = zip(*rows, strict=True)
    return pa.table({"subset_name": kinds, "template_name": kinds, "input": prompts, "output": answers})
