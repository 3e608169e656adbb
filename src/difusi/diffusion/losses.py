"""LLaDA's forward (masking) process and its losses on masked tokens only.

Every random draw goes through an explicit torch.Generator, so a loss is reproducible. The draw
order (t first, then the per-token mask) follows the official recipe.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

MASK_EPS = 1e-3  # p_mask = (1 - eps) t + eps keeps every sample's masking probability above zero
RANDOM_LENGTH_PROB = 0.01  # share of pretraining batches cut to a random length

SFTNormalization = Literal["answer_length", "token"]


def uniform(
    shape, generator: torch.Generator | None, device: torch.device, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """U[0, 1) draws from `generator` (on the generator's own device), moved to `device`."""
    gen_device = generator.device if generator is not None else device
    return torch.rand(shape, generator=generator, device=gen_device, dtype=dtype).to(device)


def forward_process(
    input_ids: torch.Tensor,
    mask_id: int,
    generator: torch.Generator | None = None,
    eligible: torch.Tensor | None = None,
    eps: float = MASK_EPS,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mask each token independently with probability p_mask = (1 - eps) t + eps, t ~ U(0, 1) per row.

    Returns (noisy_ids, masked [B, T] bool, p_mask [B, T]). Tokens where `eligible` is False
    (e.g. the prompt in SFT) are never masked.
    """
    B, T = input_ids.shape
    t = uniform(B, generator, input_ids.device)
    p_mask = ((1 - eps) * t + eps)[:, None].expand(B, T)
    masked = uniform((B, T), generator, input_ids.device) < p_mask
    if eligible is not None:
        masked &= eligible
    return torch.where(masked, mask_id, input_ids), masked, p_mask


def weighted_masked_ce(
    logits: torch.Tensor, targets: torch.Tensor, masked: torch.Tensor, p_mask: torch.Tensor
) -> torch.Tensor:
    """Cross-entropy / p_mask at each masked position, as a [B, T] tensor (zero where unmasked)."""
    # Only the masked rows of the [B, T, V] logits are scored, in float32 for a stable log-softmax.
    ce = F.cross_entropy(logits[masked].float(), targets[masked], reduction="none") / p_mask[masked]
    return torch.zeros(masked.shape, dtype=ce.dtype, device=ce.device).masked_scatter(masked, ce)


def pretraining_loss_from_logits(logits, targets, masked, p_mask) -> torch.Tensor:
    """Sum of CE / p_mask over masked tokens, divided by batch * seq_len."""
    return weighted_masked_ce(logits, targets, masked, p_mask).sum() / targets.numel()


def prompt_mask(prompt_lengths: torch.Tensor, seq_len: int) -> torch.Tensor:
    """[B, T] bool, True at prompt positions (index < that row's prompt length)."""
    positions = torch.arange(seq_len, device=prompt_lengths.device)
    return positions[None, :] < prompt_lengths[:, None]


def sft_loss_from_logits(
    logits: torch.Tensor,
    targets: torch.Tensor,
    masked: torch.Tensor,
    p_mask: torch.Tensor,
    prompt_lengths: torch.Tensor,
    normalization: SFTNormalization = "answer_length",
) -> torch.Tensor:
    """SFT loss from logits of a noisy batch.

    "answer_length" (official): per row, sum of CE / p_mask over masked tokens divided by that row's
    answer length (its EOS padding included), then the mean over rows. "token": the same sum over
    the whole batch divided by the batch's total answer tokens, so long answers weigh more.
    """
    per_token = weighted_masked_ce(logits, targets, masked, p_mask)
    answer_lengths = (~prompt_mask(prompt_lengths, targets.shape[1])).sum(dim=1)
    if normalization == "answer_length":
        return (per_token.sum(dim=1) / answer_lengths.clamp(min=1)).mean()
    if normalization == "token":
        return per_token.sum() / answer_lengths.sum().clamp(min=1)
    raise ValueError(f"unknown SFT loss normalization {normalization!r}; use 'answer_length' or 'token'")


def pretraining_loss(
    model,
    input_ids: torch.Tensor,
    mask_id: int,
    generator: torch.Generator | None = None,
    random_length_prob: float = RANDOM_LENGTH_PROB,
) -> torch.Tensor:
    """Masked-diffusion pretraining loss; with probability `random_length_prob` the batch is first
    cut to a random length in [1, T], so the model also sees short sequences."""
    if random_length_prob > 0 and uniform(1, generator, input_ids.device).item() < random_length_prob:
        gen_device = generator.device if generator is not None else input_ids.device
        length = int(torch.randint(1, input_ids.shape[1] + 1, (1,), generator=generator, device=gen_device))
        input_ids = input_ids[:, :length]
    noisy, masked, p_mask = forward_process(input_ids, mask_id, generator)
    logits = model(input_ids=noisy).logits
    return pretraining_loss_from_logits(logits, input_ids, masked, p_mask)


def sft_loss(
    model,
    input_ids: torch.Tensor,
    prompt_lengths: torch.Tensor,
    mask_id: int,
    generator: torch.Generator | None = None,
    normalization: SFTNormalization = "answer_length",
) -> torch.Tensor:
    """Masked-diffusion SFT loss: prompt tokens are never masked; answer (EOS padding included) is."""
    eligible = ~prompt_mask(prompt_lengths, input_ids.shape[1])
    noisy, masked, p_mask = forward_process(input_ids, mask_id, generator, eligible=eligible)
    logits = model(input_ids=noisy).logits
    return sft_loss_from_logits(logits, input_ids, masked, p_mask, prompt_lengths, normalization)
