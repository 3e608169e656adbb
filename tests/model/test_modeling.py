"""LLaDAModelLM: official names and sizes, save/load round trips, padding, checkpointing, errors."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModel

from difusi import LLaDAConfig, LLaDAModelLM
from difusi.cli import main as cli_main
from difusi.errors import DifusiError
from difusi.model.loading import load_model

TINY = dict(
    d_model=32,
    n_heads=4,
    n_kv_heads=4,
    n_layers=2,
    mlp_hidden_size=64,
    vocab_size=96,
    embedding_size=96,
    max_sequence_length=64,
    mask_token_id=95,
    eos_token_id=1,
    pad_token_id=1,
)


def tiny_model(seed: int = 0, **overrides) -> LLaDAModelLM:
    torch.manual_seed(seed)
    return LLaDAModelLM(LLaDAConfig(**{**TINY, **overrides})).eval()


def test_8b_config_has_official_names_shapes_and_parameter_count():
    with torch.device("meta"):
        model = LLaDAModelLM(LLaDAConfig())
    shapes = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    assert len(shapes) == 291
    assert sum(p.numel() for p in model.parameters()) == 8_015_581_184
    assert shapes["model.transformer.wte.weight"] == (126464, 4096)
    assert shapes["model.transformer.ff_out.weight"] == (126464, 4096)
    assert shapes["model.transformer.ln_f.weight"] == (4096,)
    block = {k.split("blocks.31.")[1]: v for k, v in shapes.items() if "blocks.31." in k}
    assert block == {
        "attn_norm.weight": (4096,),
        "ff_norm.weight": (4096,),
        "q_proj.weight": (4096, 4096),
        "k_proj.weight": (4096, 4096),
        "v_proj.weight": (4096, 4096),
        "attn_out.weight": (4096, 4096),
        "ff_proj.weight": (12288, 4096),
        "up_proj.weight": (12288, 4096),
        "ff_out.weight": (4096, 12288),
    }
    assert not list(model.buffers())  # rotary tables are computed, never stored


def test_config_json_round_trip_keeps_unknown_keys(tmp_path):
    official = {
        "model_type": "llada",
        "architectures": ["LLaDAModelLM"],
        "auto_map": {"AutoModel": "modeling_llada.LLaDAModelLM"},
        "init_fn": "mitchell",
        "block_group_size": 1,
        "precision": "amp_bf16",
        **TINY,
    }
    (tmp_path / "config.json").write_text(json.dumps(official))
    config = LLaDAConfig.from_pretrained(tmp_path)
    assert (config.d_model, config.mask_token_id, config.init_fn) == (32, 95, "mitchell")
    config.save_pretrained(tmp_path / "out")
    written = json.loads((tmp_path / "out" / "config.json").read_text())
    for key, value in official.items():
        assert written[key] == value, key


def test_save_load_round_trip_is_exact(tmp_path):
    model = tiny_model()
    model.save_pretrained(tmp_path)
    loaded = LLaDAModelLM.from_pretrained(tmp_path, dtype=torch.float32)
    ids = torch.randint(0, 96, (2, 12))
    torch.testing.assert_close(loaded(ids).logits, model(ids).logits, rtol=0, atol=0)


def test_sharded_save_and_load(tmp_path):
    model = tiny_model()
    model.save_pretrained(tmp_path, max_shard_size="20KB")
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    shards = set(index["weight_map"].values())
    assert len(shards) > 2 and set(index["weight_map"]) == set(model.state_dict())
    loaded = LLaDAModelLM.from_pretrained(tmp_path)
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name


def test_automodel_loads_official_layout_without_remote_code(tmp_path):
    model = tiny_model()
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["auto_map"] = {"AutoModel": "modeling_llada.LLaDAModelLM"}  # the official file names remote code
    (tmp_path / "config.json").write_text(json.dumps(config))
    loaded = AutoModel.from_pretrained(tmp_path)
    assert isinstance(loaded, LLaDAModelLM)
    ids = torch.randint(0, 96, (1, 8))
    torch.testing.assert_close(loaded(ids).logits, model(ids).logits, rtol=0, atol=0)


def test_left_padding_with_attention_mask_matches_unpadded_row():
    model = tiny_model()
    row = torch.randint(2, 95, (1, 7))
    pad = 3
    padded = torch.cat([torch.full((1, pad), 1), row], dim=1)
    mask = torch.cat([torch.zeros(1, pad, dtype=torch.long), torch.ones(1, 7, dtype=torch.long)], dim=1)
    other = torch.randint(2, 95, (1, 10))
    batch = torch.cat([padded, other])
    batch_mask = torch.cat([mask, torch.ones(1, 10, dtype=torch.long)])
    logits = model(batch, attention_mask=batch_mask).logits
    # Same real tokens, but RoPE positions shift with the pads: compare against an unpadded row
    # placed at the same absolute positions by masking, not by content.
    reference = model(padded, attention_mask=mask).logits
    torch.testing.assert_close(logits[:1, pad:], reference[:, pad:], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(logits[1:], model(other).logits, rtol=1e-5, atol=1e-5)
    # Padded keys are invisible: changing the pad tokens leaves real positions unchanged.
    repadded = padded.clone()
    repadded[0, :pad] = torch.tensor([5, 6, 7])
    torch.testing.assert_close(
        model(repadded, attention_mask=mask).logits[:, pad:], reference[:, pad:], rtol=1e-5, atol=1e-5
    )


def test_attention_mask_of_ones_equals_no_mask():
    model = tiny_model()
    ids = torch.randint(0, 96, (2, 9))
    torch.testing.assert_close(model(ids, attention_mask=torch.ones_like(ids)).logits, model(ids).logits)


def test_attention_is_bidirectional_and_causal_variant_is_not():
    ids = torch.randint(2, 95, (1, 8))
    changed = ids.clone()
    changed[0, -1] = (ids[0, -1] + 1) % 95
    bidirectional, causal = tiny_model(), tiny_model(causal=True)
    assert not torch.allclose(bidirectional(ids).logits[0, 0], bidirectional(changed).logits[0, 0])
    torch.testing.assert_close(causal(ids).logits[0, :-1], causal(changed).logits[0, :-1])


def test_gradient_checkpointing_gives_same_gradients():
    ids = torch.randint(0, 96, (2, 10))

    def grads(checkpointing: bool) -> dict[str, torch.Tensor]:
        model = tiny_model().train()
        if checkpointing:
            model.activation_checkpointing_enable()
            assert all(block.gradient_checkpointing for block in model.model.transformer.blocks)
        model(ids).logits.float().pow(2).mean().backward()
        return {n: p.grad for n, p in model.named_parameters()}

    plain, checkpointed = grads(False), grads(True)
    for name, grad in plain.items():
        torch.testing.assert_close(checkpointed[name], grad, rtol=1e-6, atol=1e-7, msg=name)


def test_bf16_forward_runs_and_tracks_fp32():
    model = tiny_model()
    ids = torch.randint(0, 96, (2, 10))
    fp32 = model(ids).logits
    bf16 = model.to(torch.bfloat16)(ids).logits
    assert bf16.dtype == torch.bfloat16 and bf16.shape == (2, 10, 96)
    assert (bf16.float() - fp32).abs().max() < 0.05


def test_rotary_matches_hand_computed_rotation():
    from difusi.model.modeling_llada import apply_rotary_pos_emb, rotary_cos_sin

    cos, sin = rotary_cos_sin(3, 4, theta=10000.0, device=torch.device("cpu"))
    x = torch.tensor([1.0, 2.0, 3.0, 4.0]).expand(1, 1, 3, 4)
    out = apply_rotary_pos_emb(x, cos, sin, full_precision=True)[0, 0, 2]
    # Position 2, frequencies 1 and 1/100 on the half-split pairs (x0, x2) and (x1, x3).
    a, b = 2.0, 0.02
    expected = torch.tensor(
        [
            1 * torch.cos(torch.tensor(a)) - 3 * torch.sin(torch.tensor(a)),
            2 * torch.cos(torch.tensor(b)) - 4 * torch.sin(torch.tensor(b)),
            3 * torch.cos(torch.tensor(a)) + 1 * torch.sin(torch.tensor(a)),
            4 * torch.cos(torch.tensor(b)) + 2 * torch.sin(torch.tensor(b)),
        ]
    )
    torch.testing.assert_close(out, expected)


# --- loading errors: one clear line each --------------------------------------------------------


@pytest.fixture
def saved(tmp_path):
    tiny_model().save_pretrained(tmp_path / "ckpt")
    return tmp_path / "ckpt"


def test_missing_config_json(saved):
    (saved / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="no config.json in"):
        LLaDAModelLM.from_pretrained(saved)


def test_wrong_model_type(saved):
    config = json.loads((saved / "config.json").read_text())
    config["model_type"] = "llama"
    (saved / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="model_type 'llama'; expected 'llada'"):
        LLaDAModelLM.from_pretrained(saved)


def test_malformed_config_json_names_the_file(saved):
    (saved / "config.json").write_text('{"model_type": "llada",')
    with pytest.raises(ValueError, match=r"config\.json is not valid JSON .*; fix or re-download it"):
        LLaDAModelLM.from_pretrained(saved)


def test_truncated_shard_names_the_file(saved):
    shard = saved / "model.safetensors"
    shard.write_bytes(shard.read_bytes()[:-100])
    with pytest.raises(OSError, match=r"shard .*model\.safetensors is damaged or incomplete"):
        LLaDAModelLM.from_pretrained(saved)


def _edit_tensors(saved, edit) -> None:
    tensors = load_file(saved / "model.safetensors")
    edit(tensors)
    save_file(tensors, saved / "model.safetensors", metadata={"format": "pt"})


# load_model (the command line's loader) refuses an incomplete checkpoint, naming the tensor;
# LLaDAModelLM.from_pretrained behaves as transformers does (tests/model/test_transformers_conventions.py).


def test_load_model_names_a_mis_shaped_tensor(saved):
    _edit_tensors(
        saved, lambda t: t.update({"model.transformer.blocks.1.q_proj.weight": torch.zeros(32, 16)})
    )
    with pytest.raises(
        DifusiError,
        match=r"tensor model\.transformer\.blocks\.1\.q_proj\.weight has shape \[32, 16\]; the config expects \[32, 32\]",
    ):
        load_model(saved)


def test_load_model_names_a_missing_tensor(saved):
    _edit_tensors(saved, lambda t: t.pop("model.transformer.ln_f.weight"))
    with pytest.raises(DifusiError, match=r"missing tensor model\.transformer\.ln_f\.weight"):
        load_model(saved)


def test_load_model_names_an_unexpected_tensor(saved):
    _edit_tensors(
        saved, lambda t: t.update({"model.transformer.blocks.2.q_proj.weight": torch.zeros(32, 32)})
    )
    with pytest.raises(DifusiError, match=r"unexpected tensor model\.transformer\.blocks\.2\.q_proj\.weight"):
        load_model(saved)


def test_missing_shard(tmp_path):
    tiny_model().save_pretrained(tmp_path, max_shard_size="20KB")
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    shard = index["weight_map"]["model.transformer.ln_f.weight"]
    (tmp_path / shard).unlink()
    with pytest.raises(FileNotFoundError, match=f"shard {shard} listed in model.safetensors.index.json"):
        LLaDAModelLM.from_pretrained(tmp_path)


def test_unreachable_hub_id_is_one_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OSError, match="could not download LLaDA checkpoint 'GSAI-ML/LLaDA-8B-Instruct'"):
        LLaDAModelLM.from_pretrained("GSAI-ML/LLaDA-8B-Instruct")


def test_cli_reports_one_line_and_nonzero_exit(saved, capsys):
    (saved / "config.json").unlink()
    assert cli_main(["info", str(saved)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("difusi info: error: no config.json in") and "\n" not in err


# --- key/value cache ----------------------------------------------------------------------------


def test_kv_cache_autoregressive_decoding_equals_full_causal_pass():
    from difusi.model.modeling_llada import KVCache

    model = tiny_model(causal=True)
    ids = torch.randint(2, 95, (2, 9))
    mask = torch.ones_like(ids)
    mask[0, :2] = 0  # left padding in row 0
    full = model(ids, attention_mask=mask).logits
    cache = KVCache(model.config.n_layers)
    steps = [model(ids[:, :5], attention_mask=mask[:, :5], kv_cache=cache).logits]
    for pos in range(5, 9):
        steps.append(
            model(ids[:, pos : pos + 1], attention_mask=mask, kv_cache=cache, cache_start=pos).logits
        )
    assert len(cache) == 9
    real = mask.bool()  # padded queries see only padded keys: their logits are meaningless
    torch.testing.assert_close(torch.cat(steps, dim=1)[real], full[real], rtol=1e-5, atol=1e-5)


def test_kv_cache_block_refresh_is_exact_when_nothing_else_changed():
    from difusi.model.modeling_llada import KVCache

    model = tiny_model()
    ids = torch.randint(2, 95, (2, 12))
    cache = KVCache(model.config.n_layers)
    full = model(ids, kv_cache=cache).logits
    block = model(ids[:, 4:8], kv_cache=cache, cache_start=4).logits
    torch.testing.assert_close(block, full[:, 4:8], rtol=1e-5, atol=1e-5)
    # A changed token inside the block rewrites the block's cached keys; the keys outside the block
    # stay those of the earlier pass (Fast-dLLM's approximation), so layer 0 matches a fresh pass
    # inside the block and keeps the old values outside it.
    changed = ids.clone()
    changed[:, 5] = 3
    model(changed[:, 4:8], kv_cache=cache, cache_start=4)
    fresh = KVCache(model.config.n_layers)
    model(changed, kv_cache=fresh)
    torch.testing.assert_close(cache.keys[0][:, :, 4:8], fresh.keys[0][:, :, 4:8])
    assert not torch.allclose(cache.keys[1][:, :, 8:], fresh.keys[1][:, :, 8:])


def test_official_null_sizes_fall_back_like_the_reference():
    config = LLaDAConfig(**{**TINY, "n_kv_heads": None, "mlp_hidden_size": None, "mlp_ratio": 3})
    model = LLaDAModelLM(config)
    assert model.model.transformer.blocks[0].ff_proj.weight.shape == (96, 32)  # 3 * d_model
    assert model.model.transformer.blocks[0].k_proj.weight.shape == (32, 32)  # n_kv_heads = n_heads
    mqa = LLaDAConfig(**{**TINY, "n_kv_heads": None, "multi_query_attention": True})
    assert LLaDAModelLM(mqa).model.transformer.blocks[0].k_proj.weight.shape == (8, 32)  # one kv head


def test_unsupported_official_option_is_refused():
    with pytest.raises(
        ValueError, match="LLaDA config has block_group_size=2; difusi implements only block_group_size=1"
    ):
        LLaDAModelLM(LLaDAConfig(**TINY, block_group_size=2))


def test_logits_positions_select_columns_of_the_full_logits():
    model = tiny_model()
    ids = torch.randint(0, 96, (2, 10))
    positions = torch.tensor([1, 4, 9])
    torch.testing.assert_close(model(ids, logits_positions=positions).logits, model(ids).logits[:, positions])
    masked = torch.rand(2, 10, generator=torch.Generator().manual_seed(0)) < 0.4  # a loss's masked tokens
    torch.testing.assert_close(model(ids, logits_positions=masked).logits, model(ids).logits[masked])


def test_forward_refuses_unknown_keyword_arguments():
    model = tiny_model()
    ids = torch.randint(0, 96, (1, 6))
    with pytest.raises(TypeError, match="unexpected keyword argument 'past_key_values'"):
        model(ids, past_key_values=None)
    plain = model(ids).logits
    torch.testing.assert_close(model(ids, return_dict=True, use_cache=False).logits, plain)
