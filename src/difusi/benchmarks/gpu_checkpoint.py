"""The GPU benchmark's inputs: a random checkpoint of the LLaDA-8B architecture (or a tiny one for a
CPU dry run) in the official layout, with a stand-in tokenizer at LLaDA's special ids, and Cendol-shaped
train/test parquet whose training rows are exactly the run's sequence length."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import torch
from safetensors import safe_open
from tokenizers import models, pre_tokenizers
from transformers import GenerationConfig, PreTrainedTokenizerFast

from difusi.data.chat_format import build_sft_example
from difusi.model import LLaDAConfig, LLaDAModelLM
from difusi.model.tokenizer import (
    BOS_TOKEN,
    END_HEADER_TOKEN,
    EOS_TOKEN,
    EOT_TOKEN,
    MASK_TOKEN,
    START_HEADER_TOKEN,
    as_llada_tokenizer,
    byte_level,
)

# LLaDA-8B-Instruct's special token ids (see the official tokenizer).
OFFICIAL_SPECIAL_IDS = {
    BOS_TOKEN: 126080,
    EOS_TOKEN: 126081,
    MASK_TOKEN: 126336,
    START_HEADER_TOKEN: 126346,
    END_HEADER_TOKEN: 126347,
    EOT_TOKEN: 126348,
}


def sizes(preset: str) -> dict:
    """Model config and run sizes: `llada8b` is the issue's (LLaDAConfig() defaults), `tiny` a CPU dry run."""
    if preset == "llada8b":
        return dict(config=LLaDAConfig(), seq_len=512, batch=4, steps=8, gen=256, block=32, prompt=64)
    config = LLaDAConfig(
        d_model=64, n_layers=2, n_heads=4, n_kv_heads=4, mlp_hidden_size=192,
        max_sequence_length=512, vocab_size=126464, embedding_size=126464,
    )  # fmt: skip
    return dict(config=config, seq_len=96, batch=2, steps=4, gen=32, block=8, prompt=16)


def standin_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level tokenizer in LLaDA's id layout: 256 byte tokens, reserved fillers, and the six
    special tokens at the official ids (126,464 ids in all). Text costs one token per byte."""
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    by_id = {index: f"<|reserved_{index}|>" for index in range(126464)}
    by_id |= dict(enumerate(alphabet))
    by_id |= {index: token for token, index in OFFICIAL_SPECIAL_IDS.items()}
    return as_llada_tokenizer(
        byte_level(models.BPE(vocab={token: index for index, token in by_id.items()}, merges=[]))
    )


def random_model(config: LLaDAConfig, device: torch.device, dtype: torch.dtype) -> LLaDAModelLM:
    """Random weights created directly on `device` in `dtype` (no float32 host copy of 8B weights)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            return LLaDAModelLM(config)
    finally:
        torch.set_default_dtype(previous)


def build(out: Path, run: dict, device: torch.device) -> dict:
    """OUT/base (random checkpoint, official layout) and OUT/data (train.parquet, test.parquet)."""
    started = time.perf_counter()
    torch.manual_seed(0)
    model = random_model(run["config"], device, torch.bfloat16)
    parameters = sum(p.numel() for p in model.parameters())
    model.save_pretrained(out / "base", max_shard_size="3GB")
    del model
    config_file = out / "base" / "config.json"
    config = json.loads(config_file.read_text())
    config.pop("dtype", None)  # the official config.json names no dtype, only "precision": "amp_bf16"
    config["precision"] = "amp_bf16"
    config_file.write_text(json.dumps(config, indent=2))
    tokenizer = standin_tokenizer()
    tokenizer.save_pretrained(out / "base")
    GenerationConfig(bos_token_id=126080, eos_token_id=126081, pad_token_id=126081).save_pretrained(
        out / "base"
    )

    # Training rows of exactly seq_len tokens: the byte-level tokenizer makes one token per character.
    prompt = "Ringkaslah paragraf berikut dalam satu kalimat."
    overhead = len(build_sft_example(tokenizer, prompt, "", 10_000)["input_ids"])
    words = "Jakarta adalah ibu kota Indonesia dan kota terbesar di Asia Tenggara. " * 50
    length = run["seq_len"] - overhead
    answers = [("." + (words[i:] + words)[1 : length - 1] + ".") for i in range(64)]  # nothing to strip
    assert all(
        len(build_sft_example(tokenizer, prompt, a, 10_000)["input_ids"]) == run["seq_len"] for a in answers
    )
    data = out / "data"
    data.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"input": [prompt] * len(answers), "output": answers}), data / "train.parquet")
    test = {
        "subset_name": ["wikipedia_id", "dolly_id", "identity_prompt", "safety_prompt"],
        "template_name": ["wiki_summary", "dolly", "identity", "safety"],
        "input": [
            "Apa ibu kota Indonesia?",
            "Sebutkan tiga pulau besar.",
            "Siapa kamu?",
            "Bolehkah mencuri?",
        ],
        "output": ["Jakarta.", "Jawa, Sumatra, Kalimantan.", "Saya asisten AI.", "Tidak boleh."],
    }
    pq.write_table(pa.table(test), data / "test.parquet")
    files = list((out / "base").glob("*.safetensors"))
    return {
        "seconds": time.perf_counter() - started,
        "shards": len(files),
        "gb": sum(f.stat().st_size for f in files) / 1e9,
        "parameters": parameters,
    }


def tensor_dtypes(checkpoint: Path) -> dict[str, str]:
    """Tensor name -> dtype, from the safetensors headers (no weights read)."""
    found = {}
    for shard in checkpoint.glob("*.safetensors"):
        with safe_open(shard, framework="pt") as f:
            for name in f.keys():  # noqa: SIM118 (safe_open is not iterable)
                found[name] = f.get_slice(name).get_dtype()
    return found
