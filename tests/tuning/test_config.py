"""TrainConfig: the seed's defaults, YAML round trip, and command-line options overriding the YAML."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from difusi.cli import build_parser
from difusi.cli.options import resolve_config
from difusi.errors import DifusiError
from difusi.tuning.config import PretrainConfig, TrainConfig


def test_seed_defaults():
    config = TrainConfig()
    assert (config.max_length, config.rank, config.loraplus_ratio, config.seed) == (512, 8, 16.0, 42)
    assert config.target_modules == "all-linear"
    assert config.method == "lora" and config.objective == "diffusion"


def test_yaml_round_trip(tmp_path):
    config = TrainConfig(method="pissa", rank=16, target_modules="q_proj, v_proj", learning_rate=2e-5)
    assert config.target_modules == ["q_proj", "v_proj"]
    config.to_yaml(tmp_path / "c.yaml")
    assert TrainConfig.from_yaml(tmp_path / "c.yaml") == config
    assert yaml.safe_load((tmp_path / "c.yaml").read_text())["target_modules"] == ["q_proj", "v_proj"]


def test_every_field_is_a_cli_option():
    parser = build_parser()
    for command, cls in (("train", TrainConfig), ("pretrain", PretrainConfig)):
        assert {f.name for f in dataclasses.fields(cls)} <= set(vars(parser.parse_args([command])))


def test_cli_overrides_yaml(tmp_path):
    (tmp_path / "c.yaml").write_text(
        "method: loraplus\nrank: 32\nloraplus_ratio: 8\ngradient_checkpointing: true\n"
    )
    args = build_parser().parse_args(
        ["train", "--config", str(tmp_path / "c.yaml"), "--rank", "4", "--no-gradient-checkpointing"]
    )
    config = resolve_config(args, TrainConfig)
    assert (config.method, config.rank, config.loraplus_ratio, config.gradient_checkpointing) == (
        "loraplus",
        4,
        8.0,
        False,
    )
    assert config.learning_rate == 1e-4  # untouched by either: the default


def test_unknown_yaml_key_is_named(tmp_path):
    (tmp_path / "c.yaml").write_text("rank: 4\nlearning_rat: 0.1\n")
    with pytest.raises(DifusiError, match=r"^unknown option\(s\) in .*c\.yaml: learning_rat$"):
        TrainConfig.from_yaml(tmp_path / "c.yaml")


def test_shipped_recipes_load():
    configs = Path(__file__).parents[2] / "configs"
    recipes = {path.stem: TrainConfig.from_yaml(path) for path in configs.glob("llada8b-*.yaml")}
    assert {name: r.method for name, r in recipes.items()} == {
        "llada8b-lora": "lora",
        "llada8b-loraplus": "loraplus",
        "llada8b-pissa": "pissa",
        "llada8b-block-lora": "lora",
    }
    assert (
        recipes["llada8b-block-lora"].objective == "block" and recipes["llada8b-block-lora"].block_size == 16
    )
    assert all(r.base == "GSAI-ML/LLaDA-8B-Instruct" and r.max_length == 512 for r in recipes.values())
    assert PretrainConfig.from_yaml(configs / "demo-pretrain.yaml").preset == "demo"
