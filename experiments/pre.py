"""Pretrain a base: python experiments/pre.py OUT PRESET STEPS BATCH SEQ LR GENERAL [objective]"""
import sys, time, torch
torch.set_num_threads(2)
from difusi.tuning.config import PretrainConfig
from difusi.tuning.pretrain import pretrain
out, preset, steps, batch, seq, lr, general = sys.argv[1:8]
objective = sys.argv[8] if len(sys.argv) > 8 else "diffusion"
t = time.time()
pretrain(PretrainConfig(out=out, preset=preset, max_steps=int(steps), batch_size=int(batch), seq_len=int(seq),
    learning_rate=float(lr), general_tasks=int(general), held_out=2000, logging_steps=10, save_steps=100000,
    seed=42, objective=objective))
import resource
ru = resource.getrusage(resource.RUSAGE_SELF)
print("PRETRAIN_SECONDS", time.time() - t, "CPU_SECONDS", ru.ru_utime + ru.ru_stime)
