"""`--objective ar`: the autoregressive baseline trained by `difusi pretrain` / `difusi train` and
decoded by `difusi evaluate` with key/value-cached autoregressive decoding."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from difusi import LLaDAModelLM
from difusi.autoregressive import next_token_loss
from difusi.diffusion.sampler import SamplerSettings
from difusi.errors import DifusiError
from difusi.evaluation.evaluate import EvaluationConfig, evaluate
from difusi.model.presets import build_checkpoint, preset_tokenizer
from difusi.synthetic.corpus import indonesian_sentences
from difusi.tuning.config import PretrainConfig, TrainConfig
from difusi.tuning.pretrain import pack_corpus, pretrain
from difusi.tuning.train import train

SENTENCES = indonesian_sentences()[:40]


def write_data(root):
    """train.parquet and test.parquet in the prepared schema: continue a real Indonesian sentence."""
    pairs = [("Lanjutkan: " + " ".join(s.split()[:4]), " ".join(s.split()[4:10])) for s in SENTENCES]
    for split, rows in (("train", pairs[:16]), ("test", pairs[16:19])):
        n = len(rows)
        table = {
            "dataset_name": ["cendol_collection_v2"] * n,
            "subset_name": ["wikipedia_id"] * n,
            "prompt_id": ["p0"] * n,
            "template_name": ["wikipedia_section_0"] * n,
            "dataset_key": ["train"] * n,
            "input": [p for p, _ in rows],
            "output": [a for _, a in rows],
        }
        pq.write_table(pa.table(table), root / f"{split}.parquet")
    return root


def test_ar_pretrain_lowers_next_token_loss_and_saves_a_causal_checkpoint(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(SENTENCES))
    config = PretrainConfig(
        out=str(tmp_path / "run"), corpus=str(corpus), preset="tiny", seq_len=32, batch_size=8,
        max_steps=8, logging_steps=4, precision="fp32", learning_rate=1e-2, warmup_ratio=0.0,
        objective="ar",
    )  # fmt: skip
    out = pretrain(config)
    trained = LLaDAModelLM.from_pretrained(out / "model").eval()
    assert trained.config.causal
    initial = LLaDAModelLM.from_pretrained(build_checkpoint("tiny", tmp_path / "init", seed=42)).eval()
    initial.config.causal = True
    tokenizer = preset_tokenizer("tiny")
    blocks = pack_corpus(SENTENCES, tokenizer, 32, trained.config.eos_token_id)
    batch = torch.tensor([block["input_ids"] for block in blocks[:8]])
    with torch.no_grad():
        before, after = next_token_loss(initial, batch), next_token_loss(trained, batch)
    assert after < before - 0.5  # from about ln(512) = 6.2 at random


def test_ar_train_gives_a_causal_checkpoint_that_evaluate_decodes(tiny_checkpoint, tmp_path):
    data = write_data(tmp_path)
    config = TrainConfig(
        base=str(tiny_checkpoint), data=str(data), out=str(tmp_path / "run"), method="full",
        objective="ar", learning_rate=1e-2, batch_size=4, grad_accumulation=1, max_steps=6,
        warmup_ratio=0.0, precision="fp32", max_length=64, eval_steps=0, eval_mc_num=2,
        logging_steps=1, save_steps=100,
    )  # fmt: skip
    out = train(config)
    losses = [json.loads(line).get("loss") for line in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [loss for loss in losses if loss is not None]
    assert len(losses) == 6 and losses[-1] < losses[0]
    assert LLaDAModelLM.from_pretrained(out / "model").config.causal
    sampler = SamplerSettings(steps=8, gen_length=8, block_length=8)
    metrics = evaluate(
        str(out / "model"),
        data / "test.parquet",
        tmp_path / "eval",
        config=EvaluationConfig(sampler=sampler, batch_size=2, mc_num=2, max_length=96),
        progress=False,
    )
    rows = [json.loads(line) for line in (tmp_path / "eval" / "generations.jsonl").read_text().splitlines()]
    assert metrics["n"] == len(rows) == 3
    assert all(0 <= row["answer_tokens"] <= 8 and row["nelbo"] > 0 for row in rows)


def test_ar_objective_refuses_an_adapter_on_a_diffusion_base(tiny_checkpoint, tmp_path):
    config = TrainConfig(
        base=str(tiny_checkpoint), data=str(write_data(tmp_path)), out=str(tmp_path / "run"),
        objective="ar", precision="fp32", max_length=64, max_steps=1,
    )  # fmt: skip
    with pytest.raises(DifusiError, match="--objective ar with an adapter needs a causal base"):
        train(config)


def test_unknown_objective_is_refused():
    with pytest.raises(DifusiError, match="unknown objective 'gpt'; choose one of diffusion, ar"):
        PretrainConfig(out="x", objective="gpt").validate()
