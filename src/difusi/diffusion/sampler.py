"""LLaDA's reverse process: fill a fully masked answer area a few tokens per step, most confident first.

`generate` has the official `generate()` semantics (see `difusi.diffusion.reference`, the literal
official algorithm) and, at temperature 0, gives identical tokens on the same weights. It is faster
without changing results: the top-k commit is one batched op instead of a loop over rows, and
the output head, softmax and Gumbel noise run only at the positions a step can commit (the masked
positions left of the current block's end), not over the whole [B, T, V] logits.

Two training-free accelerations (Fast-dLLM) are options. `cache="prefix"` / `"dual"` run one full
pass per block that fills a key/value cache, then each step recomputes only [block_start, T) or only
the block itself, attending to the cached keys of the rest (approximate: those keys are a few steps
stale). `threshold` commits, per step, every masked position of the block whose confidence reaches
it (at least the most confident one), so a block takes as many steps as it needs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal, get_args

import torch
import torch.nn.functional as F

from difusi.config import option
from difusi.diffusion.losses import uniform
from difusi.errors import DifusiError
from difusi.model.modeling_llada import KVCache

Remasking = Literal["low_confidence", "random"]
REMASKING: tuple[str, ...] = get_args(Remasking)
Cache = Literal["none", "prefix", "dual"]  # Fast-dLLM key/value cache
CACHES: tuple[str, ...] = get_args(Cache)
StepHook = Callable[[int, torch.Tensor], None]


@dataclass(frozen=True)
class SamplerSettings:
    """The sampler settings of `generate` as one value, and the one home of their defaults:
    `generate`'s keyword defaults, the `--steps ...` options of `difusi generate`, `evaluate` and
    `chat`, and the evaluation config all come from here. The defaults are LLaDA's chat
    recommendation: steps = gen_length = 128, semi-autoregressive blocks of 32."""

    steps: int = option(128, "denoising steps in all")
    gen_length: int = option(128, "tokens to generate")
    block_length: int = option(32, "semi-autoregressive block")
    temperature: float = option(0.0, "0 is greedy")
    cfg_scale: float = option(0.0, "classifier-free guidance (0: off)")
    remasking: Remasking = option("low_confidence", "which masked tokens a step commits")
    cache: Cache = option("none", "approximate key/value cache: prefix or dual (none: exact)")
    threshold: float | None = option(
        None,
        "commit every token of the block with confidence >= this per step, e.g. 0.9 (None: the fixed schedule)",
    )
    early_stop: bool = option(
        False, "stop once every answer has committed its end of text with nothing masked before it"
    )
    top_p: float = option(
        1.0, "at temperature > 0, draw only from the likeliest tokens whose probability reaches this"
    )
    top_k: int = option(0, "at temperature > 0, draw only from the k likeliest tokens (0: all)")

    def check(self) -> None:
        """Raise DifusiError naming the problem and the fix for settings `generate` cannot honour
        (callable before a model is loaded)."""
        steps, gen_length, block_length = self.steps, self.gen_length, self.block_length
        if self.cache not in CACHES:
            raise DifusiError(f"unknown cache {self.cache!r}; use one of {', '.join(CACHES)}")
        if self.threshold is not None:
            if not 0 <= self.threshold <= 1:
                raise DifusiError(
                    f"threshold {self.threshold} is not a probability; use a value in [0, 1], e.g. 0.9"
                )
            if self.remasking != "low_confidence":
                raise DifusiError(
                    "threshold decoding compares model confidences; use remasking low_confidence"
                )
        if min(steps, gen_length, block_length) < 1:
            raise DifusiError(
                f"steps ({steps}), gen_length ({gen_length}) and block_length ({block_length}) must be positive"
            )
        if gen_length % block_length:
            raise DifusiError(
                f"gen_length {gen_length} is not divisible by block_length {block_length}; "
                "use a block_length that divides gen_length"
            )
        num_blocks = gen_length // block_length
        if steps % num_blocks:
            raise DifusiError(
                f"steps {steps} is not divisible by the number of blocks {num_blocks} "
                f"(gen_length / block_length); use a multiple of {num_blocks}"
            )
        if self.remasking not in REMASKING:
            raise DifusiError(f"unknown remasking {self.remasking!r}; use one of {', '.join(REMASKING)}")
        if not 0 < self.top_p <= 1 or self.top_k < 0:
            raise DifusiError(
                f"top_p ({self.top_p}) must be in (0, 1] and top_k ({self.top_k}) not negative (0: all tokens)"
            )
        if self.temperature < 0 or self.cfg_scale < 0:
            raise DifusiError(
                f"temperature ({self.temperature}) and cfg_scale ({self.cfg_scale}) must not be negative"
            )


DEFAULTS = SamplerSettings()


def model_device(model) -> torch.device:
    return next(model.parameters()).device


@contextmanager
def eval_mode(model) -> Iterator[None]:
    """Run with dropout off (LoRA dropout included), restoring the model's train/eval mode afterwards.

    A model already in eval mode is left alone: setting every module's mode twice cost 0.5 ms a
    call, 5% of a short block-diffusion answer on a small model."""
    if not any(module.training for module in model.modules()):
        yield
        return
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def transfer_schedule(masked_count: torch.Tensor, steps: int) -> torch.Tensor:
    """Tokens to commit at each step, [B, steps]: masked_count // steps, plus one on the first
    masked_count % steps steps (the official schedule), per row."""
    base, remainder = masked_count // steps, masked_count % steps
    step = torch.arange(steps, device=masked_count.device)
    return base[:, None] + (step[None, :] < remainder[:, None]).long()


def top_p_top_k(logits: torch.Tensor, top_p: float = 1.0, top_k: int = 0) -> torch.Tensor:
    """`logits` [..., V] with -inf outside the `top_k` likeliest tokens (0: no limit) and outside the
    smallest set of likeliest tokens whose probability reaches `top_p` (nucleus sampling); the
    likeliest token always stays."""
    if 0 < top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, -torch.inf)
    if top_p < 1:
        ordered, order = logits.sort(dim=-1, descending=True)
        probs = ordered.float().softmax(dim=-1)
        beyond = probs.cumsum(dim=-1) - probs >= top_p  # the set before it already reaches top_p
        logits = logits.masked_fill(beyond.scatter(-1, order, beyond), -torch.inf)
    return logits


def gumbel_argmax(
    logits: torch.Tensor,
    temperature: float,
    generator: torch.Generator | None,
    top_p: float = 1.0,
    top_k: int = 0,
) -> torch.Tensor:
    """Official sampling: argmax of exp(logits) / (-log u)^temperature in float64 (Gumbel-max with
    temperature), over the `top_p_top_k` tokens; plain argmax at temperature 0."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = top_p_top_k(logits, top_p, top_k)
    # float64: in low precision the Gumbel perturbation rounds away and sampling degrades.
    u = uniform(logits.shape, generator, logits.device, torch.float64)
    return (logits.double().exp() / (-torch.log(u)) ** temperature).argmax(dim=-1)


def check_generate_args(
    model, prompt: torch.Tensor, attention_mask: torch.Tensor | None, settings: SamplerSettings, mask_id: int
) -> None:
    """Raise DifusiError naming the problem and the fix for any argument `generate` cannot honour."""
    if prompt.dim() != 2:
        raise DifusiError(
            f"prompt must be a [batch, length] tensor of token ids, got shape {tuple(prompt.shape)}"
        )
    if prompt.shape[0] == 0 or prompt.shape[1] == 0:
        raise DifusiError("prompt is empty; give at least one token (e.g. the chat template's BOS)")
    settings.check()
    gen_length, max_length = settings.gen_length, model.config.max_sequence_length
    if prompt.shape[1] + gen_length > max_length:
        raise DifusiError(
            f"prompt ({prompt.shape[1]} tokens) plus gen_length ({gen_length}) exceeds the model's "
            f"max_sequence_length {max_length}; shorten the prompt or lower gen_length"
        )
    if attention_mask is None:
        return
    if attention_mask.shape != prompt.shape:
        raise DifusiError(
            f"attention_mask shape {tuple(attention_mask.shape)} differs from the prompt's {tuple(prompt.shape)}"
        )
    padding = attention_mask == 0
    if model.config.pad_token_id == mask_id or bool((prompt[padding] == mask_id).any()):
        raise DifusiError(
            f"the padding uses the mask id {mask_id}, so padded positions would be filled as masks; "
            "pad with another token (LLaDA pads with EOS)"
        )
    empty_rows = padding.all(dim=1).nonzero().flatten().tolist()
    if empty_rows:
        raise DifusiError(f"prompt row {empty_rows[0]} is all padding; give every row at least one token")


def _guided_logits(
    model, x, attention_mask, prompt_index, columns, cfg_scale, mask_id, kv_cache=None, start=0, end=None
) -> torch.Tensor:
    """Logits [B, C, V] at `columns` (positions in x) from a pass over x[:, start:end]; with CFG,
    un + (s + 1)(cond - un), where the unconditional pass sees the prompt replaced by masks. Both
    passes run as one batch, exactly as the official code (and share one cache of 2B rows).

    With `kv_cache`, the pass writes the K/V of [start, end) and attends to the cached rest.
    """
    inputs = x[:, start:end]
    if cfg_scale > 0:
        unconditional = torch.where(prompt_index, mask_id, x)[:, start:end]
        inputs = torch.cat([inputs, unconditional])
        if attention_mask is not None:
            attention_mask = torch.cat([attention_mask, attention_mask])
    logits = model(
        inputs,
        attention_mask=attention_mask,
        kv_cache=kv_cache,
        cache_start=start,
        logits_positions=columns - start,
    ).logits
    return classifier_free_guidance(logits, cfg_scale)


def classifier_free_guidance(logits: torch.Tensor, cfg_scale: float) -> torch.Tensor:
    """Official CFG mixing of a batch [2B, ...] holding the conditional rows, then the unconditional
    ones: un + (s + 1)(cond - un), [B, ...]; the logits unchanged when `cfg_scale` is 0."""
    if cfg_scale == 0:
        return logits
    cond, un = logits.chunk(2)
    return un + (cfg_scale + 1) * (cond - un)


@torch.inference_mode()
def generate(
    model,
    prompt: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    steps: int = DEFAULTS.steps,
    gen_length: int = DEFAULTS.gen_length,
    block_length: int = DEFAULTS.block_length,
    temperature: float = DEFAULTS.temperature,
    cfg_scale: float = DEFAULTS.cfg_scale,
    remasking: Remasking = DEFAULTS.remasking,
    mask_id: int | None = None,
    forbid_eos: bool = False,
    stop_tokens_last: bool = False,
    eos_id: int | None = None,
    eot_id: int | None = None,
    on_step: StepHook | None = None,
    generator: torch.Generator | None = None,
    cache: Cache = DEFAULTS.cache,
    threshold: float | None = DEFAULTS.threshold,
    early_stop: bool = DEFAULTS.early_stop,
    top_p: float = DEFAULTS.top_p,
    top_k: int = DEFAULTS.top_k,
) -> torch.Tensor:
    """Generate `gen_length` tokens after `prompt` [B, L] (left padded, with `attention_mask`) by
    masked diffusion; returns the whole sequence [B, L + gen_length]. The sampler settings (steps
    through threshold) default to `SamplerSettings()`'s; `**asdict(settings)` passes a whole one.

    The answer area starts fully masked and is filled block by block (`gen_length / block_length`
    blocks, `steps / num_blocks` steps each; semi-autoregressive when block_length < gen_length).
    Each step predicts every masked token (float64 Gumbel-max at `temperature` over the `top_p` /
    `top_k` likeliest tokens, argmax at 0; with
    `cfg_scale` > 0 classifier-free guidance against the prompt-masked input), then commits the
    scheduled number of masked positions of the current block (masked count // steps, the remainder
    on the first steps) with the highest confidence: the chosen token's softmax probability
    ("low_confidence") or a uniform draw ("random"). Positions right of the block are never committed.

    `forbid_eos` never samples EOS (the official `logits_eos_inf`). `stop_tokens_last` gives positions
    that predict EOS or end of turn (`eot_id`, required) zero confidence, so they are committed after
    every other position of the block. It is the official `confidence_eos_eot_inf` done right: the
    official chained assignment `logits_with_noise[..., eos] = logits[..., eot] = -inf` reaches EOS
    only at temperature 0 (where the noisy logits are the logits themselves); at temperature > 0 it
    suppresses only EoT. Here both are suppressed at every temperature. `eos_id` and `mask_id`
    default to the model config's.

    `cache` ("prefix" or "dual") and `threshold` are the Fast-dLLM accelerations (module docstring).
    With either, only the current block's masked positions are committable, and with `threshold`
    a block takes as many steps as it needs (at most block_length; `steps` is then unused). With
    both off the result is the exact sampler's.

    `early_stop` ends sampling once every row holds a committed EOS or `eot_id` with no mask before
    it, and fills the masks left after it with EOS: the decoded answers (cut at that token) are the
    ones a full run gives, without the steps that would only fill the padding.

    `on_step(step, x)` is called after every step (numbered from 0 over all blocks) with a copy of the
    current [B, L + gen_length] state. Random draws use `generator` (the global RNG when None).

    Long on purpose: one denoising loop, shaped as the official algorithm's (difusi.diffusion.reference),
    so the two read side by side; its pieces (schedule, draw, guidance, commit) are the functions above.
    """
    config = model.config
    mask_id = config.mask_token_id if mask_id is None else mask_id
    eos_id = config.eos_token_id if eos_id is None else eos_id
    settings = SamplerSettings(
        steps, gen_length, block_length, temperature, cfg_scale, remasking, cache, threshold, early_stop,
        top_p, top_k,
    )  # fmt: skip
    check_generate_args(model, prompt, attention_mask, settings, mask_id)
    if stop_tokens_last and eot_id is None:
        raise DifusiError("stop_tokens_last needs eot_id, the tokenizer's <|eot_id|> id")
    device = model_device(model)
    B, L = prompt.shape
    x = torch.full((B, L + gen_length), mask_id, dtype=torch.long, device=device)
    x[:, :L] = prompt
    if attention_mask is not None:
        attention_mask = torch.cat([attention_mask, attention_mask.new_ones(B, gen_length)], 1).to(device)
    # As in the official code, every non-mask token (padding included) is hidden from the CFG pass.
    prompt_index = x != mask_id
    positions = torch.arange(x.shape[1], device=device)
    stop_ids = torch.tensor([eos_id, eot_id], device=device) if stop_tokens_last else None
    end_ids = torch.tensor([eos_id] if eot_id is None else [eos_id, eot_id], device=device)
    num_blocks = gen_length // block_length
    steps_per_block = steps // num_blocks

    exact = cache == "none" and threshold is None
    step = 0
    with eval_mode(model):
        for block in range(num_blocks):
            block_start, block_end = L + block * block_length, L + (block + 1) * block_length
            # Committable: masked and left of the block's end (prompt masks included, as officially);
            # the fast modes keep to the block itself.
            window = positions < block_end if exact else (positions >= block_start) & (positions < block_end)
            schedule = transfer_schedule((x[:, block_start:block_end] == mask_id).sum(1), steps_per_block)
            kv_cache = None if cache == "none" else KVCache(config.n_layers)
            for i in range(block_length if threshold is not None else steps_per_block):
                committable = (x == mask_id) & window
                # A fast mode stops when the block is full; the exact sampler runs every step, as
                # officially (its random draws continue even when nothing is left to commit).
                if not exact and not committable.any():
                    break
                columns = committable.any(dim=0).nonzero().flatten()
                start, end = 0, None  # a full pass (with a cache: a block's first, which fills it)
                if kv_cache is not None and i > 0:
                    # Recompute [block_start, T) (prefix) or only the block (dual); the rest is cached.
                    start, end = block_start, None if cache == "prefix" else block_end
                logits = _guided_logits(
                    model, x, attention_mask, prompt_index, columns, cfg_scale, mask_id, kv_cache, start, end
                )
                if forbid_eos:
                    logits[..., eos_id] = -torch.inf
                x0 = gumbel_argmax(logits, temperature, generator, top_p, top_k)  # (B, C)
                if remasking == "low_confidence":
                    if stop_tokens_last:
                        logits[..., stop_ids] = -torch.inf
                    chosen = F.softmax(logits, dim=-1).gather(-1, x0[..., None]).squeeze(-1)
                else:
                    # Drawn for the whole sequence, as officially, so a seeded run matches the reference.
                    chosen = uniform(x.shape, generator, device)[:, columns]
                    if stop_tokens_last:
                        chosen = chosen.masked_fill(torch.isin(x0, stop_ids), 0.0)
                if threshold is None:
                    x = _commit(x, x0, chosen, committable, columns, schedule[:, i])
                else:
                    x = _commit_confident(x, x0, chosen, committable, columns, threshold)
                if on_step is not None:
                    on_step(step, x.clone())
                step += 1
                if early_stop and answers_complete(x[:, L:], mask_id, end_ids):
                    return torch.where(x == mask_id, eos_id, x)
    return x


def answers_complete(answer: torch.Tensor, mask_id: int, end_ids: torch.Tensor) -> bool:
    """True when every row of `answer` [B, G] holds an end token with no mask before its first one."""
    return bool(ended_rows(answer, mask_id, end_ids).all())


def ended_rows(answer: torch.Tensor, mask_id: int, end_ids: torch.Tensor) -> torch.Tensor:
    """[B] bool: the rows of `answer` [B, G] that hold an end token with no mask before its first one
    (their decoded answer is final)."""
    positions = torch.arange(answer.shape[1], device=answer.device)
    beyond = answer.shape[1]
    first_end = torch.where(torch.isin(answer, end_ids), positions, beyond).min(dim=1).values
    first_mask = torch.where(answer == mask_id, positions, beyond).min(dim=1).values
    return (first_end < beyond) & (first_mask > first_end)


def _commit(x, x0, chosen, committable, columns, counts) -> torch.Tensor:
    """Write x0 at the `counts[b]` most confident committable positions of each row b.

    The confidence row spans the whole sequence (-inf where nothing can be committed) and goes
    through one batched topk. Every block starts fully masked, so all rows have the same count and
    each row gets exactly what the official per-row topk picks, ties included.
    """
    confidence = torch.full(x.shape, -torch.inf, dtype=chosen.dtype, device=x.device)
    confidence[:, columns] = torch.where(committable[:, columns], chosen, -torch.inf)
    k = int(counts.max())
    if k == 0:
        return x
    top = confidence.topk(k, dim=1).indices
    # Rows scheduled for fewer than k tokens keep only their first counts[b] picks.
    take = torch.arange(k, device=x.device)[None, :] < counts[:, None]
    commit = torch.zeros_like(committable).scatter_(1, top, take)
    proposal = x.clone()
    proposal[:, columns] = x0
    return torch.where(commit, proposal, x)


def _commit_confident(x, x0, chosen, committable, columns, threshold: float) -> torch.Tensor:
    """Write x0 at every committable position whose confidence reaches `threshold`, and at each
    row's most confident committable position (so every row with masks left commits at least one)."""
    confidence = torch.where(committable[:, columns], chosen, -torch.inf)
    best = confidence.argmax(dim=1, keepdim=True)
    commit = (confidence >= threshold) | torch.zeros_like(confidence, dtype=torch.bool).scatter_(
        1, best, True
    )
    commit &= committable[:, columns]
    x = x.clone()
    x[:, columns] = torch.where(commit, x0, x[:, columns])
    return x
