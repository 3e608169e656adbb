"""Speed of `generate` against the literal official algorithm (`reference_generate`) on one model."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from difusi.diffusion.reference import reference_generate
from difusi.diffusion.sampler import generate, model_device


@dataclass(frozen=True)
class SamplerSpeed:
    """Generated tokens per second (best of the repeats) of both samplers at one setting."""

    gen_length: int
    block_length: int
    steps: int
    batch_size: int
    tokens_per_s: float
    reference_tokens_per_s: float
    identical: bool  # same tokens as the reference (expected at temperature 0)

    @property
    def speedup(self) -> float:
        return self.tokens_per_s / self.reference_tokens_per_s


def _timed(sampler: Callable, model, prompt: torch.Tensor, options: dict) -> tuple[float, torch.Tensor]:
    """Wall time of one sampler(model, prompt, **options) run, and its output."""
    if prompt.device.type == "cuda":
        torch.cuda.synchronize(prompt.device)
    started = time.perf_counter()
    output = sampler(model, prompt, **options)
    if prompt.device.type == "cuda":
        torch.cuda.synchronize(prompt.device)
    return time.perf_counter() - started, output


def benchmark_sampler(
    model,
    settings: Sequence[tuple[int, int]] = ((64, 64), (128, 32), (256, 32)),
    batch_size: int = 4,
    prompt_length: int = 32,
    repeats: int = 2,
    temperature: float = 0.0,
    seed: int = 0,
) -> list[SamplerSpeed]:
    """Tokens/s of `generate` and of the official algorithm for each (gen_length, block_length), with
    steps = gen_length (LLaDA's recommendation) on a random prompt batch; warmed up first."""
    device = model_device(model)
    vocab = model.config.vocab_size
    generator = torch.Generator().manual_seed(seed)
    prompt = torch.randint(0, vocab, (batch_size, prompt_length), generator=generator)
    # Random ids, but never the mask id, which would turn prompt tokens into positions to fill.
    prompt = torch.where(prompt == model.config.mask_token_id, (prompt + 1) % vocab, prompt).to(device)
    generate(model, prompt, steps=4, gen_length=8, block_length=8)
    results = []
    for gen_length, block_length in settings:
        options = dict(
            steps=gen_length, gen_length=gen_length, block_length=block_length, temperature=temperature
        )
        # Alternate the two samplers and keep each one's best run, so load changes hit both alike.
        ours = theirs = float("inf")
        for _ in range(repeats):
            seconds, ours_tokens = _timed(generate, model, prompt, options)
            ours = min(ours, seconds)
            seconds, their_tokens = _timed(reference_generate, model, prompt, options)
            theirs = min(theirs, seconds)
        generated = batch_size * gen_length
        results.append(
            SamplerSpeed(
                gen_length,
                block_length,
                gen_length,
                batch_size,
                generated / ours,
                generated / theirs,
                torch.equal(ours_tokens, their_tokens),
            )
        )
    return results
