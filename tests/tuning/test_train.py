"""Acceptance tests of fine-tuning on the tiny model: LoRA+ vs LoRA, frozen bases, PiSSA conversion, resume."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file

from difusi import LLaDAModelLM
from difusi.tuning.train import prepare_run


def fit(config):
    run = prepare_run(config)
    run.fit()
    return run


def params(model) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def test_loraplus_with_ratio_one_reproduces_lora(make_config, tmp_path):
    lora = fit(make_config(method="lora", out=str(tmp_path / "lora")))
    loraplus = fit(make_config(method="loraplus", loraplus_ratio=1.0, out=str(tmp_path / "loraplus")))
    a, b = params(lora.model), params(loraplus.model)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[name], b[name]) for name in a)
    # and the adapters did move away from their zero-initialised B
    assert any(name.endswith("lora_B.default.weight") and a[name].abs().sum() > 0 for name in a)


def test_loraplus_learning_rates_per_group(make_config):
    run = fit(make_config(method="loraplus", loraplus_ratio=16.0, max_steps=1, scheduler="constant"))
    first = json.loads((run.out / "metrics.jsonl").read_text().splitlines()[0])
    assert first["lr"] == {"lora_A": 1e-2, "lora_B": 0.16}
    assert first["step"] == 1 and first["tokens_per_s"] > 0 and first["wall_time_s"] > 0


def test_lora_changes_only_adapter_parameters(make_config, tiny_checkpoint):
    run = fit(make_config(method="lora"))
    original = params(LLaDAModelLM.from_pretrained(tiny_checkpoint))
    trained = params(run.model)
    base = {
        name.replace("base_model.model.", "").replace(".base_layer", ""): t for name, t in trained.items()
    }
    frozen = {name: t for name, t in base.items() if "lora_" not in name}
    assert frozen.keys() == original.keys()
    assert all(torch.equal(frozen[name], original[name]) for name in original)
    trainable = [name for name, p in run.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_A" in name or "lora_B" in name for name in trainable)
    # 2 blocks x 7 linears, each a lora_A and a lora_B; the output head is not adapted
    assert len(trainable) == 28
    assert not any("transformer.ff_out" in name for name in trainable)


def test_pissa_residual_stays_frozen_and_adapter_works_on_original_base(make_config, tiny_checkpoint):
    run = prepare_run(make_config(method="pissa", rank=4, alpha=4.0, pissa_niter=0))
    residual = {n: p.detach().clone() for n, p in run.model.named_parameters() if not p.requires_grad}
    original = LLaDAModelLM.from_pretrained(tiny_checkpoint)
    q_residual = residual["base_model.model.model.transformer.blocks.0.q_proj.base_layer.weight"]
    assert not torch.allclose(q_residual, original.model.transformer.blocks[0].q_proj.weight)
    run.fit()
    after = {n: p for n, p in run.model.named_parameters() if not p.requires_grad}
    assert all(torch.equal(after[name], residual[name]) for name in residual)

    # The saved adapter is the converted rank-2r LoRA for the ORIGINAL base.
    adapter_config = json.loads((run.out / "adapter" / "adapter_config.json").read_text())
    assert adapter_config["r"] == 8 and adapter_config["init_lora_weights"] is True
    ids = torch.randint(0, original.config.vocab_size, (2, 12), generator=torch.Generator().manual_seed(0))
    run.model.eval()
    with torch.no_grad():
        expected = run.model(input_ids=ids).logits
        loaded = PeftModel.from_pretrained(original, run.out / "adapter").eval()
        got = loaded(input_ids=ids).logits
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("method", ["lora", "pissa"])
def test_resume_equals_uninterrupted_training(make_config, tmp_path, method):
    # PiSSA's randomized SVD is redone on resume: it must give the same residual base again.
    settings = dict(method=method, dropout=0.1, max_steps=4, save_steps=3, pissa_niter=2)
    whole = fit(make_config(out=str(tmp_path / "whole"), **settings)).out

    # Interrupted after step 3: only checkpoint-3 survives, metrics.jsonl already holds step 4.
    cut = fit(make_config(out=str(tmp_path / "cut"), **settings)).out
    for name in ("checkpoints/checkpoint-4", "adapter", "run_info.json"):
        shutil.rmtree(cut / name, ignore_errors=True) if (cut / name).is_dir() else (cut / name).unlink()
    assert sorted(p.name for p in (cut / "checkpoints").iterdir()) == ["checkpoint-3"]
    run = prepare_run(make_config(out=str(tmp_path / "cut"), **settings), resume=True)
    assert run.checkpoint.endswith("checkpoint-3")
    run.fit()

    a = load_file(whole / "adapter" / "adapter_model.safetensors")
    b = load_file(cut / "adapter" / "adapter_model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    losses = [json.loads(line) for line in (cut / "metrics.jsonl").read_text().splitlines()]
    expected = [json.loads(line) for line in (whole / "metrics.jsonl").read_text().splitlines()]
    assert [e["step"] for e in losses if "loss" in e] == [1, 2, 3, 4]
    assert [e["loss"] for e in losses if "loss" in e] == [e["loss"] for e in expected if "loss" in e]
    assert (
        json.loads((cut / "run_info.json").read_text())["tokens_seen"]
        == json.loads((whole / "run_info.json").read_text())["tokens_seen"]
    )


def test_run_directory_and_eval_elbo(make_config, sft_data_with_test, tiny_checkpoint, caplog):
    run = fit(make_config(method="lora", data=str(sft_data_with_test), eval_steps=2, max_steps=4))
    truncated = run.train_data.truncated
    assert 0 < truncated < 16
    assert f"{truncated} of 16 training rows exceed max_length 64: their answers were cut" in caplog.text
    out = run.out
    assert sorted(p.name for p in out.iterdir()) == [
        ".lock",  # the run's lock file: unlocked, it holds the last run's pid
        "adapter",
        "checkpoints",
        "config.yaml",
        "metrics.jsonl",
        "run_info.json",
        "tensorboard",
    ]
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    evals = [(e["step"], e["eval_elbo"]) for e in lines if "eval_elbo" in e]
    assert [step for step, _ in evals] == [0, 2, 4]  # the base model, then every 2 steps
    assert lines[0]["wall_time_s"] == 0.0
    assert all(value > 0 for _, value in evals)
    train_lines = [e for e in lines if "loss" in e]
    assert [e["step"] for e in train_lines] == [1, 2, 3, 4]
    assert set(train_lines[0]) == {
        "step",
        "epoch",
        "loss",
        "lr",
        "tokens_per_s",
        "tokens_seen",
        "wall_time_s",
    }
    assert train_lines[0]["lr"] == {"decay": 1e-2}

    info = json.loads((out / "run_info.json").read_text())
    assert (info["method"], info["seed"], info["steps"], info["train_rows"], info["world_size"]) == (
        "lora",
        42,
        4,
        16,
        1,
    )
    assert info["trainable_params"] == 2 * (4 * (64 + 64) * 4 + 2 * (64 + 192) * 4 + (192 + 64) * 4)
    base_params = sum(p.numel() for p in LLaDAModelLM.from_pretrained(tiny_checkpoint).parameters())
    assert info["total_params"] == base_params + info["trainable_params"]
    assert info["tokens_seen"] == train_lines[-1]["tokens_seen"] > 0
    assert info["truncated_rows"] == run.train_data.truncated
    assert info["peak_memory_bytes"] > 0 and info["time_per_step_s"] > 0 and info["tokens_per_s"] > 0


def test_full_fine_tuning_writes_a_whole_checkpoint(make_config, tiny_checkpoint):
    run = fit(make_config(method="full", learning_rate=1e-3, max_steps=2))
    assert all(p.requires_grad for p in run.model.parameters())
    saved = LLaDAModelLM.from_pretrained(run.out / "model")
    trained = params(run.model)
    assert all(torch.equal(p, trained[name]) for name, p in saved.named_parameters())
    original = LLaDAModelLM.from_pretrained(tiny_checkpoint)
    assert not torch.equal(saved.model.transformer.ff_out.weight, original.model.transformer.ff_out.weight)
    assert (run.out / "model" / "tokenizer.json").is_file() and not (run.out / "adapter").exists()


def test_gradient_checkpointing_gives_the_same_training(make_config, tmp_path):
    plain = fit(make_config(method="lora", max_steps=2, out=str(tmp_path / "plain")))
    checkpointed = fit(
        make_config(method="lora", max_steps=2, gradient_checkpointing=True, out=str(tmp_path / "ckpt"))
    )
    assert checkpointed.model.base_model.model.model.transformer.blocks[0].gradient_checkpointing
    assert not plain.model.base_model.model.model.transformer.blocks[0].gradient_checkpointing
    a, b = params(plain.model), params(checkpointed.model)
    assert all(torch.allclose(a[name], b[name], atol=1e-6) for name in a)


def test_pissa_conversion_on_the_saved_files_equals_peft_s_own(make_config, tmp_path):
    from difusi.tuning.adapters import save_adapter
    from difusi.tuning.train import PISSA_INITIAL_DIR

    config = make_config(method="pissa", rank=4, alpha=4.0, pissa_niter=0, max_steps=2)
    run = prepare_run(config)
    run.trainer.train()
    initial = run.out / PISSA_INITIAL_DIR
    run.model.save_pretrained(tmp_path / "peft", path_initial_model_for_weight_conversion=str(initial))
    save_adapter(run.model, config, tmp_path / "ours", initial)

    theirs, ours = (load_file(tmp_path / d / "adapter_model.safetensors") for d in ("peft", "ours"))
    assert theirs.keys() == ours.keys() and all(torch.equal(ours[k], theirs[k]) for k in theirs)
    configs = [json.loads((tmp_path / d / "adapter_config.json").read_text()) for d in ("peft", "ours")]
    assert [(c["r"], c["lora_alpha"], c["init_lora_weights"]) for c in configs] == [(8, 8.0, True)] * 2
