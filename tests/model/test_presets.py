"""Model presets: sizes, and checkpoints that load with the standard loaders."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoTokenizer

from difusi import LLaDAModelLM
from difusi.errors import DifusiError
from difusi.model.presets import PRESETS, build_checkpoint, preset_config, preset_tokenizer


def parameter_count(config) -> int:
    with torch.device("meta"):
        return sum(p.numel() for p in LLaDAModelLM(config).parameters())


def test_tiny_preset_parameter_count(tiny_tokenizer):
    # wte + head 2*512*64, per layer 4*64*64 + 3*64*192 + 2*64 norms, ln_f 64.
    assert parameter_count(preset_config("tiny", tiny_tokenizer)) == 65_536 + 2 * 53_376 + 64 == 172_352


def test_small_preset_parameter_count():
    tokenizer = preset_tokenizer("small")
    config = preset_config("small", tokenizer)
    assert len(tokenizer) == config.vocab_size == config.embedding_size == 8192
    # wte + head 2*8192*256, per layer 4*256*256 + 3*256*768 + 2*256, ln_f 256.
    assert parameter_count(config) == 4_194_304 + 6 * 852_480 + 256 == 9_309_440


def test_checkpoint_ids_come_from_the_tokenizer(tiny_checkpoint):
    tokenizer = AutoTokenizer.from_pretrained(tiny_checkpoint)
    model = LLaDAModelLM.from_pretrained(tiny_checkpoint)
    vocab = tokenizer.get_vocab()
    assert len(tokenizer) == model.config.vocab_size == PRESETS["tiny"].vocab_size
    assert model.config.mask_token_id == vocab["<|mdm_mask|>"] == 508
    assert model.config.eos_token_id == model.config.pad_token_id == vocab["<|endoftext|>"] == 507
    generation = json.loads((tiny_checkpoint / "generation_config.json").read_text())
    assert (generation["bos_token_id"], generation["eos_token_id"]) == (vocab["<|startoftext|>"], 507)
    logits = model(torch.tensor([[506, 100, 508, 507]])).logits
    assert logits.shape == (1, 4, 512)


def test_same_seed_same_weights(tiny_checkpoint, tmp_path):
    again = LLaDAModelLM.from_pretrained(build_checkpoint("tiny", tmp_path / "again", seed=0))
    other = LLaDAModelLM.from_pretrained(build_checkpoint("tiny", tmp_path / "other", seed=1))
    first = LLaDAModelLM.from_pretrained(tiny_checkpoint).state_dict()
    assert all(torch.equal(first[k], v) for k, v in again.state_dict().items())
    wte = "model.transformer.wte.weight"
    assert not torch.equal(first[wte], other.state_dict()[wte])


def test_build_refuses_a_non_empty_directory(tmp_path):
    (tmp_path / "old.txt").write_text("keep me")
    with pytest.raises(DifusiError, match="already exists and is not empty"):
        build_checkpoint("tiny", tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["old.txt"]


def test_unknown_preset():
    with pytest.raises(DifusiError, match="unknown model preset 'huge'; choose one of tiny, small"):
        preset_config("huge", None)
