"""Pretrain the AR twin of bD: python experiments/pre_ar.py OUT STEPS GENERAL LR"""
import sys, time, torch, resource
torch.set_num_threads(2)
from difusi.model import presets
from difusi.model.presets import ModelPreset
presets.PRESETS["exp"] = ModelPreset(d_model=128, n_layers=4, n_heads=4, mlp_hidden_size=384, vocab_size=2048, max_sequence_length=256)
from difusi.tuning.config import PretrainConfig
from difusi.tuning.pretrain import pretrain
out, steps, general, lr = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
t = time.time()
pretrain(PretrainConfig(out=out, preset="exp", max_steps=steps, batch_size=32, seq_len=64, learning_rate=lr, objective="ar",
    general_tasks=general, held_out=2000, logging_steps=50, save_steps=100000, seed=42, warmup_ratio=0.02))
ru = resource.getrusage(resource.RUSAGE_SELF)
print("PRETRAIN_SECONDS", round(time.time() - t, 1), "CPU", round(ru.ru_utime + ru.ru_stime, 1))
