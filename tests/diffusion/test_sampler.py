from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from difusi import generate
from difusi.diffusion.reference import reference_generate
from difusi.diffusion.sampler import transfer_schedule
from difusi.errors import DifusiError
from difusi.model import LLaDAConfig

MASK_ID, EOS_ID = 99, 1  # the conftest models' ids

EXACT_CASES = [
    dict(steps=16, gen_length=16, block_length=16),
    dict(steps=12, gen_length=24, block_length=8),
    dict(steps=24, gen_length=24, block_length=8, cfg_scale=1.5),
    dict(steps=8, gen_length=16, block_length=4, cfg_scale=0.5),
    dict(steps=12, gen_length=24, block_length=8, remasking="random"),
    dict(steps=16, gen_length=16, block_length=8, remasking="random", cfg_scale=1.0),
]


@pytest.mark.parametrize("options", EXACT_CASES)
@pytest.mark.parametrize("which", ["model", "raw_model"])
def test_tokens_identical_to_official_algorithm(request, which, options, padded_batch):
    model = request.getfixturevalue(which)
    prompt, attention_mask = padded_batch
    # Random remasking draws from the generator in the same order as the official code.
    ours = generate(model, prompt, attention_mask, generator=torch.Generator().manual_seed(3), **options)
    official = reference_generate(
        model, prompt, attention_mask, generator=torch.Generator().manual_seed(3), **options
    )
    assert ours.shape == (3, 7 + options["gen_length"])
    assert torch.equal(ours, official)


def test_transfer_schedule_spreads_the_remainder_over_the_first_steps():
    schedule = transfer_schedule(torch.tensor([8, 7, 2]), 3)
    assert schedule.tolist() == [[3, 3, 2], [3, 2, 2], [1, 1, 0]]


def test_fills_every_mask_and_keeps_the_prompt(model, padded_batch):
    prompt, attention_mask = padded_batch
    out = generate(model, prompt, attention_mask, steps=16, gen_length=32, block_length=8)
    assert not (out == MASK_ID).any()
    assert torch.equal(out[:, :7], prompt)


def test_commits_the_schedule_inside_the_current_block_only(model, padded_batch):
    prompt, attention_mask = padded_batch
    states = []
    generate(
        model,
        prompt,
        attention_mask,
        steps=9,
        gen_length=24,
        block_length=8,
        on_step=lambda step, x: states.append((step, x)),
    )
    assert [step for step, _ in states] == list(range(9))
    previous = torch.cat([prompt, torch.full((3, 24), MASK_ID)], dim=1)
    for step, x in states:
        changed = (x != previous).nonzero()
        block_start = 7 + 8 * (step // 3)
        assert ((changed[:, 1] >= block_start) & (changed[:, 1] < block_start + 8)).all()
        assert (previous[changed[:, 0], changed[:, 1]] == MASK_ID).all()
        # 8 masks over 3 steps: 3, 3, 2 per row.
        assert torch.bincount(changed[:, 0], minlength=3).tolist() == [[3, 3, 2][step % 3]] * 3
        previous = x
    assert not (previous == MASK_ID).any()


def test_deterministic_at_temperature_zero(model, padded_batch):
    prompt, attention_mask = padded_batch
    first = generate(model, prompt, attention_mask, steps=8, gen_length=16, block_length=8)
    second = generate(model, prompt, attention_mask, steps=8, gen_length=16, block_length=8)
    assert torch.equal(first, second)


@pytest.mark.parametrize("cfg_scale", [0.0, 1.0])
def test_left_padding_does_not_change_a_rows_answer(model, padded_batch, cfg_scale):
    prompt, attention_mask = padded_batch
    options = dict(steps=12, gen_length=24, block_length=8, cfg_scale=cfg_scale)
    batch = generate(model, prompt, attention_mask, **options)
    for row, pad in ((0, 0), (1, 3), (2, 1)):
        alone = generate(model, prompt[row : row + 1, pad:], **options)
        assert torch.equal(batch[row, 7:], alone[0, 7 - pad :])


def test_cfg_runs_and_changes_the_guided_logits(model, padded_batch):
    prompt, attention_mask = padded_batch
    plain = generate(model, prompt, attention_mask, steps=16, gen_length=16, block_length=16)
    guided = generate(model, prompt, attention_mask, steps=16, gen_length=16, block_length=16, cfg_scale=2.0)
    assert guided.shape == plain.shape and not (guided == MASK_ID).any()
    assert not torch.equal(guided, plain)


@pytest.mark.parametrize(
    "options", [dict(remasking="random"), dict(temperature=1.0), dict(temperature=0.7, cfg_scale=1.0)]
)
def test_random_draws_are_reproducible_with_a_generator(model, padded_batch, options):
    prompt, attention_mask = padded_batch

    def run(seed):
        generator = torch.Generator().manual_seed(seed)
        return generate(model, prompt, attention_mask, 8, 16, 8, generator=generator, **options)

    assert torch.equal(run(0), run(0))
    assert not torch.equal(run(0), run(1))


class FixedLogits(nn.Module):
    """A stand-in model with fixed logits [T, V] whatever the input; it records every input it sees."""

    def __init__(self, logits: torch.Tensor):
        super().__init__()
        vocab = logits.shape[1]
        self.config = LLaDAConfig(
            vocab_size=vocab,
            embedding_size=vocab,
            mask_token_id=vocab - 1,
            eos_token_id=EOS_ID,
            pad_token_id=EOS_ID,
        )
        self.register_buffer("logits", logits)
        self.anchor = nn.Parameter(torch.zeros(()))  # gives the model a device
        self.inputs: list[torch.Tensor] = []

    def forward(self, input_ids, attention_mask=None, logits_positions=None, **cache):
        self.inputs.append(input_ids.clone())
        logits = self.logits if logits_positions is None else self.logits[logits_positions]
        return SimpleNamespace(logits=logits[None].expand(input_ids.shape[0], -1, -1).clone())


EOT_ID = 8


def commit_order(sampler, **options) -> tuple[list[int], list[int]]:
    """Prompt of one token and three answer positions predicting EOS (p 0.9), EoT (p 0.8) and token 5
    (p 0.5); one token is committed per step. Returns the answer and the order positions were committed."""
    probabilities = torch.full((4, 10), 0.01)
    probabilities[1, EOS_ID], probabilities[2, EOT_ID], probabilities[3, 5] = 0.9, 0.8, 0.5
    model = FixedLogits(probabilities.log())
    generator = torch.Generator().manual_seed(0)
    out = sampler(
        model, torch.tensor([[2]]), steps=3, gen_length=3, block_length=3, generator=generator, **options
    )
    # The input of step i + 1 shows what step i committed; the output shows the last step.
    states = [x[0, 1:] for x in model.inputs[1:]] + [out[0, 1:]]
    order, previous = [], torch.full((3,), 9)
    for state in states:
        order.append(int(((state != 9) & (previous == 9)).nonzero()))
        previous = state
    return out[0, 1:].tolist(), order


@pytest.mark.parametrize("sampler", [generate, reference_generate])
def test_most_confident_position_is_committed_first(sampler):
    assert commit_order(sampler) == ([EOS_ID, EOT_ID, 5], [0, 1, 2])


@pytest.mark.parametrize("temperature", [0.0, 0.01])
def test_stop_tokens_last_defers_both_eos_and_eot(temperature):
    answer, order = commit_order(generate, stop_tokens_last=True, eot_id=EOT_ID, temperature=temperature)
    assert answer == [EOS_ID, EOT_ID, 5]
    assert order[0] == 2  # EOS and EoT both have zero confidence


# Above temperature 0 the official switch misses EOS (0.01 keeps the samples at the argmax).
@pytest.mark.parametrize(("temperature", "expected"), [(0.0, [2, 0, 1]), (0.01, [0, 2, 1])])
def test_official_eos_eot_switch_misses_eos_above_temperature_zero(temperature, expected):
    _, order = commit_order(
        reference_generate, confidence_eos_eot_inf=True, eot_id=EOT_ID, temperature=temperature
    )
    assert order == expected


def test_stop_tokens_last_matches_the_official_switch_at_temperature_zero(model, padded_batch):
    prompt, attention_mask = padded_batch
    options = dict(steps=12, gen_length=24, block_length=8)
    # Ids 48 and 93, which this model predicts most, stand for EOS and EoT.
    ours = generate(model, prompt, attention_mask, stop_tokens_last=True, eos_id=48, eot_id=93, **options)
    official = reference_generate(
        model, prompt, attention_mask, confidence_eos_eot_inf=True, eos_id=48, eot_id=93, **options
    )
    assert torch.equal(ours, official)
    assert not torch.equal(ours, generate(model, prompt, attention_mask, **options))


@pytest.mark.parametrize("sampler", [generate, reference_generate])
def test_forbidden_eos_is_never_sampled(sampler):
    switch = "forbid_eos" if sampler is generate else "logits_eos_inf"
    # EOS excluded, position 1's remaining logits tie and argmax takes the first id, 0.
    assert commit_order(sampler, **{switch: True})[0] == [0, EOT_ID, 5]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (dict(gen_length=20, block_length=8), "gen_length 20 is not divisible by block_length 8; "),
        (
            dict(steps=10, gen_length=24, block_length=8),
            "steps 10 is not divisible by the number of blocks 3 ",
        ),
        (
            dict(gen_length=250, block_length=250, steps=250),
            r"prompt \(7 tokens\) plus gen_length \(250\) exceeds the model's max_sequence_length 256",
        ),
        (
            dict(mask_id=EOS_ID),
            "the padding uses the mask id 1, so padded positions would be filled as masks",
        ),
        (dict(remasking="lowest"), "unknown remasking 'lowest'; use one of low_confidence, random"),
        (dict(stop_tokens_last=True), "stop_tokens_last needs eot_id"),
    ],
)
def test_bad_arguments_raise_clear_errors(model, padded_batch, options, message):
    prompt, attention_mask = padded_batch
    settings = dict(steps=8, gen_length=16, block_length=8) | options
    with pytest.raises(DifusiError, match=message):
        generate(model, prompt, attention_mask, **settings)


def test_empty_prompts_raise_clear_errors(model, padded_batch):
    prompt, attention_mask = padded_batch
    with pytest.raises(DifusiError, match="prompt is empty; give at least one token"):
        generate(model, prompt[:, :0], steps=8, gen_length=8, block_length=8)
    attention_mask[1] = 0
    with pytest.raises(DifusiError, match="prompt row 1 is all padding; give every row at least one token"):
        generate(model, prompt, attention_mask, steps=8, gen_length=8, block_length=8)


def test_pad_id_equal_to_mask_id_is_refused(padded_batch):
    model = FixedLogits(torch.zeros(32, 10))
    model.config.pad_token_id = model.config.mask_token_id
    prompt, attention_mask = padded_batch
    with pytest.raises(DifusiError, match="the padding uses the mask id 9"):
        generate(model, prompt % 9, attention_mask, steps=8, gen_length=8, block_length=8)


def test_top_p_and_top_k_keep_the_likeliest_tokens_by_hand():
    from difusi.diffusion.sampler import top_p_top_k

    logits = torch.tensor([0.15, 0.5, 0.05, 0.3]).log()
    kept = lambda **kw: (top_p_top_k(logits, **kw) > -torch.inf).tolist()  # noqa: E731
    assert kept(top_p=0.7) == [False, True, False, True]  # 0.5 + 0.3 reach 0.7
    assert kept(top_p=0.5) == [False, True, False, False]  # 0.5 alone reaches it
    assert kept(top_p=0.81) == [True, True, False, True]
    assert kept(top_k=3) == [True, True, False, True]
    assert kept(top_k=3, top_p=0.7) == [False, True, False, True]
    assert kept(top_p=1.0, top_k=0) == [True] * 4
    torch.testing.assert_close(top_p_top_k(logits, top_p=0.7)[[1, 3]], logits[[1, 3]])


def test_top_k_one_draws_the_greedy_answer_in_every_sampler(model, padded_batch):
    from difusi.autoregressive import ar_generate
    from difusi.diffusion.block_sampler import block_generate

    prompt, attention_mask = padded_batch
    options = dict(steps=8, gen_length=16, block_length=8)
    greedy = generate(model, prompt, attention_mask, **options)
    drawn = generate(model, prompt, attention_mask, **options, temperature=1.0, top_k=1)
    assert torch.equal(drawn, greedy)
    assert not torch.equal(generate(model, prompt, attention_mask, **options, temperature=1.0), greedy)
    model.config.block_size = 4
    try:
        greedy = block_generate(model, prompt, attention_mask, gen_length=8, threshold=0.9)
        drawn = block_generate(
            model, prompt, attention_mask, gen_length=8, threshold=0.9, temperature=1.0, top_k=1
        )
        assert torch.equal(drawn, greedy)
    finally:
        model.config.block_size = None
    model.config.causal = True
    try:
        greedy = ar_generate(model, prompt, attention_mask, gen_length=8)
        assert torch.equal(
            ar_generate(model, prompt, attention_mask, gen_length=8, temperature=1.0, top_p=1e-6), greedy
        )
    finally:
        model.config.causal = False


def test_bad_top_p_or_top_k_is_refused():
    from difusi.diffusion.sampler import SamplerSettings

    for settings in (SamplerSettings(top_p=0.0), SamplerSettings(top_p=1.5), SamplerSettings(top_k=-1)):
        with pytest.raises(DifusiError, match=r"top_p \(.*\) must be in \(0, 1\] and top_k"):
            settings.check()
