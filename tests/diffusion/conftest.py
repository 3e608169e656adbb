"""Tiny fp32 LLaDA models for the diffusion tests.

init_std 0.5 makes the predictions peaked, so confidences are well separated and greedy decoding is
not decided by rounding-level near-ties.
"""

from __future__ import annotations

import pytest
import torch

from difusi import LLaDAConfig, LLaDAModelLM

MASK_ID, EOS_ID = 99, 1


def tiny_config(**overrides) -> LLaDAConfig:
    settings = dict(
        d_model=32,
        n_heads=2,
        n_kv_heads=2,
        n_layers=2,
        mlp_hidden_size=64,
        vocab_size=100,
        embedding_size=100,
        max_sequence_length=256,
        mask_token_id=MASK_ID,
        eos_token_id=EOS_ID,
        pad_token_id=EOS_ID,
        init_std=0.5,
    )
    return LLaDAConfig(**(settings | overrides))


@pytest.fixture(scope="module")
def raw_model() -> LLaDAModelLM:
    """A random tiny model; like any random model it sometimes predicts the mask id itself."""
    torch.manual_seed(0)
    return LLaDAModelLM(tiny_config()).eval()


@pytest.fixture(scope="module")
def model() -> LLaDAModelLM:
    """A random tiny model that, like a trained LLaDA, never predicts the mask id (its logit is -1e4)."""
    torch.manual_seed(0)
    model = LLaDAModelLM(tiny_config()).eval()

    def no_mask_prediction(module, inputs, logits):
        return logits.index_fill(-1, torch.tensor([MASK_ID], device=logits.device), -1e4)

    model.get_output_embeddings().register_forward_hook(no_mask_prediction)
    return model


@pytest.fixture
def padded_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Three prompts of 7, 4 and 6 tokens, left padded with EOS to 7, and their attention mask."""
    generator = torch.Generator().manual_seed(1)
    prompt = torch.randint(2, MASK_ID, (3, 7), generator=generator)
    attention_mask = torch.ones_like(prompt)
    for row, pad in ((1, 3), (2, 1)):
        prompt[row, :pad] = EOS_ID
        attention_mask[row, :pad] = 0
    return prompt, attention_mask
