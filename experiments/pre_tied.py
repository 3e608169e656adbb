"""Pretrain a small base with optional tied embeddings: python experiments/pre_tied.py OUT STEPS GENERAL LR TIED [D LAYERS VOCAB BATCH]"""
import sys, time, torch, resource
torch.set_num_threads(int(__import__("os").environ.get("THREADS", "2")))
from difusi.model import presets
from difusi.model.presets import ModelPreset
out, steps, general, lr, tied = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5] == "1"
d, layers, vocab, batch = (int(x) for x in (sys.argv[6:10] + ["128", "4", "2048", "32"][len(sys.argv[6:10]):]))
presets.PRESETS["exp"] = ModelPreset(d_model=d, n_layers=layers, n_heads=4, mlp_hidden_size=3 * d, vocab_size=vocab, max_sequence_length=256, weight_tying=tied)
from difusi.tuning.config import PretrainConfig
from difusi.tuning.pretrain import pretrain
t = time.time()
pretrain(PretrainConfig(out=out, preset="exp", max_steps=steps, batch_size=batch, seq_len=64, learning_rate=lr,
    general_tasks=general, held_out=2000, logging_steps=50, save_steps=100000, seed=42, warmup_ratio=0.02))
ru = resource.getrusage(resource.RUSAGE_SELF)
print("PRETRAIN_SECONDS", round(time.time() - t, 1), "CPU", round(ru.ru_utime + ru.ru_stime, 1))
