"""Fine-tune and evaluate on task data.

python experiments/ft.py BASE OUT --methods base,full,lora,loraplus,pissa [--steps 120 --lr-full 1e-3 --lr-lora 5e-3 ...]
Data: task_rows(train_rows + 6 * test_per_subset, seed) split at random: test_per_subset rows per subset.
"""
import argparse, json, time, os
from pathlib import Path
import numpy as np, pyarrow as pa, pyarrow.parquet as pq, torch
torch.set_num_threads(int(os.environ.get("THREADS", "2")))
from difusi.data.tasks import task_rows, SUBSETS
from difusi.tuning.config import TrainConfig
from difusi.tuning.train import train
from difusi.evaluation.evaluate import evaluate, EvaluationConfig
from difusi.diffusion.sampler import SamplerSettings

ap = argparse.ArgumentParser()
ap.add_argument("base"); ap.add_argument("out")
ap.add_argument("--methods", default="base,full,lora,loraplus,pissa")
ap.add_argument("--steps", type=int, default=120)
ap.add_argument("--batch", type=int, default=16)
ap.add_argument("--train-rows", type=int, default=3000)
ap.add_argument("--test-per-subset", type=int, default=20)
ap.add_argument("--lr-full", type=float, default=5e-4)
ap.add_argument("--lr-lora", type=float, default=2e-3)
ap.add_argument("--lr-loraplus", type=float, default=None)
ap.add_argument("--lr-pissa", type=float, default=None)
ap.add_argument("--rank", type=int, default=16)
ap.add_argument("--alpha", type=float, default=None)
ap.add_argument("--loss", default="answer_length")
ap.add_argument("--data", default=None, help="existing dir with train/ and test.parquet")
ap.add_argument("--gen", type=int, default=32)
ap.add_argument("--mc", type=int, default=4)
ap.add_argument("--sampler", default="", help="json of SamplerSettings overrides")
ap.add_argument("--seed", type=int, default=42)
a = ap.parse_args()
out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
if a.data:
    data = Path(a.data)
else:
    data = out / "data"
    if not (data / "test.parquet").exists():
        (data / "train").mkdir(parents=True, exist_ok=True)
        table = task_rows(a.train_rows + 6 * a.test_per_subset, seed=1)
        rng = np.random.default_rng(5)
        subsets = np.array(table["subset_name"].to_pylist())
        test = np.concatenate([rng.choice(np.flatnonzero(subsets == s), a.test_per_subset, replace=False) for s in SUBSETS])
        test = np.sort(test)
        train_idx = np.setdiff1d(np.arange(table.num_rows), test)
        pq.write_table(table.take(pa.array(train_idx)), data / "train" / "train.parquet")
        pq.write_table(table.take(pa.array(test)), data / "test.parquet")

def repeated_char(g):
    s = "".join(g.split())
    return len(s) > 0 and len(set(s)) == 1

results = {}
for method in a.methods.split(","):
    run = out / method
    adapter = None
    t0 = time.time(); c0 = sum(os.times()[:2])
    if method != "base":
        lr = {"full": a.lr_full, "lora": a.lr_lora, "loraplus": a.lr_loraplus or a.lr_lora, "pissa": a.lr_pissa or a.lr_lora}[method]
        if not (run / ("model" if method == "full" else "adapter")).exists():
            train(TrainConfig(out=str(run), base=a.base, data=str(data / "train"), method=method, max_steps=a.steps,
                batch_size=a.batch, grad_accumulation=1, max_length=160, learning_rate=lr, rank=a.rank,
                alpha=a.alpha or 2.0 * a.rank, loss_normalization=a.loss, logging_steps=10, save_steps=100000, seed=a.seed,
                warmup_ratio=0.05))
        adapter = run / "adapter" if method != "full" else None
    train_s = time.time() - t0
    train_cpu = sum(os.times()[:2]) - c0
    base = str(run / "model") if method == "full" else a.base
    sampler = SamplerSettings(steps=a.gen, gen_length=a.gen, block_length=min(32, a.gen), **json.loads(a.sampler or "{}"))
    t1 = time.time()
    m = evaluate(base, data / "test.parquet", run / "eval", str(adapter) if adapter else None, label=method,
        config=EvaluationConfig(sampler=sampler, batch_size=20, mc_num=a.mc, max_length=200, seed=0), progress=False)
    eval_s = time.time() - t1
    gens = [json.loads(l) for l in open(run / "eval" / "generations.jsonl")]
    rep = 100 * np.mean([repeated_char(g["generation"]) for g in gens])
    info = json.load(open(run / "run_info.json")) if (run / "run_info.json").exists() else {}
    r = {"chrf": m["overall"]["chrf_pp"], "em": m["overall"]["exact_match"], "empty": m["overall"]["empty_rate"],
         "rep": rep, "nelbo": m["overall"]["nelbo_per_token"],
         "em_sub": {k: round(v["exact_match"]) for k, v in m["per_subset"].items()},
         "chrf_sub": {k: round(v["chrf_pp"], 1) for k, v in m["per_subset"].items()},
         "train_s": round(train_s), "train_cpu": round(train_cpu), "eval_s": round(eval_s), "trainable": info.get("trainable_params")}
    results[method] = r
    print("RESULT", method, json.dumps(r), flush=True)
    for g in gens[:: max(1, len(gens) // 8)][:8]:
        print("   ", g["subset_name"], "|", repr(g["reference"][:60]), "->", repr(g["generation"][:60]))
import resource
ru = resource.getrusage(resource.RUSAGE_SELF)
print("CPU_SECONDS", ru.ru_utime + ru.ru_stime)
json.dump(results, open(out / "results.json", "w"), indent=1)
