from __future__ import annotations

import statistics

import pytest
import torch

from difusi import log_likelihood
from difusi.diffusion.likelihood import dataset_elbo, draw_masks, stratified_mask_counts
from difusi.errors import DifusiError

MASK_ID = 99  # the conftest models' mask id
PROMPT = torch.tensor([5, 17, 42, 8, 63, 21])
ANSWER = torch.tensor([30, 31, 77, 12, 50, 9, 44, 70])


def exact_log_probability(model, prompt: torch.Tensor, token: int) -> float:
    """log p(token | prompt) of a one-token answer: log-softmax at the single masked position."""
    with torch.no_grad():
        logits = model(torch.cat([prompt, torch.tensor([MASK_ID])])[None]).logits[0, -1]
    return float(torch.log_softmax(logits.double(), dim=-1)[token])


def test_stratified_counts_cover_one_to_answer_length():
    generator = torch.Generator().manual_seed(0)
    counts = stratified_mask_counts(8, 8, generator)
    assert sorted(counts.tolist()) == list(range(1, 9))  # n = L: every k once
    counts = stratified_mask_counts(8, 4, generator)
    assert counts.min() >= 1 and counts.max() <= 8
    # Evenly spread: consecutive draws are L / n = 2 apart, modulo L.
    assert ((counts.roll(-1) - counts) % 8).tolist()[:3] == [2, 2, 2]


def test_draws_mask_exactly_k_answer_tokens_and_never_the_prompt():
    masked, weights = draw_masks(6, 8, 16, torch.Generator().manual_seed(0))
    assert masked.shape == (16, 14)
    assert not masked[:, :6].any()
    counts = masked.sum(dim=1)
    assert torch.allclose(weights, 8 / counts)


def test_one_token_answer_estimate_equals_the_exact_log_probability(model):
    estimate = log_likelihood(model, PROMPT, [77], mc_num=32, batch_size=16, generator=torch.Generator())
    assert estimate == pytest.approx(exact_log_probability(model, PROMPT, 77), rel=1e-5)


def test_spread_shrinks_like_one_over_sqrt_draws(model):
    def spread(mc_num: int) -> float:
        estimates = [
            log_likelihood(model, PROMPT, ANSWER, mc_num, 16, generator=torch.Generator().manual_seed(seed))
            for seed in range(40)
        ]
        return statistics.stdev(estimates)

    # Four times the draws: half the spread (independent batches of 16 stratified draws).
    assert spread(64) / spread(16) == pytest.approx(0.5, abs=0.15)


def test_log_likelihood_is_reproducible_with_a_generator(model):
    def estimate(seed):
        return log_likelihood(model, PROMPT, ANSWER, 32, 16, generator=torch.Generator().manual_seed(seed))

    assert estimate(3) == estimate(3)
    assert estimate(3) != estimate(4)


def test_log_likelihood_with_cfg_runs(model):
    estimate = log_likelihood(model, PROMPT, [77], 16, 16, cfg_scale=1.0, generator=torch.Generator())
    assert estimate < 0 and estimate != pytest.approx(exact_log_probability(model, PROMPT, 77), rel=1e-3)


def test_dataset_elbo_of_one_token_answers_is_exact_whatever_the_batch(model):
    examples = [
        {"input_ids": [*PROMPT.tolist(), 77], "prompt_length": 6},
        {"input_ids": [*PROMPT[:3].tolist(), 12], "prompt_length": 3},
        {"input_ids": [*PROMPT.tolist(), 40, 41, 42], "prompt_length": 6},
    ]
    result = dataset_elbo(model, examples, mc_num=4, batch_size=3, generator=torch.Generator())
    # The short example shares a batch with the longer ones (right padding hidden by the mask).
    assert result.per_example[0].nelbo == pytest.approx(-exact_log_probability(model, PROMPT, 77), rel=1e-5)
    assert result.per_example[1].nelbo == pytest.approx(
        -exact_log_probability(model, PROMPT[:3], 12), rel=1e-5
    )
    assert [example.answer_tokens for example in result.per_example] == [1, 1, 3]
    assert result.nelbo_per_token == pytest.approx(sum(e.nelbo for e in result.per_example) / 5)
    assert float(result) == result.nelbo_per_token
    assert result.perplexity_bound == pytest.approx(torch.tensor(result.nelbo_per_token).exp().item())


def test_dataset_elbo_is_reproducible_with_a_generator(model):
    examples = [{"input_ids": [*PROMPT.tolist(), *ANSWER.tolist()], "prompt_length": 6}] * 2
    first = dataset_elbo(model, examples, 8, 4, torch.Generator().manual_seed(0))
    assert first == dataset_elbo(model, examples, 8, 4, torch.Generator().manual_seed(0))
    assert first != dataset_elbo(model, examples, 8, 4, torch.Generator().manual_seed(1))


def test_bad_likelihood_arguments_raise_clear_errors(model):
    with pytest.raises(DifusiError, match="mc_num 20 is not a multiple of batch_size 16; use a multiple"):
        log_likelihood(model, PROMPT, ANSWER, mc_num=20)
    with pytest.raises(DifusiError, match="the answer must not be empty"):
        log_likelihood(model, PROMPT, [])
    with pytest.raises(DifusiError, match="example 0 has prompt_length 6 but 6 tokens; it needs an answer"):
        dataset_elbo(model, [{"input_ids": PROMPT.tolist(), "prompt_length": 6}])
    with pytest.raises(DifusiError, match="no examples to score"):
        dataset_elbo(model, [])
