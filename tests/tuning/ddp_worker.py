"""Run by the distributed test under `accelerate launch`: train briefly, then dump this rank's weights."""

from __future__ import annotations

import sys
from pathlib import Path

from safetensors.torch import save_file

from difusi.tuning.config import TrainConfig
from difusi.tuning.train import prepare_run

if __name__ == "__main__":
    config_path, dump_dir = sys.argv[1], Path(sys.argv[2])
    run = prepare_run(TrainConfig.from_yaml(config_path))
    run.trainer.train()
    args = run.trainer.args
    weights = {name: p.detach().contiguous() for name, p in run.model.named_parameters()}
    save_file(weights, dump_dir / f"rank{args.process_index}-of-{args.world_size}.safetensors")
