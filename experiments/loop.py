"""Plain-loop sanity check: train a fresh exp model on general tasks only; probe EM per kind.
python experiments/loop.py STEPS LR KINDS(comma|all) [TIED] [D] [LAYERS]"""
import sys, time, torch, collections, numpy as np
import os; torch.set_num_threads(int(os.environ.get("THREADS", "2")))
from difusi.model import presets
from difusi.model.presets import ModelPreset, preset_tokenizer, preset_config
from difusi.model.modeling_llada import LLaDAModelLM
from difusi.data.chat_format import build_sft_example, collate_sft
from difusi.diffusion.losses import sft_loss
from difusi.diffusion.sampler import generate
from difusi.model.tokenizer import encode_chat, special_token_ids
from difusi.data.tasks import GENERAL_TASKS, general_example, task_sentences
steps, lr, kinds = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
tied = len(sys.argv) > 4 and sys.argv[4] == "1"
d = int(sys.argv[5]) if len(sys.argv) > 5 else 128
layers = int(sys.argv[6]) if len(sys.argv) > 6 else 4
kinds = GENERAL_TASKS if kinds == "all" else kinds.split(",")
presets.PRESETS["exp"] = ModelPreset(d_model=d, n_layers=layers, n_heads=4, mlp_hidden_size=3 * d, vocab_size=2048, max_sequence_length=256, weight_tying=tied, space_tokens=os.environ.get("SPACE") == "1")
tok = preset_tokenizer("exp"); cfg = preset_config("exp", tok)
torch.manual_seed(0); model = LLaDAModelLM(cfg)
ids = special_token_ids(tok, cfg)
sentences = [s for s in task_sentences() if 4 <= len(s.split()) <= 14]
rng = np.random.default_rng(1)
opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0, betas=(0.9, 0.98))
sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1, (s + 1) / 50) * max(0.1, 1 - s / steps))
g = torch.Generator().manual_seed(0)
t0 = time.time(); losses = []
for step in range(steps):
    ex = []
    while len(ex) < 32:
        p, a = general_example(kinds[len(ex) % len(kinds)], rng, sentences)
        try: ex.append(build_sft_example(tok, p, a, 64))
        except Exception: pass
    b = collate_sft(ex, ids.pad)
    loss = sft_loss(model, b["input_ids"], b["prompt_lengths"], ids.mask, g, "token")
    opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0); opt.step(); sched.step()
    losses.append(loss.item())
    if (step + 1) % 100 == 0: print(step + 1, round(float(np.mean(losses[-100:])), 3), round(time.time() - t0), flush=True)
model.eval(); rng = np.random.default_rng(99); hits = collections.Counter()
for kind in kinds:
    for i in range(10):
        p, a = general_example(kind, rng, sentences)
        x = encode_chat(tok, p)
        out = generate(model, torch.tensor([x]), steps=32, gen_length=32, block_length=32)
        gtext = tok.decode(out[0, len(x):], skip_special_tokens=True).strip()
        hits[kind] += gtext == a
        if i < 2: print(kind, repr(a[:40]), "->", repr(gtext[:40]))
print("EM", {k: hits[k] / 10 for k in kinds})
