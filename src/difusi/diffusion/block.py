"""Block diffusion (BD3-LM, Fast-dLLM v2, SDAR): the answer is cut into blocks; each block is
denoised from the clean blocks before it and its own noisy self, so committed blocks keep an exact
key/value cache and an answer ends at its end of text instead of filling a fixed area.

Blocks are counted from the answer's first token (the prompt, never noised, is cut into blocks
backwards from there), so a left-padded batch, whose answers all start at one column, sees the same
blocks in the sampler as in training. The training pass is the vectorised one: the noisy copy and
the clean copy side by side, `[x_t; x_0]`, under one mask, so one pass trains every block.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from difusi.diffusion.losses import (
    MASK_EPS,
    SFTNormalization,
    normalise_sft_loss,
    prompt_mask,
    uniform,
)


def block_ids(prompt_lengths: torch.Tensor, seq_len: int, block_size: int) -> torch.Tensor:
    """[B, T] block index of every position: floor((position - prompt length) / block_size), so the
    answer's blocks are 0, 1, ... and the prompt's are negative."""
    positions = torch.arange(seq_len, device=prompt_lengths.device)
    return torch.div(positions[None, :] - prompt_lengths[:, None], block_size, rounding_mode="floor")


def block_diffusion_mask(blocks: torch.Tensor, noisy_from: int = 0) -> torch.Tensor:
    """[B, 1, N + T, N + T] bool attention mask (True attends) over `[x_t[:, noisy_from:]; x_0]` for
    block ids [B, T] (N = T - noisy_from: the noisy copy may leave out columns no row noises).

    A noisy token sees the noisy tokens of its own block and the clean tokens of earlier blocks; a
    clean token sees the clean tokens of its own and earlier blocks (block-causal), never a noisy one.
    """
    noisy = blocks[:, noisy_from:]
    noisy_rows = torch.cat(
        [noisy[:, :, None] == noisy[:, None, :], blocks[:, None, :] < noisy[:, :, None]], dim=2
    )
    clean_rows = torch.cat(
        [torch.zeros(blocks.shape + noisy.shape[1:], dtype=torch.bool, device=blocks.device),
         blocks[:, None, :] <= blocks[:, :, None]],
        dim=2,
    )  # fmt: skip
    return torch.cat([noisy_rows, clean_rows], dim=1)[:, None]


def block_forward_process(
    input_ids: torch.Tensor,
    blocks: torch.Tensor,
    mask_id: int,
    generator: torch.Generator | None = None,
    eligible: torch.Tensor | None = None,
    eps: float = MASK_EPS,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """LLaDA's forward process with one noise level per block: t ~ U[0, 1) for each (row, block),
    p_mask = (1 - eps) t + eps for its tokens. Returns (noisy_ids, masked, p_mask), each [B, T]."""
    B, T = input_ids.shape
    first = int(blocks.min())
    # 1. One noise level per (row, block), indexed by block id                t: [B, n_blocks]
    t = uniform((B, int(blocks.max()) - first + 1), generator, input_ids.device)
    # 2. Each token takes its block's masking probability                    p_mask: [B, T]
    p_mask = (1 - eps) * t.gather(1, blocks - first) + eps
    # 3. Mask each token independently; never what is not eligible           masked: [B, T] bool
    masked = uniform((B, T), generator, input_ids.device) < p_mask
    if eligible is not None:
        masked &= eligible
    return torch.where(masked, mask_id, input_ids), masked, p_mask


def block_weighted_ce(
    model,
    input_ids: torch.Tensor,
    mask_id: int,
    block_size: int,
    prompt_lengths: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    complementary: bool = False,
    token_shift: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """CE / p_mask at each masked answer token of a block-noised batch, from one pass over
    `[x_t; x_0]`: ([B', T] zero where unmasked, the rows' input_ids and prompt_lengths, [B'] each).

    Without `prompt_lengths` (pretraining) the whole sequence is the answer. With `complementary`,
    each row comes twice, the second time with the complementary mask (every answer token masked in
    exactly one of the two copies, weighted 1 / (1 - p_mask + eps)), so every token is supervised.
    With `token_shift` (a model converted from an AR checkpoint, Fast-dLLM v2's choice) a token is
    predicted at the position before it: a block's first token from the clean last token of the
    block before, as the AR model predicted it, the others from their noisy neighbours.
    """
    B, T = input_ids.shape
    if prompt_lengths is None:
        prompt_lengths = torch.zeros(B, dtype=torch.long, device=input_ids.device)
    blocks = block_ids(prompt_lengths, T, block_size)
    eligible = ~prompt_mask(prompt_lengths, T)
    if token_shift:
        eligible[:, 0] = False  # nothing precedes the first token
    # 1. Noise each block of the answer at its own level                    noisy, masked, p_mask: [B, T]
    noisy, masked, p_mask = block_forward_process(input_ids, blocks, mask_id, generator, eligible)
    # 2. The complementary copy: what the first left clean is masked       [2B, T]
    if complementary:
        flipped = eligible & ~masked
        noisy = torch.cat([noisy, torch.where(flipped, mask_id, input_ids)])
        masked = torch.cat([masked, flipped])
        p_mask = torch.cat([p_mask, 1 - p_mask + MASK_EPS])
        input_ids, blocks, prompt_lengths = (torch.cat([t, t]) for t in (input_ids, blocks, prompt_lengths))
    # 3. Where each token is predicted, as a column of [x_t[:, start:]; x_0]: the noisy copy leaves
    #    out the columns no row noises                                      predictor: [B', T]
    start = int(prompt_lengths.min())
    noisy_len = T - start
    positions = torch.arange(T, device=input_ids.device)
    if token_shift:
        block_first = F.pad(blocks[:, 1:] != blocks[:, :-1], (1, 0), value=True)
        predictor = torch.where(block_first, noisy_len + positions - 1, positions - 1 - start)
    else:
        predictor = (positions - start).expand_as(masked)
    rows, columns = masked.nonzero(as_tuple=True)
    at = (rows, predictor[rows, columns])
    scored = torch.zeros(masked.shape[0], noisy_len + T, dtype=torch.bool, device=masked.device)
    scored[at] = True
    # 4. One pass over both copies at their own positions, the head only where a token is predicted
    logits = model(
        input_ids=torch.cat([noisy[:, start:], input_ids], dim=1),
        attention_mask=block_diffusion_mask(blocks, start),
        position_ids=torch.cat([positions[start:], positions]),
        logits_positions=scored,
    ).logits  # (N, V), in the order of `scored`'s true columns
    targets = torch.zeros_like(scored, dtype=torch.long)
    weights = torch.ones_like(scored, dtype=p_mask.dtype)
    targets[at], weights[at] = input_ids[masked], p_mask[masked]
    # 5. CE / p_mask, back at the predicted token's position                 [B', T]
    ce = torch.zeros_like(weights)
    ce[scored] = F.cross_entropy(logits.float(), targets[scored], reduction="none") / weights[scored]
    per_token = torch.where(masked, ce.gather(1, predictor.clamp(min=0)), 0.0)
    return per_token, input_ids, prompt_lengths


def block_diffusion_loss(
    model,
    input_ids: torch.Tensor,
    mask_id: int,
    block_size: int,
    prompt_lengths: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    complementary: bool = True,
    normalization: SFTNormalization = "answer_length",
    token_shift: bool = False,
) -> torch.Tensor:
    """Block-diffusion training loss (`block_weighted_ce`), normalised as `sft_loss` (per answer
    length, or per token) over the rows of both copies; for pretraining, per sequence length."""
    per_token, input_ids, prompt_lengths = block_weighted_ce(
        model, input_ids, mask_id, block_size, prompt_lengths, generator, complementary, token_shift
    )
    return normalise_sft_loss(per_token, prompt_lengths, normalization)


@torch.inference_mode()
def block_answer_nelbo(
    model, example: dict, mc_num: int, generator: torch.Generator | None
) -> tuple[float, int]:
    """A block-diffusion model's negative ELBO of an SFT example's answer, in nats (the mean over
    `mc_num` draws of the summed CE / p_mask: each block's bound given the clean blocks before it,
    summed), and the number of answer tokens."""
    device = next(model.parameters()).device
    input_ids = torch.tensor([example["input_ids"]], device=device).expand(mc_num, -1)
    prompt_lengths = torch.full((mc_num,), example["prompt_length"], device=device)
    config = model.config
    per_token, *_ = block_weighted_ce(
        model, input_ids, config.mask_token_id, config.block_size, prompt_lengths, generator,
        token_shift=config.token_shift,
    )  # fmt: skip
    return float(per_token.sum(dim=1).double().mean()), input_ids.shape[1] - example["prompt_length"]
