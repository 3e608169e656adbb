import sys, torch
torch.set_num_threads(1)
from difusi.model.loading import load_model
from difusi.model.tokenizer import encode_chat
from difusi.data.tasks import general_examples
model, tok = load_model(sys.argv[1])
mask = model.config.mask_token_id
for p, a in general_examples(4, seed=99)[:4]:
    ids = encode_chat(tok, p)
    x = torch.tensor([ids + [mask] * 32])
    with torch.no_grad():
        probs = model(input_ids=x).logits[0, len(ids):].softmax(-1)
    top = probs.max(-1)
    print(repr(a[:40]), [(tok.decode([int(i)]), round(float(v), 2)) for v, i in zip(top.values[:6], top.indices[:6])], "EOSconf@10:", round(float(top.values[10]), 3))
