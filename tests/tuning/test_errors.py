"""Every bad input fails with its own message before any work: no run directory is created."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from difusi.cli import main
from difusi.errors import DifusiError
from difusi.model.tokenizer import render_chat
from difusi.tuning.train import prepare_run


def fails(config, message: str) -> None:
    with pytest.raises(DifusiError) as error:
        prepare_run(config)
    assert str(error.value) == message
    assert not Path(config.out).exists()


def test_unknown_method(make_config):
    fails(make_config(method="dora"), "unknown method 'dora'; choose one of lora, loraplus, pissa, full")


def test_loraplus_ratio_below_one(make_config):
    fails(
        make_config(method="loraplus", loraplus_ratio=0.5),
        "LoRA+ ratio 0.5 is below 1; lora_B must learn at least as fast as lora_A "
        "(use --loraplus-ratio 16, the recommended value)",
    )


def test_base_that_does_not_load(make_config, tmp_path):
    missing = tmp_path / "no_such_model"
    fails(
        make_config(base=str(missing)),
        f"base model '{missing}' does not load: checkpoint {missing} is not a directory; "
        "pass a LLaDA checkpoint directory",
    )
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text(json.dumps({"model_type": "bert"}))
    fails(
        make_config(base=str(broken)),
        f"base model '{broken}' does not load: {broken / 'config.json'} has model_type 'bert'; "
        "expected 'llada': pass a LLaDA checkpoint",
    )


def test_empty_data(make_config, tmp_path, write_split):
    write_split(tmp_path / "train.parquet", [])
    fails(
        make_config(data=str(tmp_path)),
        f"{tmp_path / 'train.parquet'} holds no rows; prepare a non-empty data set",
    )
    fails(
        make_config(data=str(tmp_path / "nowhere")),
        f"no train.parquet in {tmp_path / 'nowhere'}; run `difusi prepare` or pass the prepared data directory",
    )


def test_max_length_below_the_prompt(make_config, tiny_tokenizer, sft_data):
    first_prompt = pq.read_table(sft_data / "train.parquet")["input"][0].as_py()
    rendered = render_chat([{"role": "user", "content": first_prompt}], tiny_tokenizer)
    n = len(tiny_tokenizer.encode(rendered, add_special_tokens=False))
    assert n > 8
    fails(
        make_config(max_length=8),
        f"train.parquet row 0: prompt is {n} tokens but max_length is 8; raise max_length above {n} or drop this example",
    )


def test_pissa_rank_larger_than_a_layer(make_config):
    fails(
        make_config(method="pissa", rank=65),
        "PiSSA rank 65 is larger than layer model.transformer.blocks.0.q_proj (64x64); use --rank 64 or less",
    )


def test_targets_that_match_nothing(make_config):
    fails(
        make_config(target_modules="wq,wk"),
        "target modules ['wq', 'wk'] match no linear layer of the base model; "
        "use 'all-linear' or names such as q_proj,v_proj",
    )


def test_cli_reports_one_line_and_exit_code_2(make_config, capsys):
    config = make_config()
    code = main(
        ["train", "--base", config.base, "--data", config.data, "--out", config.out, "--method", "qlora"]
    )
    assert code == 2
    assert capsys.readouterr().err == (
        "difusi train: error: unknown method 'qlora'; choose one of lora, loraplus, pissa, full\n"
    )
