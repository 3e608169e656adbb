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


def batch_generator(seed: int, number: int) -> torch.Generator:
    """The generator of batch `number` of a run seeded `seed`: a batch's draws then do not depend on
    the batches before it, nor on which process draws them."""
    return torch.Generator().manual_seed(seed * 1_000_003 + number)


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
    # 1. One noise level per row: t ~ U[0, 1)                                  t: [B]
    t = uniform(B, generator, input_ids.device)
    # 2. Its masking probability, kept above zero, broadcast over the row      p_mask: [B, T]
    p_mask = ((1 - eps) * t + eps)[:, None].expand(B, T)
    # 3. Mask each token independently (t is drawn first: the official order)  masked: [B, T] bool
    masked = uniform((B, T), generator, input_ids.device) < p_mask
    # 4. Never mask what is not eligible (the prompt in SFT)                   masked: [B, T] bool
    if eligible is not None:
        masked &= eligible
    # 5. Masked positions become mask_id                                       noisy: [B, T]
    return torch.where(masked, mask_id, input_ids), masked, p_mask


def weighted_masked_ce(
    logits: torch.Tensor, targets: torch.Tensor, masked: torch.Tensor, p_mask: torch.Tensor
) -> torch.Tensor:
    """Cross-entropy / p_mask at each masked position, as a [B, T] tensor (zero where unmasked).

    `logits` are [B, T, V], or [N, V] when the model computed them at the N masked positions only.
    """
    # 1. Only the masked rows of the logits are scored, in float32 for a stable
    #    log-softmax, each weighted by 1 / p_mask                                ce: [N] (N = masked.sum())
    scored = logits[masked] if logits.dim() == 3 else logits
    ce = F.cross_entropy(scored.float(), targets[masked], reduction="none") / p_mask[masked]
    # 2. Scattered back to their positions, zero elsewhere                        [B, T]
    return torch.zeros(masked.shape, dtype=ce.dtype, device=ce.device).masked_scatter(masked, ce)


def pretraining_loss_from_logits(logits, targets, masked, p_mask) -> torch.Tensor:
    """Sum of CE / p_mask over masked tokens, divided by batch * seq_len."""
    # [B, T] weighted CE, summed to a scalar, over B * T tokens                  loss: []
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
    # 1. CE / p_mask at each masked position, zero elsewhere                 per_token: [B, T]
    per_token = weighted_masked_ce(logits, targets, masked, p_mask)
    return normalise_sft_loss(per_token, prompt_lengths, normalization)


def normalise_sft_loss(
    per_token: torch.Tensor, prompt_lengths: torch.Tensor, normalization: SFTNormalization = "answer_length"
) -> torch.Tensor:
    """The SFT loss from [B, T] weighted CE (zero where unmasked), normalised as `sft_loss_from_logits` says."""
    # 2. Answer length of each row: the positions after its prompt            answer_lengths: [B]
    answer_lengths = (~prompt_mask(prompt_lengths, per_token.shape[1])).sum(dim=1)
    # 3a. Per row: sum over T / answer length, then the mean over B           loss: []
    if normalization == "answer_length":
        return (per_token.sum(dim=1) / answer_lengths.clamp(min=1)).mean()
    # 3b. Whole batch: sum over B and T / total answer tokens                 loss: []
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
    # 1. Sometimes cut the batch to a random length L in [1, T]             input_ids: [B, T] -> [B, L]
    if random_length_prob > 0 and uniform(1, generator, input_ids.device).item() < random_length_prob:
        gen_device = generator.device if generator is not None else input_ids.device
        length = int(torch.randint(1, input_ids.shape[1] + 1, (1,), generator=generator, device=gen_device))
        input_ids = input_ids[:, :length]
    # 2. Forward process: mask every token with its row's p_mask           noisy, masked, p_mask: [B, T]
    noisy, masked, p_mask = forward_process(input_ids, mask_id, generator)
    # 3. Predict the masked positions from the noisy batch                  logits: [N, V]
    logits = model(input_ids=noisy, logits_positions=masked).logits
    # 4. CE / p_mask over the masked tokens, divided by B * T               loss: []
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
    # 1. The answer positions (EOS padding included) are the only maskable ones   eligible: [B, T] bool
    eligible = ~prompt_mask(prompt_lengths, input_ids.shape[1])
    # 2. Forward process on the answers; the prompt stays clean            noisy, masked, p_mask: [B, T]
    noisy, masked, p_mask = forward_process(input_ids, mask_id, generator, eligible=eligible)
    # 3. Predict the masked positions from the noisy batch                  logits: [N, V]
    logits = model(input_ids=noisy, logits_positions=masked).logits
    # 4. CE / p_mask over the masked answer tokens, normalised per answer length or per token   loss: []
    return sft_loss_from_logits(logits, input_ids, masked, p_mask, prompt_lengths, normalization)
