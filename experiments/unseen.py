"""Unseen extractive QA over names and places (not a tasks.py family, not a general task):
python experiments/unseen.py OUT_DATA  -> OUT_DATA/train/train.parquet (1,000 rows), OUT_DATA/test.parquet (60 rows)."""
import sys
from pathlib import Path
import numpy as np, pyarrow as pa, pyarrow.parquet as pq
from difusi.data.tasks import pools

CITIES = ["Jakarta", "Bandung", "Surabaya", "Medan", "Semarang", "Makassar", "Palembang", "Denpasar", "Yogyakarta",
          "Malang", "Padang", "Pontianak", "Manado", "Balikpapan", "Jayapura", "Kupang", "Ambon", "Mataram",
          "Banjarmasin", "Pekanbaru", "Jambi", "Bengkulu", "Serang", "Bogor", "Cirebon", "Solo", "Kediri", "Tegal",
          "Samarinda", "Palu", "Kendari", "Ternate", "Sorong", "Batam", "Lampung", "Aceh", "Garut", "Sukabumi"]
VERBS = [("tinggal di", "Di kota mana {n} tinggal?", "Siapa yang tinggal di {c}?"),
         ("lahir di", "Di mana {n} lahir?", "Siapa yang lahir di {c}?"),
         ("bekerja di", "Di kota apa {n} bekerja?", "Siapa yang bekerja di {c}?")]

def rows(n, seed):
    rng = np.random.default_rng(seed)
    names = [x for x in pools()["names"] if x[1:].islower() and len(x) >= 4]
    out = []
    for _ in range(n):
        a, b = rng.choice(len(names), 2, replace=False)
        c1, c2 = rng.choice(len(CITIES), 2, replace=False)
        verb, q_place, q_name = VERBS[rng.integers(len(VERBS))]
        n1, n2, k1, k2 = names[a], names[b], CITIES[c1], CITIES[c2]
        context = f"{n1} {verb} {k1}, sedangkan {n2} {verb} {k2}."
        if rng.random() < 0.5:
            who = rng.integers(2)
            q, ans = q_place.format(n=[n1, n2][who]), [k1, k2][who]
        else:
            who = rng.integers(2)
            q, ans = q_name.format(c=[k1, k2][who]), [n1, n2][who]
        out.append({"dataset_name": "qa", "subset_name": "qa_nama_tempat", "prompt_id": "qa", "template_name": "qa_" + verb.split()[0],
                    "dataset_key": "train", "input": f"Bacaan: {context}\nPertanyaan: {q}", "output": ans})
    return out

d = Path(sys.argv[1]); (d / "train").mkdir(parents=True, exist_ok=True)
pq.write_table(pa.Table.from_pylist(rows(1000, 11)), d / "train" / "train.parquet")
pq.write_table(pa.Table.from_pylist(rows(60, 12)), d / "test.parquet")
print(pa.Table.from_pylist(rows(3, 12)).to_pylist())
