"""Exact match of a base on fresh general tasks, per kind: python experiments/probe.py MODEL [N]"""
import sys, torch, collections
torch.set_num_threads(1)
from difusi.model.loading import load_model
from difusi.model.tokenizer import encode_chat
from difusi.diffusion.sampler import generate
from difusi.data.tasks import GENERAL_TASKS, general_example, task_sentences
import numpy as np
model, tok = load_model(sys.argv[1])
n = int(sys.argv[2]) if len(sys.argv) > 2 else 10
sentences = [s for s in task_sentences() if 4 <= len(s.split()) <= 14]
rng = np.random.default_rng(99)
hits = collections.Counter()
for kind in GENERAL_TASKS:
    for i in range(n):
        p, a = general_example(kind, rng, sentences)
        ids = encode_chat(tok, p)
        out = generate(model, torch.tensor([ids]), steps=32, gen_length=32, block_length=32)
        g = tok.decode(out[0, len(ids):], skip_special_tokens=True).strip()
        hits[kind] += g == a
        if i < 2: print(kind, repr(a[:50]), "->", repr(g[:50]))
print("EM", {k: hits[k] / n for k in GENERAL_TASKS})
