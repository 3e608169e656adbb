import sys, torch
torch.set_num_threads(1)
from difusi.model.loading import load_model
from difusi.model.tokenizer import encode_chat
from difusi.diffusion.sampler import generate
import pyarrow.parquet as pq
model, tok = load_model(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None)
mask = model.config.mask_token_id
rows = pq.read_table("/tmp/exp/taskdata/test.parquet").to_pylist()
seen = set()
for r in rows:
    if r["subset_name"] in seen: continue
    seen.add(r["subset_name"])
    ids = encode_chat(tok, r["input"])
    x = torch.tensor([ids + [mask] * 32])
    with torch.no_grad():
        probs = model(input_ids=x).logits[0, len(ids):].softmax(-1)
    top = probs.max(-1)
    print(r["subset_name"], repr(r["output"][:30]), [(tok.decode([int(i)]), round(float(v), 2)) for v, i in zip(top.values[:8], top.indices[:8])])
    out = generate(model, x[:, :len(ids)], steps=32, gen_length=32, block_length=32)
    print("   gen:", repr(tok.decode(out[0, len(ids):len(ids)+12])))
