"""LLaDAModelLM answers the calls every transformers model answers, as transformers' own models do."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from datasets import Dataset
from safetensors.torch import load_file, save_file
from test_modeling import TINY, tiny_model  # this folder is on sys.path (pytest rootdir imports)
from transformers import AutoModelForMaskedLM, Trainer, TrainingArguments

from difusi import LLaDAConfig, LLaDAModelLM
from difusi.model.loading import check_checkpoint_tensors


@pytest.fixture
def saved(tmp_path):
    tiny_model().save_pretrained(tmp_path / "ckpt")
    return tmp_path / "ckpt"


def _edit_tensors(saved, edit) -> None:
    tensors = load_file(saved / "model.safetensors")
    edit(tensors)
    save_file(tensors, saved / "model.safetensors", metadata={"format": "pt"})


# --- from_pretrained ----------------------------------------------------------------------------


def test_output_loading_info_returns_the_model_and_the_report(saved):
    model, info = LLaDAModelLM.from_pretrained(saved, output_loading_info=True)
    assert isinstance(model, LLaDAModelLM) and model.name_or_path == str(saved)
    assert len(info["missing_keys"]) == 0
    assert not info["unexpected_keys"] and not info["mismatched_keys"]


def test_state_dict_with_no_path_loads_it():
    source = tiny_model(seed=3)
    model = LLaDAModelLM.from_pretrained(None, config=source.config, state_dict=source.state_dict()).eval()
    ids = torch.randint(0, 96, (2, 7))
    torch.testing.assert_close(model(ids).logits, source(ids).logits, rtol=0, atol=0)


def test_partial_checkpoint_reports_and_initialises_the_missing_tensors(saved):
    original = tiny_model()
    _edit_tensors(
        saved,
        lambda t: [
            t.pop(n) for n in ("model.transformer.ln_f.weight", "model.transformer.blocks.1.q_proj.weight")
        ],
    )
    torch.manual_seed(0)
    model, info = LLaDAModelLM.from_pretrained(saved, output_loading_info=True)
    assert set(info["missing_keys"]) == {
        "model.transformer.ln_f.weight",
        "model.transformer.blocks.1.q_proj.weight",
    }
    blocks = model.model.transformer.blocks
    # Initialised by the model's own _init_weights: RMSNorm scales to one, linears N(0, init_std).
    assert torch.equal(model.model.transformer.ln_f.weight, torch.ones(32))
    q = blocks[1].q_proj.weight
    assert not torch.equal(q, original.model.transformer.blocks[1].q_proj.weight)
    assert abs(q.std().item() - TINY.get("init_std", 0.02)) < 0.005 and abs(q.mean().item()) < 0.005
    # Everything present in the checkpoint is loaded unchanged.
    torch.testing.assert_close(
        blocks[0].q_proj.weight, original.model.transformer.blocks[0].q_proj.weight, rtol=0, atol=0
    )


def test_unexpected_tensor_is_reported_and_dropped(saved):
    _edit_tensors(
        saved, lambda t: t.update({"model.transformer.blocks.2.q_proj.weight": torch.zeros(32, 32)})
    )
    model, info = LLaDAModelLM.from_pretrained(saved, output_loading_info=True)
    assert "model.transformer.blocks.2.q_proj.weight" in info["unexpected_keys"]
    ids = torch.randint(0, 96, (1, 6))
    torch.testing.assert_close(model(ids).logits, tiny_model()(ids).logits, rtol=0, atol=0)


def test_mis_shaped_tensor_is_refused_unless_mismatches_are_ignored(saved):
    name = "model.transformer.blocks.1.q_proj.weight"
    _edit_tensors(saved, lambda t: t.update({name: torch.zeros(32, 16)}))
    with pytest.raises(RuntimeError, match="ignore_mismatched_sizes"):
        LLaDAModelLM.from_pretrained(saved)
    model, info = LLaDAModelLM.from_pretrained(saved, ignore_mismatched_sizes=True, output_loading_info=True)
    assert [m[0] for m in info["mismatched_keys"]] == [name]
    assert model.model.transformer.blocks[1].q_proj.weight.shape == (32, 32)


def test_automodel_for_masked_lm_finds_the_model(saved):
    assert isinstance(AutoModelForMaskedLM.from_pretrained(saved), LLaDAModelLM)


# --- forward: outputs, embeddings, labels ---------------------------------------------------------


def test_return_dict_false_gives_the_dicts_values_as_a_tuple():
    model = tiny_model()
    ids = torch.randint(2, 95, (2, 8))
    labels = torch.full_like(ids, -100)
    labels[:, 3] = ids[:, 3]
    out = model(ids, labels=labels)
    (logits,) = model(ids, return_dict=False)
    torch.testing.assert_close(logits, out.logits, rtol=0, atol=0)
    loss, logits = model(ids, labels=labels, return_dict=False)
    torch.testing.assert_close(loss, out.loss, rtol=0, atol=0)
    model.config.return_dict = False  # the config's default, as in transformers
    assert isinstance(model(ids), tuple) and len(model(ids)) == 1


def test_hidden_states_from_the_call_or_the_config():
    model = tiny_model()
    ids = torch.randint(2, 95, (2, 8))
    assert model(ids).hidden_states is None
    model.config.output_hidden_states = True
    states = model(ids).hidden_states
    assert len(states) == model.config.n_layers + 1 and all(s.shape == (2, 8, 32) for s in states)
    torch.testing.assert_close(states[0], model.get_input_embeddings()(ids), rtol=0, atol=0)
    assert model(ids, output_hidden_states=False).hidden_states is None


def test_inputs_embeds_equal_input_ids_and_exactly_one_is_required():
    model = tiny_model()
    ids = torch.randint(2, 95, (2, 8))
    embeds = model.get_input_embeddings()(ids)
    torch.testing.assert_close(model(inputs_embeds=embeds).logits, model(ids).logits, rtol=0, atol=0)
    with pytest.raises(ValueError, match="exactly one of input_ids and inputs_embeds"):
        model(ids, inputs_embeds=embeds)
    with pytest.raises(ValueError, match="exactly one of input_ids and inputs_embeds"):
        model()


def test_labels_give_the_masked_cross_entropy_by_hand():
    model = tiny_model()
    ids = torch.randint(2, 95, (2, 8))
    labels = torch.full_like(ids, -100)
    positions = [(0, 1), (0, 5), (1, 2)]
    for row, col in positions:
        labels[row, col] = ids[row, col]
    logits = model(ids).logits
    by_hand = sum(-F.log_softmax(logits[r, c], dim=-1)[ids[r, c]] for r, c in positions) / len(positions)
    torch.testing.assert_close(model(ids, labels=labels).loss, by_hand)
    # num_items_in_batch (gradient accumulation): the sum over this batch's tokens / the total count.
    torch.testing.assert_close(model(ids, labels=labels, num_items_in_batch=6).loss, by_hand * 3 / 6)
    # With logits only at some positions, the labels there are scored.
    masked = labels != -100
    torch.testing.assert_close(model(ids, labels=labels, logits_positions=masked).loss, by_hand)


def test_a_plain_trainer_trains_it_with_labels(tmp_path):
    model = tiny_model().train()
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(2, 94, (16, 8), generator=generator)
    masked = torch.rand(16, 8, generator=generator) < 0.5
    rows = {
        "input_ids": torch.where(masked, 95, ids).tolist(),
        "labels": torch.where(masked, ids, -100).tolist(),
    }
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    args = TrainingArguments(
        tmp_path,
        max_steps=3,
        per_device_train_batch_size=4,
        gradient_accumulation_steps=2,
        learning_rate=1e-2,
        logging_steps=1,
        report_to=[],
        use_cpu=True,
        save_strategy="no",
    )
    trainer = Trainer(model=model, args=args, train_dataset=Dataset.from_dict(rows))
    assert trainer.model_accepts_loss_kwargs
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == 3 and all(0 < loss < 10 for loss in losses)
    assert all(not torch.equal(p, before[n]) for n, p in model.named_parameters())


def test_peft_prompt_tuning_trains_only_the_virtual_tokens():
    from peft import PromptTuningConfig, get_peft_model

    base = tiny_model()
    # peft reads the head count from config keys LLaDA's official config.json does not use (n_heads).
    config = PromptTuningConfig(
        task_type="TOKEN_CLS", num_virtual_tokens=4, num_attention_heads=base.config.n_heads
    )
    model = get_peft_model(base, config)
    ids = torch.randint(2, 95, (2, 8))
    # peft feeds inputs_embeds with the 4 virtual tokens in front of the 8 real ones.
    logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
    assert logits.shape == (2, 12, 96)
    F.cross_entropy(logits[:, 4 + 2], ids[:, 2]).backward()
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("prompt_encoder" in n for n in trainable)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters() if p.requires_grad)


# --- attention implementations ------------------------------------------------------------------


@pytest.mark.parametrize("overrides", [{}, {"causal": True}, {"n_kv_heads": 2}, {"block_size": 3}])
def test_eager_equals_sdpa_and_its_attention_rows_sum_to_one_over_unmasked_keys(overrides):
    sdpa = tiny_model(**overrides)
    eager = tiny_model(**overrides, attn_implementation="eager")
    assert sdpa.config._attn_implementation == "sdpa" and eager.config._attn_implementation == "eager"
    ids = torch.randint(2, 95, (2, 9))
    mask = torch.ones_like(ids)
    mask[0, :3] = 0  # left padding
    out = eager(ids, attention_mask=mask, output_attentions=True)
    real = mask.bool()
    torch.testing.assert_close(
        out.logits[real], sdpa(ids, attention_mask=mask).logits[real], rtol=1e-5, atol=1e-5
    )
    assert len(out.attentions) == 2 and all(a.shape == (2, 4, 9, 9) for a in out.attentions)
    q, k = torch.arange(9)[:, None], torch.arange(9)[None, :]
    visible = mask.bool()[:, None, None, :].expand(2, 1, 9, 9)
    if overrides.get("causal"):
        visible = visible & (k <= q)
    if "block_size" in overrides:
        visible = visible & (k // 3 <= q // 3)
    real_rows = real[:, None, :, None].expand(2, 4, 9, 9)  # padded queries attend to nothing real
    for weights in out.attentions:
        torch.testing.assert_close(weights[real_rows].view(-1, 9).sum(-1), torch.ones(int(real.sum()) * 4))
        assert torch.all(weights[real_rows & ~visible.expand(2, 4, 9, 9)] == 0)
    # Asking an SDPA model for the weights takes the eager path for that call.
    from_sdpa = sdpa(ids, attention_mask=mask, output_attentions=True).attentions[1]
    torch.testing.assert_close(from_sdpa[real_rows], out.attentions[1][real_rows], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("overrides", [{"causal": True}, {"block_size": 3}])
def test_eager_keeps_the_attention_pattern_without_padding(overrides):
    ids = torch.randint(2, 95, (2, 9))
    sdpa, eager = tiny_model(**overrides), tiny_model(**overrides, attn_implementation="eager")
    torch.testing.assert_close(eager(ids).logits, sdpa(ids).logits, rtol=1e-5, atol=1e-5)
    weights = eager(ids, output_attentions=True).attentions[0]
    q, k = torch.arange(9)[:, None], torch.arange(9)[None, :]
    hidden = k > q if "causal" in overrides else k // 3 > q // 3
    assert torch.all(weights[:, :, hidden] == 0)


def test_attn_implementation_of_from_pretrained_and_set_attn_implementation(saved):
    model = LLaDAModelLM.from_pretrained(saved, attn_implementation="eager")
    assert model.config._attn_implementation == "eager"
    model.set_attn_implementation("sdpa")
    assert model.config._attn_implementation == "sdpa"
    with pytest.raises(ValueError, match="does not support Flash Attention 2"):  # transformers' own refusal
        LLaDAModelLM.from_pretrained(saved, attn_implementation="flash_attention_2")


# --- checkpointing, resizing, tying, round trips ---------------------------------------------------


@pytest.mark.parametrize("reentrant", [True, False])
def test_gradient_checkpointing_enable_gives_the_same_gradients(reentrant):
    ids = torch.randint(0, 96, (2, 10))

    def grads(checkpointing: bool) -> dict[str, torch.Tensor]:
        model = tiny_model().train()
        if checkpointing:
            with pytest.warns(FutureWarning):  # transformers' deprecated name, still the common call
                model.gradient_checkpointing_enable(
                    gradient_checkpointing_kwargs={"use_reentrant": reentrant}
                )
            assert model.is_activation_checkpointing
        model(ids).logits.float().pow(2).mean().backward()
        return {n: p.grad for n, p in model.named_parameters()}

    plain, checkpointed = grads(False), grads(True)
    for name, grad in plain.items():
        torch.testing.assert_close(checkpointed[name], grad, rtol=1e-6, atol=1e-7, msg=name)


def test_resize_token_embeddings_saves_and_loads(tmp_path):
    model = tiny_model()
    ids = torch.randint(0, 96, (1, 6))
    before = model(ids).logits
    model.resize_token_embeddings(100)
    assert model.get_input_embeddings().weight.shape == (100, 32)
    assert model.get_output_embeddings().weight.shape == (100, 32)
    assert model.config.vocab_size == model.config.embedding_size == 100
    torch.testing.assert_close(model(ids).logits[..., :96], before, rtol=0, atol=0)  # old rows kept
    model.save_pretrained(tmp_path)
    loaded = LLaDAModelLM.from_pretrained(tmp_path)
    torch.testing.assert_close(loaded(ids).logits, model(ids).logits, rtol=0, atol=0)


@pytest.mark.parametrize("switch", ["weight_tying", "tie_word_embeddings"])
def test_tied_head_shares_the_embedding_and_round_trips(tmp_path, switch):
    model = tiny_model(**{switch: True})
    assert model.config.weight_tying and model.config.tie_word_embeddings
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
    model.save_pretrained(tmp_path)
    assert "model.transformer.ff_out.weight" not in load_file(tmp_path / "model.safetensors")
    check_checkpoint_tensors(tmp_path)  # the command line's strict check takes the tied layout too
    for loaded in (LLaDAModelLM.from_pretrained(tmp_path), AutoModelForMaskedLM.from_pretrained(tmp_path)):
        assert loaded.get_output_embeddings().weight is loaded.get_input_embeddings().weight
        ids = torch.randint(0, 96, (1, 6))
        torch.testing.assert_close(loaded(ids).logits, model(ids).logits, rtol=0, atol=0)


def test_untied_head_round_trips_in_safetensors(tmp_path):
    model = tiny_model()
    assert model.get_output_embeddings().weight is not model.get_input_embeddings().weight
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file() and not list(tmp_path.glob("*.bin"))
    saved = load_file(tmp_path / "model.safetensors")
    assert set(saved) == set(model.state_dict())
    loaded = LLaDAModelLM.from_pretrained(tmp_path)
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], tensor, rtol=0, atol=0, msg=name)


def test_config_block_size_round_trips(tmp_path):
    LLaDAModelLM(LLaDAConfig(**TINY, block_size=4)).save_pretrained(tmp_path)
    assert LLaDAModelLM.from_pretrained(tmp_path).config.block_size == 4
    with pytest.raises(ValueError, match="block_size=0; use a positive block size or None"):
        LLaDAModelLM(LLaDAConfig(**TINY, block_size=0))


def test_generate_points_to_the_diffusion_sampler():
    model = tiny_model()
    assert not model.can_generate()
    with pytest.raises(NotImplementedError, match=r"call difusi\.generate\(model, prompt_ids"):
        model.generate(torch.ones(1, 3, dtype=torch.long))
