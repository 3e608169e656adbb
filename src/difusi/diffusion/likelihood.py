"""Monte Carlo likelihood bounds of an answer given its prompt: the official LLaDA estimator.

Each draw masks exactly k of the L answer tokens (prompt never masked), with k stratified over a group
of draws: k_0 ~ U{1..L}, then k_i = round(k_0 + i L / n) wrapped into [1, L]. A draw scores the
cross-entropy of the masked tokens weighted by L / k; the mean over draws is an unbiased estimate of
the negative ELBO, an upper bound on -log p(answer | prompt).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import NamedTuple

import torch
import torch.nn.functional as F

from difusi.diffusion.block import block_answer_nelbo
from difusi.diffusion.losses import uniform
from difusi.diffusion.sampler import classifier_free_guidance, eval_mode, model_device
from difusi.errors import DifusiError
from difusi.model.configuration_llada import padding_id


def stratified_mask_counts(answer_length: int, n: int, generator: torch.Generator | None) -> torch.Tensor:
    """[n] numbers of answer tokens to mask, spread evenly over [1, answer_length] from a random start."""
    gen_device = generator.device if generator is not None else "cpu"
    start = int(torch.randint(1, answer_length + 1, (), generator=generator, device=gen_device))
    counts = torch.round(torch.linspace(float(start), start + (n - 1) * (answer_length / n), steps=n)).long()
    return (counts - 1) % answer_length + 1


def draw_masks(
    prompt_length: int, answer_length: int, n: int, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """n stratified draws: masked [n, prompt_length + answer_length] bool (exactly k answer tokens,
    uniformly placed) and the weight answer_length / k of each draw [n]."""
    counts = stratified_mask_counts(answer_length, n, generator)
    # A token is masked when its rank in a random permutation is below k: a uniform k-subset.
    ranks = uniform((n, answer_length), generator, torch.device("cpu")).argsort(dim=1).argsort(dim=1)
    masked = torch.cat([torch.zeros(n, prompt_length, dtype=torch.bool), ranks < counts[:, None]], dim=1)
    return masked, answer_length / counts


def masked_nll(
    model,
    targets: torch.Tensor,
    masked: torch.Tensor,
    weights: torch.Tensor,
    prompt_lengths: torch.Tensor,
    mask_id: int,
    attention_mask: torch.Tensor | None = None,
    cfg_scale: float = 0.0,
) -> torch.Tensor:
    """Per row of `targets` [N, T]: the summed cross-entropy of its masked tokens times its weight, [N].

    With `cfg_scale` > 0 the logits are un + (s + 1)(cond - un), the unconditional input having the
    prompt masked too (official CFG).
    """
    noisy = torch.where(masked, mask_id, targets)
    if cfg_scale > 0:
        prompt = torch.arange(targets.shape[1], device=targets.device)[None, :] < prompt_lengths[:, None]
        both = torch.cat([noisy, torch.where(prompt, mask_id, noisy)])
        both_mask = None if attention_mask is None else torch.cat([attention_mask, attention_mask])
        logits = classifier_free_guidance(model(both, attention_mask=both_mask).logits, cfg_scale)
    else:
        logits = model(noisy, attention_mask=attention_mask).logits
    # float32 cross-entropy (the official code scores in the model's dtype, bf16 for LLaDA-8B).
    ce = F.cross_entropy(logits[masked].float(), targets[masked], reduction="none")
    rows = masked.nonzero()[:, 0]
    return torch.zeros(targets.shape[0], device=ce.device).index_add_(0, rows, ce) * weights.to(ce.device)


def _check_draws(mc_num: int, batch_size: int) -> None:
    if mc_num < 1 or batch_size < 1:
        raise DifusiError(f"mc_num ({mc_num}) and batch_size ({batch_size}) must be positive")


@torch.inference_mode()
def log_likelihood(
    model,
    prompt: torch.Tensor | Sequence[int],
    answer: torch.Tensor | Sequence[int],
    mc_num: int = 128,
    batch_size: int = 16,
    cfg_scale: float = 0.0,
    mask_id: int | None = None,
    generator: torch.Generator | None = None,
) -> float:
    """Monte Carlo estimate of log p(answer | prompt) (a lower bound: minus the negative ELBO), as the
    official `get_log_likelihood()`: `mc_num` draws in batches of `batch_size`, k stratified within
    each batch. `prompt` and `answer` are 1-D token ids; mask_id defaults to the model config's.
    A block-diffusion model's estimate is minus its block negative ELBO (`block_answer_nelbo`)."""
    _check_draws(mc_num, batch_size)
    if mc_num % batch_size:
        raise DifusiError(f"mc_num {mc_num} is not a multiple of batch_size {batch_size}; use a multiple")
    mask_id = model.config.mask_token_id if mask_id is None else mask_id
    prompt, answer = torch.as_tensor(prompt, dtype=torch.long), torch.as_tensor(answer, dtype=torch.long)
    if answer.dim() != 1 or prompt.dim() != 1 or answer.numel() == 0:
        raise DifusiError("prompt and answer must be 1-D token ids and the answer must not be empty")
    if model.config.block_size:
        example = {"input_ids": torch.cat([prompt, answer]).tolist(), "prompt_length": prompt.numel()}
        with eval_mode(model):
            return -block_answer_nelbo(model, example, mc_num, generator)[0]
    device = model_device(model)
    targets = torch.cat([prompt, answer]).to(device).expand(batch_size, -1)
    prompt_lengths = torch.full((batch_size,), prompt.numel(), device=device)
    total = 0.0
    with eval_mode(model):
        for _ in range(mc_num // batch_size):
            masked, weights = draw_masks(prompt.numel(), answer.numel(), batch_size, generator)
            nll = masked_nll(
                model, targets, masked.to(device), weights, prompt_lengths, mask_id, cfg_scale=cfg_scale
            )
            total += float(nll.sum())
    return -total / mc_num


class ExampleElbo(NamedTuple):
    """One example's negative ELBO in nats (summed over its answer) and its answer length in tokens."""

    nelbo: float
    answer_tokens: int


@dataclass(frozen=True)
class ElboResult:
    """Negative ELBO of a dataset: per answer token (a bound on log-perplexity) and per example."""

    nelbo_per_token: float
    per_example: list[ExampleElbo]

    @property
    def perplexity_bound(self) -> float:
        """exp(nelbo_per_token): an upper bound on the answers' perplexity."""
        return math.exp(self.nelbo_per_token)

    def __float__(self) -> float:
        return self.nelbo_per_token


Draw = tuple[int, torch.Tensor, torch.Tensor, float]  # (example index, input ids, masked, weight)


def _draws(examples, prompt_lengths: list[int], order: list[int], mc_num: int, generator) -> Iterator[Draw]:
    """Every example's `mc_num` stratified draws, example after example in `order`."""
    for index in order:
        ids = torch.as_tensor(examples[index]["input_ids"], dtype=torch.long)
        masked, weights = draw_masks(
            prompt_lengths[index], ids.numel() - prompt_lengths[index], mc_num, generator
        )
        for draw in range(mc_num):
            yield index, ids, masked[draw], float(weights[draw])


def _score_draws(model, draws: list[Draw], prompt_lengths, pad_id, mask_id, cfg_scale) -> torch.Tensor:
    """masked_nll of a batch of draws, right-padded to the longest with the padding hidden."""
    width = max(ids.numel() for _, ids, _, _ in draws)
    targets = torch.full((len(draws), width), pad_id, dtype=torch.long)
    masked = torch.zeros((len(draws), width), dtype=torch.bool)
    attention_mask = torch.zeros((len(draws), width), dtype=torch.long)
    for row, (_, ids, row_masked, _) in enumerate(draws):
        targets[row, : ids.numel()] = ids
        masked[row, : ids.numel()] = row_masked
        attention_mask[row, : ids.numel()] = 1
    device = model_device(model)
    return masked_nll(
        model,
        targets.to(device),
        masked.to(device),
        torch.tensor([weight for *_, weight in draws]),
        torch.tensor([prompt_lengths[index] for index, *_ in draws], device=device),
        mask_id,
        None if bool(attention_mask.all()) else attention_mask.to(device),
        cfg_scale,
    )


@torch.inference_mode()
def dataset_elbo(
    model,
    examples: Sequence[Mapping],
    mc_num: int = 128,
    batch_size: int = 16,
    generator: torch.Generator | None = None,
    *,
    cfg_scale: float = 0.0,
    mask_id: int | None = None,
) -> ElboResult:
    """Negative ELBO of SFT examples (mappings with "input_ids" and "prompt_length", e.g. from
    `difusi.data.chat_format.build_sft_example`); the answer is everything after the prompt.

    Each example gets `mc_num` draws with k stratified over them; draws of several examples share a
    forward batch of `batch_size` rows (longest examples first, right padding hidden by the attention
    mask, so an example's logits do not depend on its batch mates). The per-token figure is the summed
    negative ELBO over the summed answer lengths. The same `generator` state gives the same result.
    """
    _check_draws(mc_num, batch_size)
    if not examples:
        raise DifusiError("no examples to score; pass at least one SFT example")
    config = model.config
    mask_id = config.mask_token_id if mask_id is None else mask_id
    pad_id = padding_id(config)
    lengths = [len(example["input_ids"]) for example in examples]
    prompt_lengths = [int(example["prompt_length"]) for example in examples]
    for number, (length, prompt_length) in enumerate(zip(lengths, prompt_lengths, strict=True)):
        if not 0 <= prompt_length < length:
            raise DifusiError(
                f"example {number} has prompt_length {prompt_length} but {length} tokens; it needs an answer"
            )
    order = sorted(range(len(examples)), key=lambda index: -lengths[index])
    draws = _draws(examples, prompt_lengths, order, mc_num, generator)
    nelbo = torch.zeros(len(examples), dtype=torch.float64)
    with eval_mode(model):
        while batch := list(islice(draws, batch_size)):
            nll = _score_draws(model, batch, prompt_lengths, pad_id, mask_id, cfg_scale)
            nelbo.index_add_(0, torch.tensor([index for index, *_ in batch]), nll.double().cpu())
    nelbo /= mc_num
    answer_tokens = [
        length - prompt_length for length, prompt_length in zip(lengths, prompt_lengths, strict=True)
    ]
    per_example = [
        ExampleElbo(float(value), tokens) for value, tokens in zip(nelbo, answer_tokens, strict=True)
    ]
    return ElboResult(float(nelbo.sum()) / sum(answer_tokens), per_example)
