"""A task neither the base nor the demo's tasks contain: extractive questions over names and cities.

"Bacaan: Nataru tinggal di Surabaya, sedangkan Eddy tinggal di Aceh. Pertanyaan: Di kota mana Nataru
tinggal?" -> "Surabaya". Half the questions ask for the place, half for the name. `write_unseen_qa`
writes it in the layout `difusi train` and `difusi evaluate` read (`difusi synth-cendol --unseen-qa`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from difusi.data.source import SCHEMA
from difusi.io import atomic_directory
from difusi.synthetic.tasks import pools

CITIES = (
    "Jakarta", "Bandung", "Surabaya", "Medan", "Semarang", "Makassar", "Palembang", "Denpasar", "Yogyakarta",
    "Malang", "Padang", "Pontianak", "Manado", "Balikpapan", "Jayapura", "Kupang", "Ambon", "Mataram",
    "Banjarmasin", "Pekanbaru", "Jambi", "Bengkulu", "Serang", "Bogor", "Cirebon", "Solo", "Kediri", "Tegal",
    "Samarinda", "Palu", "Kendari", "Ternate", "Sorong", "Batam", "Lampung", "Aceh", "Garut", "Sukabumi",
)  # fmt: skip
# (verb, question for the place, question for the name)
VERBS = (
    ("tinggal di", "Di kota mana {n} tinggal?", "Siapa yang tinggal di {c}?"),
    ("lahir di", "Di mana {n} lahir?", "Siapa yang lahir di {c}?"),
    ("bekerja di", "Di kota apa {n} bekerja?", "Siapa yang bekerja di {c}?"),
)
TRAIN_ROWS, TEST_ROWS = 1_000, 60


def unseen_qa_rows(rows: int, seed: int) -> pa.Table:
    """`rows` questions in the Cendol schema, two people in two cities each, drawn with `seed`."""
    rng = np.random.default_rng(seed)
    names = [name for name in pools()["names"] if name[1:].islower() and len(name) >= 4]
    records = []
    for _ in range(rows):
        a, b = rng.choice(len(names), 2, replace=False)
        c1, c2 = rng.choice(len(CITIES), 2, replace=False)
        verb, ask_place, ask_name = VERBS[rng.integers(len(VERBS))]
        people, places = (names[a], names[b]), (CITIES[c1], CITIES[c2])
        context = f"{people[0]} {verb} {places[0]}, sedangkan {people[1]} {verb} {places[1]}."
        ask_for_place = rng.random() < 0.5
        who = rng.integers(2)
        if ask_for_place:
            question, answer = ask_place.format(n=people[who]), places[who]
        else:
            question, answer = ask_name.format(c=places[who]), people[who]
        records.append(
            {
                "dataset_name": "qa",
                "subset_name": "qa_nama_tempat",
                "prompt_id": "qa",
                "template_name": "qa_" + verb.split()[0],
                "dataset_key": "train",
                "input": f"Bacaan: {context}\nPertanyaan: {question}",
                "output": answer,
            }
        )
    return pa.Table.from_pylist(records, schema=SCHEMA)


def write_unseen_qa(out_dir: str | Path) -> Path:
    """OUT/train/train.parquet (1,000 rows, seed 11) and OUT/test.parquet (60 rows, seed 12); returns OUT."""
    with atomic_directory(out_dir) as work:
        (work / "train").mkdir()
        pq.write_table(unseen_qa_rows(TRAIN_ROWS, 11), work / "train" / "train.parquet")
        pq.write_table(unseen_qa_rows(TEST_ROWS, 12), work / "test.parquet")
    return Path(out_dir)
