"""Shared fixtures: one tiny random LLaDA checkpoint (project tokenizer included), built once per run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer

from difusi import LLaDAModelLM
from difusi.model.presets import build_checkpoint


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Directory of a `tiny` preset checkpoint, seed 0: config, safetensors, tokenizer, generation config."""
    return build_checkpoint("tiny", tmp_path_factory.mktemp("checkpoints") / "tiny", seed=0)


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_checkpoint: Path):
    """The tiny checkpoint's tokenizer (byte-level BPE, 512 ids, LLaDA special tokens and chat template)."""
    return AutoTokenizer.from_pretrained(tiny_checkpoint)


@pytest.fixture
def tiny_model(tiny_checkpoint: Path) -> LLaDAModelLM:
    """A fresh fp32 copy of the tiny model in eval mode (function scope: tests may train it)."""
    return LLaDAModelLM.from_pretrained(tiny_checkpoint).eval()


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models gain nothing from threads, and on a busy machine two threads wait on each other
    (a 16-step generate took seconds instead of 40 ms)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
