from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from difusi.diffusion.losses import (
    forward_process,
    pretraining_loss,
    pretraining_loss_from_logits,
    prompt_mask,
    sft_loss,
    sft_loss_from_logits,
)

MASK_ID, VOCAB = 9, 10
LN2 = math.log(2)
# Each position's softmax is (1/2, 1/4, 1/8, 1/8): cross-entropy ln 2, ln 4, ln 8, ln 8 for targets 0..3.
LOGITS = torch.tensor([0.5, 0.25, 0.125, 0.125]).log().expand(2, 3, 4)
TARGETS = torch.tensor([[0, 1, 2], [1, 1, 3]])
MASKED = torch.tensor([[True, False, True], [False, True, True]])
P_MASK = torch.tensor([[0.5] * 3, [0.25] * 3])
# Per row, CE / p_mask summed over masked tokens: (ln 2 + ln 8) / 0.5 = 8 ln 2; (ln 4 + ln 8) / 0.25 = 20 ln 2.
ROW_SUMS = (8 * LN2, 20 * LN2)


class RecordingModel(nn.Module):
    """Fixed logits per input token; records every input it sees."""

    def __init__(self):
        super().__init__()
        self.table = nn.Parameter(torch.randn(VOCAB, VOCAB, generator=torch.Generator().manual_seed(0)))
        self.inputs: list[torch.Tensor] = []

    def forward(self, input_ids, logits_positions=None):
        self.inputs.append(input_ids.clone())
        logits = self.table[input_ids]
        return SimpleNamespace(logits=logits if logits_positions is None else logits[logits_positions])


def test_pretraining_loss_is_the_weighted_ce_over_batch_times_length():
    loss = pretraining_loss_from_logits(LOGITS, TARGETS, MASKED, P_MASK)
    assert loss.item() == pytest.approx(sum(ROW_SUMS) / 6)


def test_sft_loss_normalises_each_row_by_its_answer_length():
    prompt_lengths = torch.tensor([1, 0])  # answers of 2 and 3 tokens
    loss = sft_loss_from_logits(LOGITS, TARGETS, MASKED, P_MASK, prompt_lengths)
    assert loss.item() == pytest.approx((ROW_SUMS[0] / 2 + ROW_SUMS[1] / 3) / 2)
    per_token = sft_loss_from_logits(LOGITS, TARGETS, MASKED, P_MASK, prompt_lengths, normalization="token")
    assert per_token.item() == pytest.approx(sum(ROW_SUMS) / 5)


def test_eos_padding_counts_in_the_answer_length():
    # Prompt of 2 tokens, answer of 1 token then 2 EOS pads (id 3): the answer length is 3, not 1.
    logits = LOGITS[0, 0].expand(1, 5, 4)
    targets = torch.tensor([[0, 1, 2, 3, 3]])
    masked = torch.tensor([[False, False, True, False, True]])
    loss = sft_loss_from_logits(logits, targets, masked, torch.full((1, 5), 0.5), torch.tensor([2]))
    assert loss.item() == pytest.approx((math.log(8) + math.log(8)) / 0.5 / 3)


def test_prompt_is_never_masked_in_sft():
    ids = torch.tensor([[1, 2, 3, 4, 5, 6], [6, 5, 4, 3, 2, 1]])
    prompt_lengths = torch.tensor([2, 4])
    eligible = ~prompt_mask(prompt_lengths, 6)
    # With p_mask = 1 every eligible token is masked and nothing else.
    noisy, masked, _ = forward_process(ids, MASK_ID, torch.Generator(), eligible=eligible, eps=1.0)
    assert torch.equal(masked, eligible)
    assert torch.equal(noisy, torch.where(eligible, MASK_ID, ids))
    model = RecordingModel()
    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        sft_loss(model, ids, prompt_lengths, MASK_ID, generator)
    seen = torch.stack(model.inputs)
    prompt = prompt_mask(prompt_lengths, 6)
    assert torch.equal(seen[:, prompt], ids[prompt].expand(20, -1))
    assert (seen[:, ~prompt] == MASK_ID).any()


def test_losses_are_reproducible_with_a_generator():
    ids = torch.randint(0, MASK_ID, (3, 8), generator=torch.Generator().manual_seed(1))
    first = forward_process(ids, MASK_ID, torch.Generator().manual_seed(5))
    again = forward_process(ids, MASK_ID, torch.Generator().manual_seed(5))
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    model = RecordingModel()

    def loss(seed):
        return pretraining_loss(model, ids, MASK_ID, torch.Generator().manual_seed(seed)).item()

    assert loss(5) == loss(5) and loss(5) != loss(6)
    lengths = torch.tensor([3, 5, 2])
    sft = [sft_loss(model, ids, lengths, MASK_ID, torch.Generator().manual_seed(s)).item() for s in (5, 5, 6)]
    assert sft[0] == sft[1] != sft[2]


def test_random_length_cut_shortens_the_batch():
    ids = torch.randint(0, MASK_ID, (2, 16), generator=torch.Generator().manual_seed(1))
    model = RecordingModel()
    generator = torch.Generator().manual_seed(0)
    for _ in range(10):
        pretraining_loss(model, ids, MASK_ID, generator, random_length_prob=1.0)
    lengths = [x.shape[1] for x in model.inputs]
    assert all(1 <= length <= 16 for length in lengths) and min(lengths) < 16
    pretraining_loss(model, ids, MASK_ID, generator, random_length_prob=0.0)
    assert model.inputs[-1].shape == (2, 16)


def test_losses_on_a_real_model_equal_the_losses_from_its_full_logits(tiny_model):
    # The losses ask the model for logits at the masked positions only; the value must not change.
    model, mask_id = tiny_model, tiny_model.config.mask_token_id
    ids = torch.randint(0, mask_id, (3, 12), generator=torch.Generator().manual_seed(2))
    lengths = torch.tensor([4, 7, 2])
    noisy, masked, p_mask = forward_process(ids, mask_id, torch.Generator().manual_seed(3))
    full = model(noisy).logits
    expected = pretraining_loss_from_logits(full, ids, masked, p_mask)
    got = pretraining_loss(model, ids, mask_id, torch.Generator().manual_seed(3), random_length_prob=0.0)
    torch.testing.assert_close(got, expected)
    eligible = ~prompt_mask(lengths, 12)
    noisy, masked, p_mask = forward_process(ids, mask_id, torch.Generator().manual_seed(3), eligible=eligible)
    expected = sft_loss_from_logits(model(noisy).logits, ids, masked, p_mask, lengths)
    torch.testing.assert_close(
        sft_loss(model, ids, lengths, mask_id, torch.Generator().manual_seed(3)), expected
    )
