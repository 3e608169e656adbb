"""Work shared out over the processes of a launch (`accelerate launch`, torchrun): which items are
this process's, and everyone's results gathered back in the items' order. Without a launch there is
one process and every call is the identity.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

import torch
from torch import nn

T = TypeVar("T")


@dataclass(frozen=True)
class Processes:
    """This process's place in a launch: `rank` of `world` processes, and its device."""

    rank: int = 0
    world: int = 1
    device: torch.device | None = None

    @classmethod
    def launched(cls) -> Processes:
        """The processes of this launch, read by accelerate (which starts torch.distributed when a
        launcher set the environment: NCCL on GPUs, gloo on CPUs); one process when nothing
        launched it."""
        from accelerate import PartialState

        # Without cpu=True accelerate sees a CPU-only launch as no launch at all.
        state = PartialState(cpu=not torch.cuda.is_available())
        return cls(state.process_index, state.num_processes, state.device)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def share(self, items: Sequence[T]) -> list[T]:
        """This process's items: every `world`-th, from position `rank` (round robin)."""
        return list(items[self.rank :: self.world])

    def everyone(self, value: T) -> list[T]:
        """Every process's `value`, by rank (on every process)."""
        if self.world == 1:
            return [value]
        values: list[T] = [None] * self.world  # type: ignore[list-item]
        torch.distributed.all_gather_object(values, value)
        return values

    def gather(self, mine: list[T]) -> list[T]:
        """Every process's `share` results, back in the order of the items shared (on every process)."""
        parts = self.everyone(list(mine))
        return [
            parts[position % self.world][position // self.world] for position in range(sum(map(len, parts)))
        ]

    def round_count(self, items: Sequence) -> int:
        """How many `rounds` the items take: the largest share."""
        return -(-len(items) // self.world)

    def rounds(self, items: Sequence[T]) -> Iterator[T | None]:
        """This process's items one round at a time, in step with the others: every process sees the
        same number of rounds, None where it has nothing left (so an `everyone` per round never waits
        on a process that finished)."""
        mine = self.share(items)
        for number in range(self.round_count(items)):
            yield mine[number] if number < len(mine) else None

    def broadcast(self, value: T) -> T:
        """The main process's `value`, on every process."""
        if self.world == 1:
            return value
        box = [value]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]


@contextmanager
def unsharded(model: nn.Module) -> Iterator[nn.Module]:
    """`model` with every FSDP2-sharded module's parameters gathered whole on this process, so each
    process can run forward passes of its own (as many as it likes) with no collective between them;
    sharded again on exit, resharding after forward as FSDP2 sets it up (every module but the
    outermost). A model that FSDP did not shard is yielded as it is.

    Costs the whole model's memory on every process while inside."""
    from torch.distributed.fsdp import FSDPModule

    sharded = [module for module in model.modules() if isinstance(module, FSDPModule)]
    for module in sharded:
        module.unshard()
        module.set_reshard_after_forward(False, recurse=False)
    try:
        yield model
    finally:
        for number, module in enumerate(sharded):
            module.reshard()
            module.set_reshard_after_forward(number > 0, recurse=False)
