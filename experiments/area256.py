"""The speed-quality sweep with the diffusion model fine-tuned for the sweep's answer area: full
fine-tuning as in the demo but every answer EOS-padded to 256 tokens (`answer_area`), against the
demo's AR twin. Run after `difusi demo --speed-quality`:
    PYTHONPATH=src .venv/bin/python experiments/area256.py runs/demo WORK
"""

import dataclasses
import sys
import time
from pathlib import Path

from difusi.demo import DemoConfig, sweep_against_ar_twin, training_config
from difusi.tuning.train import train

demo, work = Path(sys.argv[1]), Path(sys.argv[2])
config = DemoConfig()
run = work / "full-area256"
if not (run / "model").exists():
    started = time.perf_counter()
    recipe = training_config(config, run, demo / "base" / "model", demo / "data", "full", config.seed)
    train(dataclasses.replace(recipe, answer_area=config.sweep_gen_length))
    print(f"fine-tuning: {time.perf_counter() - started:.0f} s", flush=True)
started = time.perf_counter()
described = f"Full fine-tuning with every answer EOS-padded to {config.sweep_gen_length} tokens"
print(sweep_against_ar_twin(demo, config, run / "model", work / "speed-quality", 16, (1, 8), described))
print(f"sweep: {time.perf_counter() - started:.0f} s")
