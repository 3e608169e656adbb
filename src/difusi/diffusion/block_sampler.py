"""The block-diffusion sampler: blocks left to right over an exact key/value cache, many tokens per pass.

The prompt's keys and values are computed once, by the first block's first pass (no pass of its
own). Each block starts fully masked and is denoised by passes over the block alone, attending to
the cache: every pass commits each masked position whose confidence
reaches `threshold` (at least the most confident one), or the `tokens_per_pass` most confident
with no threshold. The finished block's keys and values are written clean by the next block's
first pass (one pass over both blocks), so the cache holds exactly what a full block-causal pass
over the committed tokens computes: nothing stale. A row that has committed an end-of-text token
with no mask before it is finished (its decoded answer is final: nothing before its end changes
any more); sampling stops as soon as every row is, inside a block too.

The model must have been trained with the block objective (`config.block_size`); blocks are counted
from the answer's start, which left padding puts at a multiple of the block size (difusi.diffusion.block).
A model with `config.token_shift` predicts each position's token at the position before it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from difusi.diffusion.sampler import eval_mode, gumbel_argmax, model_device
from difusi.errors import DifusiError
from difusi.model.configuration_llada import padding_id
from difusi.model.modeling_llada import KVCache, attention_bias

# on_pass(pass number, the answer area [B, G] after it, mask ids where nothing is committed yet)
PassHook = Callable[[int, torch.Tensor], None]


@torch.inference_mode()
def block_generate(
    model,
    prompt: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    gen_length: int = 128,
    threshold: float | None = 0.9,
    tokens_per_pass: int = 1,
    temperature: float = 0.0,
    top_p: float = 1.0,
    top_k: int = 0,
    stop_ids: tuple[int, ...] = (),
    generator: torch.Generator | None = None,
    use_cache: bool = True,
    on_pass: PassHook | None = None,
) -> torch.Tensor:
    """Generate `gen_length` tokens after a left-padded `prompt` [B, L]; returns [B, L + gen_length].

    `use_cache=False` recomputes the whole sequence on every pass instead (the reference the cached
    sampler must equal token for token). Positions after a finished row's end are filled with its
    first stop token. Sampling draws (temperature > 0, over the `top_p` / `top_k` likeliest tokens)
    come from `generator`.

    Long on purpose: the cache's life (prompt keys on the first pass, a finished block's keys appended
    exactly once) is the sampler's correctness, and it reads best in one loop from top to bottom.
    """
    config = model.config
    block_size, mask_id, shift = config.block_size, config.mask_token_id, int(config.token_shift)
    if not block_size:
        raise DifusiError("block_generate needs a block-diffusion model (config block_size); use generate()")
    if prompt.dim() != 2 or 0 in prompt.shape:
        raise DifusiError(
            f"prompt must be a non-empty [batch, length] tensor, got shape {tuple(prompt.shape)}"
        )
    if threshold is not None and not 0 <= threshold <= 1:
        raise DifusiError(f"threshold {threshold} is not a probability; use a value in [0, 1], e.g. 0.9")
    if gen_length < 1 or tokens_per_pass < 1:
        raise DifusiError(
            f"gen_length ({gen_length}) and tokens_per_pass ({tokens_per_pass}) must be positive"
        )
    device = model_device(model)
    B, L0 = prompt.shape
    # Left-pad the prompt to a whole number of blocks, so every answer starts on a block boundary.
    pad = -L0 % block_size
    L = L0 + pad
    n_blocks = -(-gen_length // block_size)
    total = L + n_blocks * block_size
    if total > config.max_sequence_length:
        raise DifusiError(
            f"prompt ({L0} tokens) plus gen_length ({gen_length}) in blocks of {block_size} exceeds the "
            f"model's max_sequence_length {config.max_sequence_length}; shorten one of them"
        )
    x = torch.full((B, total), mask_id, dtype=torch.long, device=device)
    x[:, :pad] = padding_id(config)
    x[:, pad:L] = prompt.to(device)
    keep = torch.ones(B, total, dtype=torch.long, device=device)
    keep[:, :pad] = 0
    if attention_mask is not None:
        keep[:, pad:L] = attention_mask.to(device)
    stops = torch.tensor(stop_ids, dtype=torch.long, device=device)

    cache = KVCache(config.n_layers) if use_cache else None
    # The whole sequence's attention bias (block-causal, padding hidden), built once: each pass takes
    # its slice instead of building a mask, and at batch 1 a pass's cost is mostly such small steps.
    # A pass over the current block alone with no padding hides nothing and takes none, as the model would.
    bias = attention_bias(keep, model.dtype, False, block_size, 0, total, total, materialize=True)
    padded = not bool(keep.all())
    positions = torch.arange(total, device=device)
    # `written`: the cache holds clean keys for [0, written). The prompt has no pass of its own: the
    # first block's first pass covers it (block-causal, the prompt never sees the block after it).
    passes, written = 0, 0
    ended = torch.zeros(B, dtype=torch.bool, device=device)  # rows whose answer ended in an earlier block
    with eval_mode(model):
        for block in range(n_blocks):
            start, end = L + block * block_size, L + (block + 1) * block_size
            ended_before = ended
            while True:
                # A row needs more passes while its block holds masks and its answer has not ended.
                masked = x[:, start:end] == mask_id
                if len(stop_ids):  # an end token in the block with no mask before it
                    at_end = torch.isin(x[:, start:end], stops) & (masked.cumsum(dim=1) == 0)
                    ended = ended_before | at_end.any(dim=1)
                if not bool((masked.any(dim=1) & ~ended).any()):
                    break
                # One pass over what the cache lacks: the block just finished (clean) and this one
                # (with token shift, from the position before the block: it predicts the first token).
                first = min(written, start - shift) if use_cache else 0
                only_block = first == start  # the cache holds everything before the block
                logits = model(
                    x[:, first:end],
                    attention_mask=None if only_block and not padded else bias[:, :, first:end, :end],
                    kv_cache=cache,
                    cache_start=first,
                    logits_positions=None
                    if only_block
                    else positions[start - shift - first : end - shift - first],
                ).logits  # (B, block_size, V)
                written = start
                draw = (temperature, generator, top_p, top_k)
                x[:, start:end] = _commit(
                    x[:, start:end], masked, logits, mask_id, threshold, tokens_per_pass, draw
                )
                passes += 1
                if on_pass is not None:
                    on_pass(passes, x[:, L:].clone())
            if bool(ended.all()):
                break
    answer = _fill_after_stop(x[:, L : L + gen_length], stops)
    return torch.cat([prompt.to(device), answer], dim=1)


def _commit(block, masked, logits, mask_id, threshold, tokens_per_pass, draw) -> torch.Tensor:
    """The block [B, S] with its confident masked positions committed: those whose chosen token's
    probability reaches `threshold` and at least the most confident one per row (no threshold: the
    `tokens_per_pass` most confident). `masked` marks the block's masks; `draw` is (temperature,
    generator, top_p, top_k)."""
    temperature = draw[0]
    logits[..., mask_id] = -torch.inf  # never "commit" a mask: each pass must make progress
    probs = F.softmax(logits.float(), dim=-1)
    if temperature == 0:
        confidence, x0 = probs.max(dim=-1)  # (B, S) each: the argmax and its probability
    else:
        x0 = gumbel_argmax(logits, *draw)
        confidence = probs.gather(-1, x0[..., None]).squeeze(-1)
    confidence = torch.where(masked, confidence, -torch.inf)
    if threshold is None:
        k = min(tokens_per_pass, block.shape[1])
        commit = torch.zeros_like(masked).scatter_(1, confidence.topk(k, dim=1).indices, True)
    else:  # reaching the threshold, or the row's most confident when none does
        commit = confidence >= confidence.amax(dim=1, keepdim=True).clamp_max(threshold)
    return torch.where(commit & masked, x0, block)


def _fill_after_stop(answer: torch.Tensor, stops: torch.Tensor) -> torch.Tensor:
    """Each row's positions after its first stop token set to that token, as `ar_generate` fills a
    finished row (what the blocks after it held, or masks where sampling stopped early)."""
    if len(stops) == 0:
        return answer
    is_stop = torch.isin(answer, stops)
    after = F.pad(is_stop.cumsum(dim=1)[:, :-1] > 0, (1, 0))  # strictly after the first stop
    first = answer.gather(1, is_stop.int().argmax(dim=1, keepdim=True))
    return torch.where(after, first.expand_as(answer), answer)
