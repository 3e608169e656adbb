"""Learnable Cendol-shaped tasks: the seed's six Indonesian subsets with answers that follow from the prompt.

`synth_cendol` imitates the real collection's look (free-form answers no small model can learn in
CPU minutes). Task mode keeps its schema, subset names and template names but gives every subset a
rule a small model can learn and a metric can grade:

  memorised         identity_prompt: a fixed answer per question kind (the prompt's greeting and name
                    vary); safety_prompt: a fixed refusal per request phrasing.
  extractive        wikipedia_id: a corpus sentence and a question; the answer is the sentence's only
                    name (a run of capitalised words after the first word; section templates) or its
                    only number (subsection templates).
  transformational  wikihow: number the given one-word steps ("1. ...\\n2. ..."); indo_puisi: the given
                    poem's three two-word lines in reverse order.
  open generation   dolly: continue a corpus sentence from its first words (graded by NELBO).

Rows are equally shared between the six subsets (the real collection is 93% wikipedia_id) and
every prompt is distinct within its subset, so `difusi prepare`'s de-duplication and its
train/test separation leave every subset in the test set. Answers stay under about 24 tokens.

Tasks use `task_sentences()` only, never the corpus's held-out tail (difusi.synthetic.corpus).
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from difusi.data.source import SCHEMA
from difusi.io import atomic_directory
from difusi.synthetic.corpus import task_sentences
from difusi.synthetic.templates import Template

TASK_ROWS = 40_000  # `difusi synth-cendol --tasks` defaults
TASK_SHARDS = 4
SUBSETS = ("indo_puisi", "wikihow", "wikipedia_id", "safety_prompt", "identity_prompt", "dolly")


# ---------------------------------------------------------------------------------------------
# The rules. Each is a function of the prompt's content, so a test can re-derive every answer.

_CAPITALISED = re.compile(r"^[A-Z][A-Za-z-]*$")
_NUMBER = re.compile(r"^\d+(?:[.,]\d+)*$")


def bare(word: str) -> str:
    return word.strip(".,;:!?\"'()")


def name_runs(sentence: str) -> list[str]:
    """Maximal runs of capitalised words after the first word (a run ends at attached punctuation)."""
    runs, current = [], []
    for word in sentence.split()[1:]:
        stripped = word.rstrip(".,;:!?")
        if _CAPITALISED.match(stripped) and len(stripped) > 1:
            current.append(stripped)
            if stripped == word:
                continue  # the run goes on unless punctuation closes it
        if current:
            runs.append(" ".join(current))
            current = []
    if current:
        runs.append(" ".join(current))
    return runs


def numbers(sentence: str) -> list[str]:
    """The words of `sentence` that are numbers (digits with . or , separators), punctuation stripped."""
    return [bare(w) for w in sentence.split() if _NUMBER.match(bare(w))]


def numbered_steps(steps: list[str]) -> str:
    return "\n".join(f"{i}. {step}" for i, step in enumerate(steps, 1))


def reversed_lines(lines: list[str]) -> str:
    return "\n".join(reversed(lines))


# ---------------------------------------------------------------------------------------------
# Templates: the real subsets' template names, with task-mode wording.

IDENTITY_QUESTIONS = {  # question kind -> (phrasings, the one answer)
    "nama": (("Siapa kamu?", "Apa namamu?", "Boleh tahu namamu?"), "Saya Cendol, asisten AI berbahasa Indonesia."),
    "pembuat": (("Siapa yang membuatmu?", "Siapa penciptamu?", "Kamu dibuat oleh siapa?"), "Saya dibuat oleh tim IndoNLP."),
    "model": (("Kamu ini model apa?", "Kamu model bahasa apa?", "Apa jenis modelmu?"), "Saya model bahasa Cendol."),
    "kenalan": (("Perkenalkan dirimu.", "Ceritakan tentang dirimu.", "Jelaskan siapa dirimu."), "Halo, saya Cendol dari IndoNLP."),
}  # fmt: skip
GREETINGS = ("Halo, saya {}.", "Hai, nama saya {}.", "Selamat pagi, saya {}.", "Permisi, saya {}.")
IDENTITY_TEMPLATE = Template("identity_prompt", "", "")
# Each safety phrasing (prefix, suffix around a lower-cased topic) has its own fixed refusal.
SAFETY_PHRASINGS = (
    ("Tolong bantu saya ", " dengan cara yang merugikan orang lain.", "Maaf, saya tidak dapat membantu hal itu."),
    ("Bagaimana cara ", " supaya orang lain celaka?", "Maaf, saya tidak bisa memberi cara yang membahayakan orang."),
    ("Ajari saya ", " untuk menipu orang.", "Saya menolak membantu penipuan."),
)  # fmt: skip
SAFETY_TEMPLATE = Template("safety_prompt", "", "")
# wikipedia_id: section templates ask for the name, subsection templates for the number.
_NAME_QUESTIONS = (
    "Nama apa yang disebut dalam teks tersebut?",
    "Sebutkan nama yang muncul pada kutipan di atas.",
    "Siapa atau apa nama yang disebut dalam kutipan itu?",
    "Tuliskan nama yang terdapat dalam teks Wikipedia tadi.",
    "Nama apa yang ada di kalimat tersebut?",
)
_NUMBER_QUESTIONS = (
    "Angka berapa yang disebut dalam teks tersebut?",
    "Sebutkan angka yang muncul pada kutipan di atas.",
    "Berapa bilangan yang tertulis dalam kutipan itu?",
    "Tuliskan angka yang terdapat dalam teks Wikipedia tadi.",
    "Angka apa yang ada di kalimat tersebut?",
)
WIKI_TEMPLATES = [Template(f"wikipedia_section_{i}", "Kutipan Wikipedia:\n", "\n" + q) for i, q in enumerate(_NAME_QUESTIONS)] + [
    Template(f"wikipedia_subsection_{i}", "Kutipan Wikipedia:\n", "\n" + q) for i, q in enumerate(_NUMBER_QUESTIONS)
]  # fmt: skip
WIKIHOW_TEMPLATES = [
    Template(f"wikihow_{i}", prefix, "\nLangkah: ")
    for i, prefix in enumerate(
        (
            "Bagaimana cara {}? Beri nomor pada langkah berikut.",
            "Jelaskan langkah-langkah untuk {} dengan nomor urut.",
            "Tuliskan panduan singkat: {}. Nomori langkahnya.",
            "Apa saja tahapan {}? Urutkan dengan nomor.",
            "Beri saya petunjuk {} secara bernomor.",
        )
    )
]
_POEM_OPENINGS = ('Puisi berjudul "', 'Sebuah puisi dengan judul "', 'Puisi tentang "', 'Puisi "')
_POEM_ENDINGS = (
    '". Tulis ulang dengan urutan baris terbalik.',
    '". Balik urutan barisnya.',
    '". Susun barisnya dari yang terakhir.',
    '". Tulis baris-barisnya dari bawah ke atas.',
    '". Balikkan urutan baris puisi ini.',
)
PUISI_TEMPLATES = [
    Template(f"indo_puisi_{i * len(_POEM_ENDINGS) + j}", opening, ending)
    for i, opening in enumerate(_POEM_OPENINGS)
    for j, ending in enumerate(_POEM_ENDINGS)
]
DOLLY_TEMPLATES = [Template("dolly_lanjutkan", "Lanjutkan kalimat berikut: ", "")]
TEMPLATES = {
    "identity_prompt": [IDENTITY_TEMPLATE],
    "safety_prompt": [SAFETY_TEMPLATE],
    "wikipedia_id": WIKI_TEMPLATES,
    "wikihow": WIKIHOW_TEMPLATES,
    "indo_puisi": PUISI_TEMPLATES,
    "dolly": DOLLY_TEMPLATES,
}


# ---------------------------------------------------------------------------------------------
# Pools of corpus material, computed once.


def _clean(sentence: str) -> bool:
    return sentence.endswith(".") and not any(ch in sentence for ch in "\"'()[]/")


@lru_cache(maxsize=1)
def pools() -> dict[str, list]:
    """Corpus material for each family (from `task_sentences()` only)."""
    sentences = [s for s in task_sentences() if _clean(s)]
    named, numbered, short, words_pool, names = [], [], [], [], []
    for s in sentences:
        words = s.split()
        runs = name_runs(s)
        if 6 <= len(words) <= 16:
            if len(runs) == 1 and len(runs[0].split()) <= 3 and not numbers(s):
                named.append((s, runs[0]))
            if len(numbers(s)) == 1 and not words[0][0].isdigit():
                numbered.append((s, numbers(s)[0]))
        if 8 <= len(words) <= 14:
            short.append(s)
        names.extend(r for r in runs if len(r.split()) == 1 and len(r) <= 10)
        words_pool.extend(w for w in (bare(x).lower() for x in words) if w.isalpha() and 3 <= len(w) <= 9)
    return {
        "named": named,
        "numbered": numbered,
        "short": short,
        "words": sorted(set(words_pool)),
        "names": sorted(set(names)),
    }


def _lower_phrase(rng: np.random.Generator, words: list[str], n: int) -> str:
    return " ".join(words[i] for i in rng.integers(0, len(words), n))


def _identity_prompt(rng: np.random.Generator, p: dict) -> tuple[str, str, str]:
    kind = list(IDENTITY_QUESTIONS)[rng.integers(len(IDENTITY_QUESTIONS))]
    phrasings, answer = IDENTITY_QUESTIONS[kind]
    greeting = GREETINGS[rng.integers(len(GREETINGS))].format(p["names"][rng.integers(len(p["names"]))])
    return IDENTITY_TEMPLATE.name, f"{greeting} {phrasings[rng.integers(len(phrasings))]}", answer


def _safety_prompt(rng: np.random.Generator, p: dict) -> tuple[str, str, str]:
    prefix, suffix, refusal = SAFETY_PHRASINGS[rng.integers(len(SAFETY_PHRASINGS))]
    return SAFETY_TEMPLATE.name, prefix + _lower_phrase(rng, p["words"], 2) + suffix, refusal


def _wikipedia_id(rng: np.random.Generator, p: dict) -> tuple[str, str, str]:
    which = int(rng.integers(len(WIKI_TEMPLATES)))
    pool = p["named"] if which < len(_NAME_QUESTIONS) else p["numbered"]
    sentence, answer = pool[rng.integers(len(pool))]
    template = WIKI_TEMPLATES[which]
    return template.name, template.prefix + sentence + template.suffix, answer


def _wikihow(rng: np.random.Generator, p: dict) -> tuple[str, str, str]:
    template = WIKIHOW_TEMPLATES[rng.integers(len(WIKIHOW_TEMPLATES))]
    steps = [_lower_phrase(rng, p["words"], 1) for _ in range(int(rng.integers(2, 4)))]
    goal = _lower_phrase(rng, p["words"], 2)
    return (
        template.name,
        template.prefix.format(goal) + template.suffix + "; ".join(steps),
        numbered_steps(steps),
    )


def _indo_puisi(rng: np.random.Generator, p: dict) -> tuple[str, str, str]:
    template = PUISI_TEMPLATES[rng.integers(len(PUISI_TEMPLATES))]
    words = p["short"][rng.integers(len(p["short"]))].rstrip(".").split()[:6]
    lines = [" ".join(words[i : i + 2]) for i in range(0, len(words), 2)]
    title = " ".join(w.capitalize() for w in _lower_phrase(rng, p["words"], 2).split())
    prompt = template.prefix + title + template.suffix + "\n" + "\n".join(lines)
    return template.name, prompt, reversed_lines(lines)


def _dolly(rng: np.random.Generator, p: dict) -> tuple[str, str, str]:
    words = p["short"][rng.integers(len(p["short"]))].split()
    cut = len(words) - int(rng.integers(3, 6))
    template = DOLLY_TEMPLATES[0]
    return template.name, template.prefix + " ".join(words[:cut]), " ".join(words[cut:])


# Subset -> the builder of one (template_name, input, output) from a generator and the pools.
BUILDERS = {
    "identity_prompt": _identity_prompt,
    "safety_prompt": _safety_prompt,
    "wikipedia_id": _wikipedia_id,
    "wikihow": _wikihow,
    "indo_puisi": _indo_puisi,
    "dolly": _dolly,
}


def task_row(subset: str, rng: np.random.Generator) -> tuple[str, str, str]:
    """One (template_name, input, output) of `subset`, drawn with `rng`."""
    if subset not in BUILDERS:
        raise ValueError(f"unknown task subset {subset!r}; choose one of {', '.join(SUBSETS)}")
    return BUILDERS[subset](rng, pools())


def task_rows(rows: int, seed: int = 0) -> pa.Table:
    """`rows` task rows, equally shared between the six subsets, shuffled; distinct prompts per subset."""
    rng = np.random.default_rng(seed)
    counts = [rows // len(SUBSETS) + (i < rows % len(SUBSETS)) for i in range(len(SUBSETS))]
    records = []
    for subset, count in zip(SUBSETS, counts, strict=True):
        seen: set[str] = set()
        attempts = 0
        while len(seen) < count:
            name, prompt, answer = task_row(subset, rng)
            attempts += 1
            if prompt in seen:
                if attempts > 50 * count + 1000:
                    raise ValueError(f"cannot draw {count} distinct {subset} prompts; ask for fewer rows")
                continue
            seen.add(prompt)
            records.append((subset, name, prompt, answer))
    order = rng.permutation(len(records))
    records = [records[i] for i in order]
    prompt_ids = {t.name: t.prompt_id for ts in TEMPLATES.values() for t in ts}
    named = ("safety_prompt", "identity_prompt")  # the real rows carry the subset name as prompt_id
    columns = {
        "dataset_name": [r[0] for r in records],
        "subset_name": [r[0] for r in records],
        "prompt_id": [r[0] if r[0] in named else prompt_ids[r[1]] for r in records],
        "template_name": [r[1] for r in records],
        "dataset_key": ["train"] * len(records),
        "input": [r[2] for r in records],
        "output": [r[3] for r in records],
    }
    return pa.table(columns, schema=SCHEMA)


def synth_tasks(out_dir: str | Path, rows: int, seed: int = 0, shards: int = TASK_SHARDS) -> list[Path]:
    """Write `rows` task rows as `shards` parquet files (OUT/data/train-*.parquet), like synth_cendol."""
    if rows < len(SUBSETS) or shards < 1:
        raise ValueError(
            f"--rows must be at least {len(SUBSETS)} and --shards at least 1, got {rows} and {shards}"
        )
    table = task_rows(rows, seed)
    bounds = np.linspace(0, rows, shards + 1).astype(np.int64)
    paths = []
    with atomic_directory(out_dir) as work:
        (work / "data").mkdir()
        for shard in range(shards):
            name = f"train-{shard:05d}-of-{shards:05d}.parquet"
            part = table.slice(bounds[shard], bounds[shard + 1] - bounds[shard])
            pq.write_table(part, work / "data" / name, compression="zstd")
            paths.append(Path(out_dir) / "data" / name)
    return paths
