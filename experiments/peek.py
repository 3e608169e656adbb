import sys, torch
torch.set_num_threads(1)
from difusi.model.loading import load_model
from difusi.model.tokenizer import encode_chat
from difusi.diffusion.sampler import generate
from difusi.data.tasks import general_examples
model, tok = load_model(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 and sys.argv[2] != "-" else None)
prompts = [p for p, _ in general_examples(6, seed=99)] + ["Kutipan Wikipedia:\nPresiden Joko Widodo meresmikan jembatan baru kemarin.\nNama apa yang disebut dalam teks tersebut?"]
for p in prompts:
    ids = encode_chat(tok, p)
    out = generate(model, torch.tensor([ids]), steps=32, gen_length=32, block_length=32)
    print(repr(p[-60:]), "->", repr(tok.decode(out[0, len(ids):])[:200]))
