"""Block diffusion: block-causal attention, the [x_t; x_0] objective, the block NELBO, the cached sampler."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from difusi import LLaDAConfig, LLaDAModelLM
from difusi.diffusion.block import (
    block_answer_nelbo,
    block_diffusion_loss,
    block_diffusion_mask,
    block_forward_process,
    block_ids,
    block_weighted_ce,
)
from difusi.diffusion.block_sampler import block_generate
from difusi.diffusion.losses import MASK_EPS, uniform
from difusi.errors import DifusiError
from difusi.model.modeling_llada import KVCache, attention_bias

TINY = dict(
    d_model=32, n_heads=4, n_kv_heads=2, n_layers=2, mlp_hidden_size=64, vocab_size=96, embedding_size=96,
    max_sequence_length=128, mask_token_id=95, eos_token_id=1, pad_token_id=1,
)  # fmt: skip
MASK = 95


def block_model(block_size: int | None = 4, seed: int = 0, token_shift: bool = False) -> LLaDAModelLM:
    torch.manual_seed(seed)
    return LLaDAModelLM(LLaDAConfig(**TINY, block_size=block_size, token_shift=token_shift)).eval()


# --- block-causal attention ---------------------------------------------------------------------


def test_a_later_block_leaves_earlier_blocks_logits_exactly_unchanged():
    model = block_model(block_size=4)
    ids = torch.randint(2, 90, (2, 12))
    changed = ids.clone()
    changed[:, 9] = 3  # inside block 2 (positions 8..11)
    before, after = model(ids).logits, model(changed).logits
    torch.testing.assert_close(after[:, :8], before[:, :8], rtol=0, atol=0)
    assert not torch.allclose(after[:, 8:], before[:, 8:])  # bidirectional inside block 2
    # Per call, a block size overrides the config's; an earlier position in the same block sees it.
    assert not torch.allclose(model(changed, block_size=12).logits[:, 0], before[:, 0])


def test_default_stays_fully_bidirectional():
    model = block_model(block_size=None)
    ids = torch.randint(2, 90, (1, 8))
    changed = ids.clone()
    changed[0, -1] = 3
    assert not torch.allclose(model(ids).logits[0, 0], model(changed).logits[0, 0])


def test_a_mask_is_built_only_where_the_structure_or_padding_hides_a_key():
    hidden = torch.finfo(torch.float32).min
    # A block's own pass over the cache (queries 8..11, keys 0..11) hides nothing: no mask at all.
    assert attention_bias(None, torch.float32, False, 4, 8, 4, 12) is None
    assert attention_bias(torch.ones(1, 12), torch.float32, False, 4, 8, 4, 12) is None
    # Two blocks at once (queries 4..11): block 1's queries must not see block 2's keys 8..11.
    both = attention_bias(None, torch.float32, False, 4, 4, 8, 12)
    assert both.shape == (1, 1, 8, 12)
    assert (both[0, 0, :4, 8:] == hidden).all() and (both[0, 0, :4, :8] == 0).all()
    assert (both[0, 0, 4:] == 0).all()
    # Padding alone still needs one: padded keys hidden from every query.
    padded = attention_bias(torch.tensor([[0, 1, 1, 1]]), torch.float32, False, 4, 0, 4, 4)
    assert (padded[0, 0, :, 0] == hidden).all() and (padded[0, 0, :, 1:] == 0).all()
    # Causal: a decoding step (query 5 over keys 0..5) hides nothing; two queries hide one key.
    assert attention_bias(None, torch.float32, True, None, 5, 1, 6) is None
    two = attention_bias(None, torch.float32, True, None, 4, 2, 6)
    assert two[0, 0, 0, 5] == hidden and (two[0, 0, 0, :5] == 0).all() and (two[0, 0, 1] == 0).all()


def test_causal_decoding_steps_without_a_mask_equal_the_full_pass():
    model = block_model(block_size=None)
    model.config.causal = True
    ids = torch.randint(2, 90, (1, 6))
    full = model(ids).logits
    cache = KVCache(model.config.n_layers)
    model(ids[:, :3], kv_cache=cache)
    steps = [model(ids[:, p : p + 1], kv_cache=cache, cache_start=p).logits[:, 0] for p in range(3, 6)]
    torch.testing.assert_close(torch.stack(steps, dim=1), full[:, 3:], rtol=1e-5, atol=1e-5)


# --- the objective -------------------------------------------------------------------------------


def test_block_ids_count_from_the_answer_start():
    ids = block_ids(torch.tensor([2, 0]), 6, 2)
    assert ids.tolist() == [[-1, -1, 0, 0, 1, 1], [0, 0, 1, 1, 2, 2]]


def test_block_diffusion_mask_by_hand():
    # T = 4, two blocks of 2: rows are queries, columns keys; noisy copy first, then clean.
    mask = block_diffusion_mask(torch.tensor([[0, 0, 1, 1]]))[0, 0].int().tolist()
    assert mask == [
        # noisy 0..3      clean 0..3
        [1, 1, 0, 0, 0, 0, 0, 0],  # noisy block 0 sees itself only
        [1, 1, 0, 0, 0, 0, 0, 0],
        [0, 0, 1, 1, 1, 1, 0, 0],  # noisy block 1: itself and clean block 0
        [0, 0, 1, 1, 1, 1, 0, 0],
        [0, 0, 0, 0, 1, 1, 0, 0],  # clean block 0: itself
        [0, 0, 0, 0, 1, 1, 0, 0],
        [0, 0, 0, 0, 1, 1, 1, 1],  # clean block 1: block-causal
        [0, 0, 0, 0, 1, 1, 1, 1],
    ]


def test_forward_process_draws_one_level_per_block_and_never_masks_the_prompt():
    ids = torch.arange(2, 14).view(1, 12)
    blocks = block_ids(torch.tensor([4]), 12, 4)  # prompt 4 tokens, answer blocks 0 and 1
    eligible = torch.arange(12)[None] >= 4
    noisy, masked, p_mask = block_forward_process(
        ids, blocks, MASK, torch.Generator().manual_seed(0), eligible
    )
    t = uniform((1, 3), torch.Generator().manual_seed(0), ids.device)  # blocks -1, 0, 1
    expected = (1 - MASK_EPS) * t + MASK_EPS
    torch.testing.assert_close(p_mask[0], expected[0].repeat_interleave(4))
    assert not masked[0, :4].any() and torch.equal(noisy[masked], torch.full((int(masked.sum()),), MASK))


class ConstantLogits(torch.nn.Module):
    """Stand-in mask predictor: probability 1/2 on token 2, 1/6 on each of tokens 3..5 (V = 6)."""

    def __init__(self):
        super().__init__()
        self.config = LLaDAConfig(
            **{**TINY, "vocab_size": 6, "embedding_size": 6, "mask_token_id": 5}, block_size=2
        )
        self.weight = torch.nn.Parameter(torch.zeros(()))
        self.calls = []

    def forward(self, input_ids, attention_mask, position_ids, logits_positions):
        self.calls.append((input_ids, attention_mask, position_ids))
        row = torch.log(torch.tensor([1e-9, 1e-9, 3.0, 1.0, 1.0, 1.0]))
        n = int(logits_positions.sum())
        return type("Out", (), {"logits": row.expand(n, 6) + self.weight})()


def test_block_loss_equals_the_hand_computation():
    # One row: prompt [3], answer [2, 4, 2] in blocks of 2 ([2, 4] and [2]).
    model = ConstantLogits()
    ids, prompt_lengths = torch.tensor([[3, 2, 4, 2]]), torch.tensor([1])
    gen = torch.Generator().manual_seed(1)
    _, masked, p_mask = block_forward_process(
        ids,
        block_ids(prompt_lengths, 4, 2),
        5,
        torch.Generator().manual_seed(1),
        torch.tensor([[0, 1, 1, 1]]).bool(),
    )
    loss = block_diffusion_loss(
        model, ids, 5, 2, prompt_lengths, gen, complementary=True, normalization="answer_length"
    )
    nll = {2: math.log(2), 4: math.log(6)}  # -log p of each token under the stand-in
    first = sum(nll[int(ids[0, i])] / float(p_mask[0, i]) for i in range(4) if masked[0, i])
    second = sum(
        nll[int(ids[0, i])] / (1 - float(p_mask[0, i]) + MASK_EPS) for i in range(1, 4) if not masked[0, i]
    )
    assert loss.item() == pytest.approx((first / 3 + second / 3) / 2, rel=1e-6)
    # The model saw [x_t; x_0] (the noisy copy without the prompt column) at their own positions.
    inputs, mask, positions = model.calls[0]
    assert inputs.shape == (2, 7) and torch.equal(inputs[:, 3:], ids.expand(2, 4))
    assert positions.tolist() == [1, 2, 3, 0, 1, 2, 3] and mask.shape == (2, 1, 7, 7)
    assert torch.equal(inputs[0, :3] == 5, masked[0, 1:]) and torch.equal(inputs[1, :3] == 5, ~masked[0, 1:])


def test_noisy_blocks_logits_equal_a_plain_block_causal_pass():
    """What training scores at a noisy block is what the sampler computes for that block: a
    block-causal pass over the clean blocks before it and the noisy block."""
    model = block_model(block_size=4)
    ids = torch.randint(2, 90, (1, 12))
    gen = torch.Generator().manual_seed(0)
    noisy, masked, _ = block_forward_process(ids, block_ids(torch.tensor([0]), 12, 4), MASK, gen)
    both = model(
        torch.cat([noisy, ids], 1), attention_mask=block_diffusion_mask(block_ids(torch.tensor([0]), 12, 4)),
        position_ids=torch.arange(12).repeat(2),
    ).logits[:, :12]  # fmt: skip
    for start in (0, 4, 8):
        plain = model(torch.cat([ids[:, :start], noisy[:, start : start + 4]], 1)).logits[:, start:]
        torch.testing.assert_close(both[:, start : start + 4], plain, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("token_shift", [False, True])
def test_the_block_ce_equals_plain_block_causal_passes_block_by_block(token_shift):
    """Every token's CE / p_mask from the one [x_t; x_0] pass equals the one computed from a plain
    block-causal pass over the clean blocks before its block and its noisy block, the way the
    sampler sees it; with token shift, read one position earlier."""
    model = block_model(block_size=4, token_shift=token_shift)
    ids, prompts = torch.randint(2, 90, (2, 14)), torch.tensor([2, 6])
    per_token, *_ = block_weighted_ce(
        model, ids, MASK, 4, prompts, torch.Generator().manual_seed(5), token_shift=token_shift
    )
    eligible = torch.arange(14)[None] >= prompts[:, None]
    blocks = block_ids(prompts, 14, 4)
    noisy, masked, p_mask = block_forward_process(
        ids, blocks, MASK, torch.Generator().manual_seed(5), eligible
    )
    for row in range(2):
        for block in range(int(blocks[row].max()) + 1):
            columns = (blocks[row] == block).nonzero().flatten()
            start, end = int(columns[0]), int(columns[-1]) + 1
            sequence = torch.cat([ids[row, :start], noisy[row, start:end]])[None]
            # A plain pass with blocks from position 0 needs the answer on a block boundary: left-pad.
            pad = -int(prompts[row]) % 4
            padded = torch.cat([torch.ones(1, pad, dtype=torch.long), sequence], 1)
            keep = torch.cat([torch.zeros(1, pad, dtype=torch.long), torch.ones_like(sequence)], 1)
            logits = model(padded, attention_mask=keep).logits[0, pad:]
            for j in range(start, end):
                if masked[row, j]:
                    ce = F.cross_entropy(logits[j - int(token_shift)], ids[row, j]) / p_mask[row, j]
                    torch.testing.assert_close(per_token[row, j], ce, rtol=1e-4, atol=1e-5)
    assert torch.equal(per_token > 0, masked)


def test_leaving_out_unnoised_columns_changes_no_logit():
    model = block_model(block_size=4)
    ids = torch.randint(2, 90, (2, 12))
    blocks = block_ids(torch.tensor([4, 6]), 12, 4)
    noisy, _, _ = block_forward_process(
        ids, blocks, MASK, torch.Generator().manual_seed(0), torch.arange(12) >= 4
    )
    full = model(
        torch.cat([noisy, ids], 1),
        attention_mask=block_diffusion_mask(blocks),
        position_ids=torch.arange(12).repeat(2),
    ).logits
    trimmed = model(
        torch.cat([noisy[:, 4:], ids], 1), attention_mask=block_diffusion_mask(blocks, 4),
        position_ids=torch.cat([torch.arange(4, 12), torch.arange(12)]),
    ).logits  # fmt: skip
    answer = torch.arange(4, 12)[None] >= torch.tensor([[4], [6]])  # the positions a loss scores
    torch.testing.assert_close(trimmed[:, :8][answer], full[:, 4:12][answer], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(trimmed[:, 8:], full[:, 12:], rtol=1e-5, atol=1e-5)  # the clean copy


def test_block_loss_trains_a_tiny_model_and_its_nelbo_falls():
    model = block_model(block_size=4).train()
    ids = torch.randint(2, 10, (8, 12))
    prompts = torch.full((8,), 4)
    example = {"input_ids": ids[0].tolist(), "prompt_length": 4}
    before = block_answer_nelbo(model, example, 16, torch.Generator().manual_seed(0))[0]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for step in range(30):
        loss = block_diffusion_loss(model, ids, MASK, 4, prompts, torch.Generator().manual_seed(step))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    nelbo, tokens = block_answer_nelbo(model.eval(), example, 16, torch.Generator().manual_seed(0))
    assert tokens == 8 and nelbo < 0.5 * before


def test_block_weighted_ce_without_prompts_scores_every_token():
    per_token, ids, prompts = block_weighted_ce(
        block_model(), torch.randint(2, 90, (2, 8)), MASK, 4, None, torch.Generator().manual_seed(0), True
    )
    assert per_token.shape == (4, 8) and prompts.tolist() == [0, 0, 0, 0]
    assert torch.all((per_token[:2] > 0) | (per_token[2:] > 0))  # each token masked in one copy


# --- the sampler ---------------------------------------------------------------------------------


@pytest.mark.parametrize("threshold", [None, 0.02, 0.06])
@pytest.mark.parametrize("temperature", [0.0, 1.0])
@pytest.mark.parametrize("token_shift", [False, True])
def test_cached_sampler_equals_recomputing_everything(threshold, temperature, token_shift):
    model = block_model(block_size=4, token_shift=token_shift)
    prompt = torch.randint(2, 90, (3, 7))
    mask = torch.ones_like(prompt)
    prompt[0, :2], mask[0, :2] = 1, 0  # left padding
    runs = [
        block_generate(
            model,
            prompt,
            mask,
            16,
            threshold,
            temperature=temperature,
            stop_ids=(1,),
            generator=torch.Generator().manual_seed(3),
            use_cache=use_cache,
        )  # fmt: skip
        for use_cache in (True, False)
    ]
    assert runs[0].shape == (3, 23) and torch.equal(runs[0], runs[1])
    assert not (runs[0] == MASK).any()


def test_cached_pass_sees_exactly_what_a_full_pass_computes():
    """The cache after a block equals a fresh block-causal pass over the committed tokens."""
    model = block_model(block_size=4)
    prompt = torch.randint(2, 90, (1, 8))
    passes = []
    out = block_generate(model, prompt, gen_length=8, threshold=0.05, on_pass=lambda n, a: passes.append(a))
    # Rebuild: the logits a cached pass over block 1 gets equal a full pass's at those positions.
    cache = KVCache(model.config.n_layers)
    with torch.inference_mode():
        model(out[:, :12], kv_cache=cache)
        step = model(torch.full((1, 4), MASK), kv_cache=cache, cache_start=12).logits
        full = model(torch.cat([out[:, :12], torch.full((1, 4), MASK)], 1)).logits[:, 12:]
    torch.testing.assert_close(step, full, rtol=1e-5, atol=1e-5)
    assert passes and all(a.shape == (1, 8) for a in passes)


def test_threshold_commits_many_tokens_per_pass_and_one_at_least():
    model = block_model(block_size=8)
    prompt = torch.randint(2, 90, (1, 8))
    counts = []
    block_generate(model, prompt, gen_length=8, threshold=0.0, on_pass=lambda n, a: counts.append(n))
    assert counts == [1]  # threshold 0: the whole block in one pass
    counts.clear()
    block_generate(model, prompt, gen_length=8, threshold=1.0, on_pass=lambda n, a: counts.append(n))
    assert len(counts) == 8  # nothing reaches 1.0: the most confident one per pass
    counts.clear()
    block_generate(
        model, prompt, gen_length=8, threshold=None, tokens_per_pass=4, on_pass=lambda n, a: counts.append(n)
    )
    assert len(counts) == 2


def test_stops_at_end_of_text_and_fills_after_it():
    model = block_model(block_size=4)
    # EOS (id 1) the sure answer everywhere.
    model.model.transformer.ff_out.register_forward_hook(
        lambda module, args, out: out.index_fill(-1, torch.tensor([1]), 100.0)
    )
    passes = []
    out = block_generate(
        model, torch.randint(2, 90, (2, 5)), gen_length=32, threshold=0.9, stop_ids=(1,),
        on_pass=lambda n, a: passes.append(n),
    )  # fmt: skip
    assert out.shape == (2, 37) and torch.all(out[:, 5:] == 1)
    assert len(passes) == 1  # the first block held the end: no further block ran


def test_sampler_errors_are_one_clear_line():
    with pytest.raises(DifusiError, match="needs a block-diffusion model"):
        block_generate(block_model(block_size=None), torch.ones(1, 3, dtype=torch.long))
    with pytest.raises(DifusiError, match="threshold 1.5 is not a probability"):
        block_generate(block_model(), torch.ones(1, 3, dtype=torch.long), threshold=1.5)
    with pytest.raises(DifusiError, match="exceeds the model's max_sequence_length 128"):
        block_generate(block_model(), torch.ones(1, 100, dtype=torch.long), gen_length=40)


def test_padding_positions_change_no_real_token():
    """Left padding (the batch's longest prompt sets it) changes no answer: a row decoded alone
    equals the same row decoded beside a longer prompt."""
    model = block_model(block_size=4)
    short = torch.randint(2, 90, (1, 5))
    long = torch.randint(2, 90, (1, 11))
    batch = torch.cat([torch.cat([torch.ones(1, 6, dtype=torch.long), short], 1), long])
    mask = torch.ones_like(batch)
    mask[0, :6] = 0
    together = block_generate(model, batch, mask, 12, 0.05)
    alone = block_generate(model, short, None, 12, 0.05)
    assert torch.equal(together[0, 11:], alone[0, 5:])


def test_gumbel_noise_uses_the_generator():
    model = block_model()
    prompt = torch.randint(2, 90, (1, 6))
    a = block_generate(
        model, prompt, gen_length=8, temperature=1.0, generator=torch.Generator().manual_seed(0)
    )
    b = block_generate(
        model, prompt, gen_length=8, temperature=1.0, generator=torch.Generator().manual_seed(0)
    )
    c = block_generate(
        model, prompt, gen_length=8, temperature=1.0, generator=torch.Generator().manual_seed(1)
    )
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert F.one_hot(a[0, 6:], 96).sum(0).max() < 8  # not one token everywhere


def test_log_likelihood_of_a_block_model_is_minus_its_block_nelbo():
    from difusi.diffusion.likelihood import log_likelihood

    model = block_model(block_size=4)
    prompt, answer = torch.randint(2, 90, (5,)), torch.randint(2, 90, (7,))
    value = log_likelihood(
        model, prompt, answer, mc_num=4, batch_size=4, generator=torch.Generator().manual_seed(0)
    )
    example = {"input_ids": torch.cat([prompt, answer]).tolist(), "prompt_length": 5}
    nelbo, tokens = block_answer_nelbo(model, example, 4, torch.Generator().manual_seed(0))
    assert tokens == 7 and value == pytest.approx(-nelbo) and value < 0


def test_a_model_that_prefers_the_mask_token_still_finishes():
    model = block_model(block_size=4)
    model.model.transformer.ff_out.register_forward_hook(
        lambda module, args, out: out.index_fill(-1, torch.tensor([MASK]), 100.0)
    )
    out = block_generate(model, torch.randint(2, 90, (2, 5)), gen_length=8, temperature=1.0)
    assert out.shape == (2, 13) and not (out[:, 5:] == MASK).any()
