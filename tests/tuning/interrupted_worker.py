"""Run by the interruption tests: `difusi train --config CONFIG --resume`, paused at one moment so
the test can kill it there with SIGKILL.

Moments: `step-N` (inside optimizer step N), `checkpoint-N` (inside the checkpoint save at step N,
its weights and optimizer written but not its trainer state), `final` (while the final adapter is
written), `none` (no pause: the test kills it at a random time).
"""

from __future__ import annotations

import sys
import time

from transformers import Trainer, TrainerCallback

import difusi.tuning.train as train_module
from difusi.cli import main


def pause() -> None:
    print("paused", flush=True)
    time.sleep(120)


class PauseInStep(TrainerCallback):
    def __init__(self, step: int):
        self.step = step

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step + 1 == self.step:
            pause()


if __name__ == "__main__":
    config_path, moment = sys.argv[1], sys.argv[2]
    if moment.startswith("step-"):
        callbacks = train_module.trainer_callbacks
        step = int(moment.removeprefix("step-"))
        train_module.trainer_callbacks = lambda out: [*callbacks(out), PauseInStep(step)]
    elif moment.startswith("checkpoint-"):
        step, save_rng_state = int(moment.removeprefix("checkpoint-")), Trainer._save_rng_state

        def slow_rng_state(self, output_dir):
            if self.state.global_step == step:
                pause()
            save_rng_state(self, output_dir)

        Trainer._save_rng_state = slow_rng_state
    elif moment == "final":
        save_adapter = train_module.save_adapter

        def slow_save_adapter(*args, **kwargs):
            save_adapter(*args, **kwargs)
            pause()  # the adapter half in place: written into the staging directory, not yet renamed

        train_module.save_adapter = slow_save_adapter
    sys.exit(main(["train", "--config", config_path, "--resume"]))
