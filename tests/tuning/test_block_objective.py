"""`--objective block` on every training path: the saved model records its block size, and every
command that decodes picks the block sampler for it."""

from __future__ import annotations

import json

import pytest
import torch

from difusi import LLaDAModelLM
from difusi.cli import main
from difusi.diffusion.block import block_diffusion_loss
from difusi.diffusion.sampler import SamplerSettings
from difusi.errors import DifusiError
from difusi.generation import generate_answers
from difusi.model.loading import load_model
from difusi.tuning.config import PretrainConfig
from difusi.tuning.pretrain import pretrain
from difusi.tuning.train import train


def test_full_fine_tuning_with_the_block_objective_saves_a_block_model(make_config):
    run = train(make_config(method="full", objective="block", block_size=4, max_steps=2))
    config = json.loads((run / "model" / "config.json").read_text())
    assert config["block_size"] == 4 and config["causal"] is False
    losses = [
        json.loads(line)["loss"]
        for line in (run / "metrics.jsonl").read_text().splitlines()
        if "loss" in line
    ]
    assert len(losses) == 2 and all(0 < loss < 20 for loss in losses)


@pytest.mark.parametrize("method", ["lora", "loraplus", "pissa"])
def test_adapters_with_the_block_objective_load_as_block_models(make_config, method):
    run = train(make_config(method=method, objective="block", block_size=4, max_steps=2))
    model, _ = load_model(make_config().base, run / "adapter", "cpu")
    assert model.config.block_size == 4


def test_the_first_logged_loss_is_the_block_loss_of_the_first_batch(make_config, tiny_checkpoint):
    """The trainer's loss is block_diffusion_loss with the run's noise: the same value recomputed."""
    from difusi.tuning.train import prepare_run
    from difusi.tuning.trainer import noise_generator

    run = prepare_run(
        make_config(method="full", objective="block", block_size=4, max_steps=1, grad_accumulation=1)
    )
    batch = next(iter(run.trainer.get_train_dataloader()))
    model = LLaDAModelLM.from_pretrained(tiny_checkpoint)
    model.config.block_size = 4
    expected = block_diffusion_loss(
        model.train(), batch["input_ids"], model.config.mask_token_id, 4, batch["prompt_lengths"],
        noise_generator(42, 0, 0), True, "answer_length",
    )  # fmt: skip
    got = run.trainer.compute_loss(run.trainer.model, batch)
    torch.testing.assert_close(got, expected)


def test_pretraining_with_the_block_objective(tmp_path):
    out = pretrain(
        PretrainConfig(
            out=str(tmp_path / "pre"), preset="tiny", max_steps=2, batch_size=4, seq_len=16,
            objective="block", block_size=4, logging_steps=1, save_steps=100,
        )
    )  # fmt: skip
    model = LLaDAModelLM.from_pretrained(out / "model")
    assert model.config.block_size == 4 and not model.config.causal
    assert json.loads((out / "run_info.json").read_text())["block_size"] == 4


def test_generate_answers_and_evaluate_decode_a_block_model_by_its_config(make_config, tmp_path, sft_data):
    run = train(make_config(method="full", objective="block", block_size=4, max_steps=1))
    model, tokenizer = load_model(run / "model", device="cpu")
    prompts = [tokenizer.encode("Apa ibu kota Indonesia?"), tokenizer.encode("Halo")]
    passes = []
    answers = generate_answers(
        model, tokenizer, prompts, SamplerSettings(gen_length=8, steps=8, threshold=0.9), batch_size=2,
        progress=False, on_step=lambda batch, area: passes.append(area.shape),
    )  # fmt: skip
    assert len(answers) == 2 and passes and all(shape == (2, 8) for shape in passes)
    assert main(["evaluate", "--base", str(run / "model"), "--data", str(sft_data / "train.parquet"),
                 "--out", str(tmp_path / "eval"), "--gen-length", "8", "--steps", "8", "--block-length", "8", "--limit", "2",
                 "--mc-num", "2"]) == 0  # fmt: skip
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["n"] == 2 and metrics["overall"]["nelbo_per_token"] > 0


def test_a_block_size_below_one_is_refused(make_config):
    with pytest.raises(DifusiError, match="block size 0 must be at least 1"):
        train(make_config(objective="block", block_size=0))
