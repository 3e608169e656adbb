"""Threshold decoding check: python experiments/thresh.py BASE [ADAPTER|-] TEST.parquet ROWS
Exact sampler (steps = gen = 256, block 32, batched) vs dual cache + threshold 0.9 (batch 1, steps counted)."""
import sys, time, torch
torch.set_num_threads(2)
from difusi.model.loading import load_model
from difusi.evaluation.evaluate import load_test_rows
from difusi.generation import fit_prompt, generate_answers, decode_answer, stop_token_ids
from difusi.diffusion.sampler import SamplerSettings, generate
from difusi.evaluation.metrics import score_rows, CHRF_PP, EXACT_MATCH
base, adapter, test, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
model, tok = load_model(base, None if adapter == "-" else adapter)
rows = load_test_rows(test)
rows = [r for i, r in enumerate(rows) if i % max(1, len(rows) // n) == 0][:n]
prompts = [fit_prompt(tok, r["input"], 200).ids for r in rows]
G = 256
stop = stop_token_ids(tok, model.config)
def score(answers):
    recs = [{"reference": r["output"], "generation": a} for r, (a, _) in zip(rows, answers)]
    return score_rows(recs, [CHRF_PP, EXACT_MATCH])
t = time.time()
fast, steps = [], []
for p in prompts:
    count = [0]
    out = generate(model, torch.tensor([p]), steps=G, gen_length=G, block_length=32, cache="dual", threshold=0.9,
                   on_step=lambda s, x: count.__setitem__(0, count[0] + 1))
    fast.append(decode_answer(tok, out[0, len(p):].tolist(), stop)); steps.append(count[0])
tf = time.time() - t
print("dual+0.9:", score(fast), "tokens/step", G * len(steps) / sum(steps), "mean steps", sum(steps) / len(steps), "s", round(tf), flush=True)
t = time.time()
exact = generate_answers(model, tok, prompts, SamplerSettings(steps=G, gen_length=G, block_length=32), batch_size=len(prompts), progress=False)
print("exact:", score(exact), "s", round(time.time() - t))
for r, (a, _), (b, _) in list(zip(rows, exact, fast))[:6]:
    print(repr(r["output"][:40]), "| exact:", repr(a[:40]), "| fast:", repr(b[:40]))
