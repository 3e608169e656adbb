"""Training-step time with the output head on every position against on the masked ones only.

The losses ask the model for logits at the masked positions only (`logits_positions` as a [B, T]
mask); this prints how much faster a forward + backward step of a randomly initialised preset model
gets, at a pretraining shape (every token maskable) and an SFT shape (answers only), as the ratio of
the two timings interleaved in one run (a ratio, not a time: shared machines are noisy). Usage:
python -m difusi.benchmarks.masked_logits [--preset demo] [--repeats 6]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from difusi.diffusion.losses import forward_process, weighted_masked_ce
from difusi.model.loading import load_model
from difusi.model.presets import build_checkpoint

# (name, batch, sequence length, answer tokens or None for pretraining)
SHAPES = (("pretraining", 32, 64, None), ("SFT", 16, 120, 30))


def step(model, ids: torch.Tensor, eligible, mask_id: int, masked_only: bool) -> None:
    noisy, masked, p_mask = forward_process(ids, mask_id, torch.Generator().manual_seed(1), eligible=eligible)
    logits = model(noisy, logits_positions=masked if masked_only else None).logits
    (weighted_masked_ce(logits, ids, masked, p_mask).sum() / ids.numel()).backward()
    model.zero_grad()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--repeats", type=int, default=6, help="timed rounds of 5 steps per variant")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        model, _ = load_model(build_checkpoint(args.preset, Path(scratch) / "model"), device="cpu")
    model.train()
    vocab, mask_id = model.config.vocab_size, model.config.mask_token_id
    for name, batch, length, answer in SHAPES:
        ids = torch.randint(0, vocab, (batch, length), generator=torch.Generator().manual_seed(0))
        eligible = None if answer is None else (torch.arange(length) >= length - answer).expand(batch, length)
        seconds = {False: 0.0, True: 0.0}
        for round_ in range(args.repeats + 1):  # round 0 warms up
            for masked_only in (False, True):
                started = time.perf_counter()
                for _ in range(5):
                    step(model, ids, eligible, mask_id, masked_only)
                if round_:
                    seconds[masked_only] += time.perf_counter() - started
        print(
            f"{name} (batch {batch} x {length}): masked-only head {seconds[False] / seconds[True]:.2f}x faster"
        )


if __name__ == "__main__":
    main()
