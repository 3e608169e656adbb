"""Which parameters does fine-tuning need? python experiments/which.py BASE DATA_TRAIN_PARQUET MODE(full|blocks|embed|lora) STEPS LR"""
import sys, os, time, torch, numpy as np, pyarrow.parquet as pq
torch.set_num_threads(int(os.environ.get("THREADS", "1")))
from difusi.model.loading import load_model
from difusi.data.chat_format import build_sft_example, collate_sft
from difusi.diffusion.losses import sft_loss
from difusi.model.tokenizer import special_token_ids
base, data, mode, steps, lr = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
model, tok = load_model(base, device="cpu", dtype=torch.float32)
ids = special_token_ids(tok, model.config)
t = pq.read_table(data).to_pylist()
ex = [build_sft_example(tok, r["input"], r["output"], 160) for r in t]
for n, p in model.named_parameters():
    emb = "wte" in n or n.endswith("transformer.ff_out.weight")
    p.requires_grad = mode == "full" or (mode == "blocks" and not emb) or (mode == "embed" and emb)
if mode.startswith("lora"):
    from peft import LoraConfig, get_peft_model
    names = ["q_proj", "k_proj", "v_proj", "attn_out", "ff_proj", "up_proj", "ff_out"]
    targets = {"lora": "all-linear", "lora_head": names, "lora_emb": names + ["wte"]}[mode]
    rank = int(os.environ.get("RANK", "16"))
    model = get_peft_model(model, LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=targets, lora_dropout=0.0))
params = [p for p in model.parameters() if p.requires_grad]
print(mode, "trainable", sum(p.numel() for p in params))
opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
g = torch.Generator().manual_seed(0); rng = np.random.default_rng(0); losses = []; t0 = time.time()
for step in range(steps):
    b = collate_sft([ex[i] for i in rng.integers(0, len(ex), 16)], ids.pad)
    loss = sft_loss(model, b["input_ids"], b["prompt_lengths"], ids.mask, g, "token")
    opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(params, 1.0); opt.step(); losses.append(loss.item())
    if (step + 1) % 50 == 0: print(mode, step + 1, round(float(np.mean(losses[-50:])), 3), round(time.time() - t0), flush=True)
