"""The speed-quality sweep with the diffusion model fine-tuned for the sweep's answer area: full
fine-tuning as in the demo but every answer EOS-padded to 256 tokens (`answer_area`), against the
demo's AR twin. Run after `difusi demo --speed-quality`:
    PYTHONPATH=src .venv/bin/python experiments/area256.py runs/demo WORK
"""

import dataclasses
import sys
import time
from pathlib import Path

from difusi.demo import DemoConfig, training_config
from difusi.evaluation.evaluate import load_test_rows
from difusi.evaluation.speed_quality import speed_quality, write_speed_quality
from difusi.model.loading import load_model
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
rows = load_test_rows(demo / "data" / "test.parquet", 16)
model, tokenizer = load_model(run / "model", device="cpu")
ar_model = load_model(demo / "runs" / f"ar-full-seed{config.seed}" / "model", device="cpu")[0]
results = speed_quality(model, tokenizer, rows, ar_model, config.sweep_gen_length, config.block_length, (1, 8))
header = (
    f"Full fine-tuning with every answer EOS-padded to {config.sweep_gen_length} tokens against the "
    f"demo's AR twin: {len(rows)} test rows, {config.sweep_gen_length} generated tokens, block {config.block_length}, CPU."
)
print(write_speed_quality(results, len(rows), work / "speed-quality", header))
print(f"sweep: {time.perf_counter() - started:.0f} s")
