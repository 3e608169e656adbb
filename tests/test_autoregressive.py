"""Autoregressive baseline: next-token loss and cached decoding equal their uncached definitions."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from difusi import LLaDAConfig, LLaDAModelLM
from difusi.autoregressive import ar_generate, next_token_loss
from difusi.errors import DifusiError

CONFIG = dict(
    d_model=32, n_heads=4, n_kv_heads=4, n_layers=2, mlp_hidden_size=64, vocab_size=50, embedding_size=50,
    max_sequence_length=64, mask_token_id=49, eos_token_id=1, pad_token_id=1, init_std=0.5,
)  # fmt: skip


def causal_model(seed=0) -> LLaDAModelLM:
    torch.manual_seed(seed)
    return LLaDAModelLM(LLaDAConfig(causal=True, **CONFIG)).eval()


def test_next_token_loss_scores_only_answer_tokens():
    model = causal_model()
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    logits = model(ids).logits[0]
    # Prompt length 2: targets 7, 8, 9 predicted from positions 1, 2, 3.
    expected = F.cross_entropy(logits[1:4], ids[0, 2:5])
    torch.testing.assert_close(next_token_loss(model, ids, torch.tensor([2])), expected)
    torch.testing.assert_close(next_token_loss(model, ids), F.cross_entropy(logits[:-1], ids[0, 1:]))
    # Two rows with different prompts: the mean over both rows' scored tokens, row by row.
    batch = torch.tensor([[5, 6, 7, 8, 9], [9, 8, 7, 6, 5]])
    both = model(batch).logits
    expected = F.cross_entropy(
        torch.cat([both[0, 1:4], both[1, 2:4]]), torch.cat([batch[0, 2:], batch[1, 3:]])
    )
    torch.testing.assert_close(next_token_loss(model, batch, torch.tensor([2, 3])), expected)


def naive_greedy(model, prompt, mask, gen_length):
    seq, mask = prompt.clone(), mask.clone()
    for _ in range(gen_length):
        logits = model(seq, attention_mask=mask).logits[:, -1]
        seq = torch.cat([seq, logits.argmax(-1, keepdim=True)], dim=1)
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
    return seq


def test_cached_greedy_decoding_equals_uncached_with_left_padding():
    model = causal_model()
    prompt = torch.tensor([[1, 1, 7, 8, 9], [3, 4, 5, 6, 7]])
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    out = ar_generate(model, prompt, mask, gen_length=6)
    assert out.shape == (2, 11)
    assert torch.equal(out, naive_greedy(model, prompt, mask, 6))
    # The padded row decodes exactly as it does alone.
    alone = ar_generate(model, prompt[:1, 2:], None, gen_length=6)
    assert torch.equal(out[0, 2:], alone[0])


def test_rows_stop_at_a_stop_token_and_are_filled_with_it():
    model = causal_model()
    prompt = torch.tensor([[3, 4, 5]])
    free = ar_generate(model, prompt, gen_length=8)
    stop = int(free[0, 5])  # the third generated token
    out = ar_generate(model, prompt, gen_length=8, stop_ids=(stop,))
    first = int((out[0, 3:] == stop).nonzero()[0])
    assert torch.equal(out[0, : 3 + first + 1], free[0, : 3 + first + 1])
    assert bool((out[0, 3 + first :] == stop).all())


def test_sampling_with_a_generator_is_reproducible():
    model = causal_model()
    prompt = torch.tensor([[3, 4, 5]])
    draw = lambda: ar_generate(
        model, prompt, gen_length=8, temperature=1.0, generator=torch.Generator().manual_seed(7)
    )
    assert torch.equal(draw(), draw())


def test_bad_arguments_give_clear_errors():
    model = causal_model()
    with pytest.raises(DifusiError, match="exceeds the model's maximum 64"):
        ar_generate(model, torch.ones(1, 10, dtype=torch.long), gen_length=60)
    with pytest.raises(DifusiError, match="empty prompt"):
        ar_generate(model, torch.ones(1, 0, dtype=torch.long))
    torch.manual_seed(0)
    with pytest.raises(DifusiError, match="needs a causal model"):
        ar_generate(LLaDAModelLM(LLaDAConfig(**CONFIG)), torch.ones(1, 3, dtype=torch.long))
