"""Launched by the FSDP tests: `difusi ARGS` with accelerate's FSDP enabled on CPU processes.

accelerate turns an FSDP launch into plain DDP when the processes run on CPUs (it promotes to FSDP
only on accelerators), although torch's FSDP2 runs on CPU over gloo. This lifts that one gate, so
the run goes through accelerate's and transformers' own FSDP2 code: `fully_shard` of every
LLaDABlock, sharded checkpoints, the gathered final save. `--pause-in-step N` (first) stops every
process inside optimizer step N, for a test to kill the launch there.
"""

from __future__ import annotations

import sys

from accelerate.state import AcceleratorState
from accelerate.utils import DistributedType
from interrupted_worker import PauseInStep

import difusi.tuning.train as train_module
from difusi.cli import main

_accelerator_state_init = AcceleratorState.__init__


def _fsdp_on_cpu(self, *args, fsdp_plugin=None, **kwargs):
    _accelerator_state_init(self, *args, fsdp_plugin=fsdp_plugin, **kwargs)
    # Every later AcceleratorState() re-reads the process state (MULTI_CPU): promote it each time.
    plugin = fsdp_plugin or getattr(self, "fsdp_plugin", None)
    if plugin is not None and self.distributed_type == DistributedType.MULTI_CPU:
        self.distributed_type, self.fsdp_plugin = DistributedType.FSDP, plugin


if __name__ == "__main__":
    AcceleratorState.__init__ = _fsdp_on_cpu
    argv = sys.argv[1:]
    if argv[0] == "--pause-in-step":
        step, argv = int(argv[1]), argv[2:]
        callbacks = train_module.trainer_callbacks
        train_module.trainer_callbacks = lambda out: [*callbacks(out), PauseInStep(step)]
    sys.exit(main(argv))
