"""Task mode of the Cendol generator: every answer follows from its prompt by its family's rule."""

from __future__ import annotations

import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from difusi.cli import main
from difusi.data.prepare import INDONESIAN_SUBSETS
from difusi.data.source import COLUMNS
from difusi.synthetic.corpus import HELD_OUT_SENTENCES, held_out_sentences, indonesian_sentences
from difusi.synthetic.general import GENERAL_TASKS, general_examples, general_probe
from difusi.synthetic.tasks import IDENTITY_QUESTIONS, SAFETY_PHRASINGS, synth_tasks, task_rows
from difusi.synthetic.templates import DOLLY_TEMPLATES, PUISI_TEMPLATES, WIKI_TEMPLATES, WIKIHOW_TEMPLATES

ROWS = 1_200


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return task_rows(ROWS, seed=7).to_pylist()


# The rules, written again from the prompt text alone (independently of difusi.synthetic.tasks).
def passage(prompt: str) -> str:
    lines = prompt.split("\n")
    assert lines[0] == "Kutipan Wikipedia:" and len(lines) == 3
    return lines[1]


def only_name(sentence: str) -> str:
    words = sentence.split()[1:]
    runs, current = [], []
    for word in words + ["x"]:
        core = word.rstrip(".,;:!?")
        if re.fullmatch(r"[A-Z][A-Za-z-]+", core):
            current.append(core)
            if core == word:
                continue
        if current:
            runs.append(" ".join(current))
        current = []
    assert len(runs) == 1, sentence
    return runs[0]


def only_number(sentence: str) -> str:
    found = [w.strip(".,;:!?") for w in sentence.split() if re.fullmatch(r"\d+([.,]\d+)*", w.strip(".,;:!?"))]
    assert len(found) == 1, sentence
    return found[0]


def expected_answer(row: dict) -> str:
    subset, template, prompt = row["subset_name"], row["template_name"], row["input"]
    if subset == "identity_prompt":
        question = prompt.split(". ", 1)[1]
        (answer,) = [a for qs, a in IDENTITY_QUESTIONS.values() if question in qs]
        return answer
    if subset == "safety_prompt":
        (refusal,) = [r for p, s, r in SAFETY_PHRASINGS if prompt.startswith(p) and prompt.endswith(s)]
        return refusal
    if subset == "wikipedia_id":
        sentence = passage(prompt)
        return only_name(sentence) if template.startswith("wikipedia_section_") else only_number(sentence)
    if subset == "wikihow":
        steps = prompt.split("\nLangkah: ", 1)[1].split("; ")
        return "\n".join(f"{i + 1}. {step}" for i, step in enumerate(steps))
    if subset == "indo_puisi":
        lines = prompt.split("\n")[1:]
        assert len(lines) == 3
        return "\n".join(lines[::-1])
    assert subset == "dolly"
    return ""  # open generation: checked against the corpus below


def test_every_answer_follows_from_its_prompt(rows):
    sentences = set(indonesian_sentences())
    for row in rows:
        if row["subset_name"] == "dolly":
            head = row["input"].removeprefix("Lanjutkan kalimat berikut: ")
            assert f"{head} {row['output']}" in sentences, row
            assert 3 <= len(row["output"].split()) <= 5
        else:
            assert row["output"] == expected_answer(row), row
            if row["subset_name"] == "wikipedia_id":
                assert row["output"] in row["input"]


def test_schema_subsets_and_template_names(rows):
    assert {row["subset_name"] for row in rows} == set(INDONESIAN_SUBSETS)
    counts = {s: sum(row["subset_name"] == s for row in rows) for s in INDONESIAN_SUBSETS}
    assert set(counts.values()) == {ROWS // 6}
    real_names = {t.name for t in [*WIKI_TEMPLATES, *WIKIHOW_TEMPLATES, *PUISI_TEMPLATES, *DOLLY_TEMPLATES]}
    real_names |= {"safety_prompt", "identity_prompt"}
    assert {row["template_name"] for row in rows} <= real_names
    assert len({row["template_name"] for row in rows if row["subset_name"] == "indo_puisi"}) == 20
    assert len({row["template_name"] for row in rows if row["subset_name"] == "wikipedia_id"}) == 10
    for subset in INDONESIAN_SUBSETS:  # prompts are distinct, so de-duplication keeps every subset
        prompts = [row["input"] for row in rows if row["subset_name"] == subset]
        assert len(set(prompts)) == len(prompts)


def test_answers_are_short_and_avoid_the_held_out_text(rows):
    held_out = set(held_out_sentences())
    assert len(held_out) > HELD_OUT_SENTENCES // 2
    for row in rows:
        assert len(row["output"].split()) <= 12
        assert not any(sentence in row["input"] for sentence in held_out if len(sentence) > 40)


def test_determinism():
    assert task_rows(60, seed=3).equals(task_rows(60, seed=3))
    assert not task_rows(60, seed=3).equals(task_rows(60, seed=4))
    assert general_examples(20, seed=1) == general_examples(20, seed=1)


def test_general_tasks_differ_from_the_fine_tuning_families(rows):
    examples = general_examples(70, seed=0)
    prompts = {prompt.split("\n")[0][:20] for prompt, _ in examples}
    assert len(prompts) >= len(GENERAL_TASKS) - 1
    task_openings = {row["input"][:20] for row in rows}
    assert not prompts & task_openings


def test_the_general_probe_asks_every_task_about_held_out_sentences():
    probe = general_probe(3, seed=0).to_pylist()
    assert [row["subset_name"] for row in probe] == [kind for kind in GENERAL_TASKS for _ in range(3)]
    held_out = set(held_out_sentences())
    for row in probe:
        lines = row["input"].split("\n")
        if row["subset_name"] == "salin":  # the answer is the sentence itself, copied
            assert row["output"] == lines[1] and lines[1] in held_out
        if row["subset_name"] == "kata_pertama":
            assert lines[1] in held_out and row["output"] == lines[1].split()[0]
        if row["subset_name"] == "ulangi":
            word = re.fullmatch(r'Ulangi kata "(.+)" dua kali\.', row["input"]).group(1)
            assert row["output"] == f"{word} {word}"
    assert general_probe(3, seed=0).equals(general_probe(3, seed=0))


def test_synth_tasks_writes_shards_and_the_cli_flag(tmp_path):
    paths = synth_tasks(tmp_path / "a", 120, seed=2, shards=3)
    assert [p.name for p in paths] == [f"train-{i:05d}-of-00003.parquet" for i in range(3)]
    table = pa.concat_tables(pq.read_table(p) for p in paths)
    assert table.column_names == list(COLUMNS) and table.num_rows == 120
    main(
        [
            "synth-cendol",
            "--tasks",
            "--out",
            str(tmp_path / "b"),
            "--rows",
            "120",
            "--seed",
            "2",
            "--shards",
            "3",
        ]
    )
    again = pa.concat_tables(pq.read_table(p) for p in sorted((tmp_path / "b" / "data").glob("*.parquet")))
    assert again.equals(table)


def test_demo_preset_tokenizer_skips_the_held_out_text():
    from difusi.model.presets import PRESETS
    from difusi.synthetic.corpus import task_sentences

    assert PRESETS["demo"].tokenizer_sentences == len(task_sentences()) == len(indonesian_sentences()) - 2_000
