"""Plain-loop probe: train a fresh d128 model on general tasks only (no Trainer), then answer 40
fresh prompts per kind with the exact sampler and print exact match.

    python experiments/loop.py STEPS LR KINDS      KINDS: comma-separated GENERAL_TASKS, "all",
                                                   or "ulangiN" (repeat one of the N commonest words)
Environment: AREA (answer_area of the collator, default 0), GEN (generated tokens, default 32),
THETA (RoPE base, default LLaDA's 500000), SIZE ("d_model,n_layers,n_heads,mlp", default the demo
preset's 128,4,4,384), AR=1 (the causal twin: next-token loss, greedy decoding), AR_FIRST=N
(diffusion after N causal next-token steps: an AR-initialised diffusion model).
"""

import collections
import os
import sys
import time

import numpy as np
import torch

from difusi.autoregressive import ar_generate, next_token_loss
from difusi.data.chat_format import build_sft_example, collate_sft
from difusi.data.tasks import GENERAL_TASKS, general_example, task_sentences
from difusi.diffusion.losses import sft_loss
from difusi.diffusion.sampler import generate
from difusi.model import presets
from difusi.model.modeling_llada import LLaDAModelLM
from difusi.model.presets import ModelPreset, preset_config, preset_tokenizer
from difusi.model.tokenizer import encode_chat, special_token_ids

steps, lr, kinds = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
area, gen = int(os.environ.get("AREA", "0")), int(os.environ.get("GEN", "32"))
kinds = list(GENERAL_TASKS) if kinds == "all" else kinds.split(",")
size = [int(v) for v in os.environ.get("SIZE", "128,4,4,384").split(",")]
presets.PRESETS["exp"] = ModelPreset(*size, 2048, 256)
tokenizer = preset_tokenizer("exp")
config = preset_config("exp", tokenizer)
config.rope_theta = float(os.environ.get("THETA", "500000"))
AR = bool(os.environ.get("AR"))
AR_FIRST = int(os.environ.get("AR_FIRST", "0"))  # diffusion, after this many causal next-token steps
config.causal = AR or AR_FIRST > 0
torch.manual_seed(0)
model = LLaDAModelLM(config)
ids = special_token_ids(tokenizer, config)
sentences = [s for s in task_sentences() if 4 <= len(s.split()) <= 14]
counts = collections.Counter(w for s in sentences for w in s.split() if w.isalpha() and len(w) > 3)


def example(kind, rng):
    if kind.startswith("ulangi") and kind != "ulangi":  # ulangiN: a word from a closed set of N
        words = [w for w, _ in counts.most_common(int(kind[6:]))]
        w = words[rng.integers(len(words))]
        return f'Ulangi kata "{w}" dua kali.', f"{w} {w}"
    return general_example(kind, rng, sentences)


rng = np.random.default_rng(1)
optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0, betas=(0.9, 0.98))
schedule = torch.optim.lr_scheduler.LambdaLR(
    optimizer, lambda s: min(1, (s + 1) / 50) * max(0.1, 1 - s / steps)
)
noise = torch.Generator().manual_seed(0)
started, losses = time.time(), []
for step in range(steps):
    batch = [build_sft_example(tokenizer, *example(kinds[i % len(kinds)], rng), 256) for i in range(32)]
    batch = collate_sft(batch, ids.pad, answer_area=area)
    if AR_FIRST and step == AR_FIRST:
        model.config.causal = False
    if model.config.causal:
        loss = next_token_loss(model, batch["input_ids"], batch["prompt_lengths"])
    else:
        loss = sft_loss(model, batch["input_ids"], batch["prompt_lengths"], ids.mask, noise, "token")
    optimizer.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    schedule.step()
    losses.append(loss.item())
    if (step + 1) % 100 == 0:
        print(step + 1, round(float(np.mean(losses[-100:])), 3), f"{time.time() - started:.0f} s", flush=True)

model.eval()
rng, hits = np.random.default_rng(99), collections.Counter()
for kind in kinds:
    for i in range(40):
        prompt, answer = example(kind, rng)
        x = encode_chat(tokenizer, prompt)
        if AR:
            out = ar_generate(model, torch.tensor([x]), gen_length=gen)
        else:
            out = generate(model, torch.tensor([x]), steps=gen, gen_length=gen, block_length=gen)
        text = tokenizer.decode(out[0, len(x) :], skip_special_tokens=True).strip()
        hits[kind] += text == answer
        if i < 2:
            print(kind, repr(answer[:40]), "->", repr(text[:40]))
print("exact match %", {k: 100 * hits[k] / 40 for k in kinds})
