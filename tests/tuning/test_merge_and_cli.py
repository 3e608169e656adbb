"""`difusi train` and `difusi merge` end to end through the command line on the tiny model."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from peft import PeftModel

from difusi import LLaDAModelLM
from difusi.cli import main
from difusi.errors import DifusiError
from difusi.tuning.train import prepare_run, train


def test_train_then_merge(make_config, tiny_checkpoint, tmp_path, capsys):
    config = make_config(method="loraplus")
    config.to_yaml(tmp_path / "recipe.yaml")
    # The YAML says loraplus with ratio 16; the command line changes the ratio and the rank.
    code = main(["train", "--config", str(tmp_path / "recipe.yaml"), "--loraplus-ratio", "4", "--rank", "2"])
    assert code == 0
    out = tmp_path / "run"
    assert capsys.readouterr().out.endswith(f"run written to {out}\n")
    resolved = yaml.safe_load((out / "config.yaml").read_text())
    assert (resolved["method"], resolved["loraplus_ratio"], resolved["rank"]) == ("loraplus", 4.0, 2)
    first = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    assert first["lr"] == {"lora_A": 1e-2, "lora_B": 4e-2}

    assert (
        main(
            [
                "merge",
                "--base",
                str(tiny_checkpoint),
                "--adapter",
                str(out / "adapter"),
                "--out",
                str(tmp_path / "merged"),
            ]
        )
        == 0
    )
    merged = LLaDAModelLM.from_pretrained(tmp_path / "merged").eval()
    assert (tmp_path / "merged" / "tokenizer.json").is_file()
    assert (tmp_path / "merged" / "generation_config.json").is_file()
    original = LLaDAModelLM.from_pretrained(tiny_checkpoint)
    adapted = PeftModel.from_pretrained(original, out / "adapter").eval()
    ids = torch.randint(0, merged.config.vocab_size, (2, 10), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(
            merged(input_ids=ids).logits, adapted(input_ids=ids).logits, atol=1e-5, rtol=0
        )
    # the adapter really changed the model
    with torch.no_grad():
        base_logits = LLaDAModelLM.from_pretrained(tiny_checkpoint)(input_ids=ids).logits
    assert not torch.allclose(merged(input_ids=ids).logits, base_logits, atol=1e-4)


def test_merge_refuses_a_non_adapter(tiny_checkpoint, tmp_path, capsys):
    code = main(
        ["merge", "--base", str(tiny_checkpoint), "--adapter", str(tmp_path), "--out", str(tmp_path / "m")]
    )
    assert code == 2
    assert capsys.readouterr().err == (
        f"difusi merge: error: no adapter_config.json in {tmp_path}; pass a run's adapter/ directory\n"
    )
    assert not (tmp_path / "m").exists()


def test_rerun_into_a_used_directory_is_refused_without_resume(make_config):
    config = make_config(max_steps=1)
    train(config)
    with pytest.raises(DifusiError) as error:
        prepare_run(config)
    assert str(error.value) == (
        f"{config.out} already holds a run; pass --resume to continue it or choose a new --out"
    )


def test_merge_keeps_the_dtype_of_shards_whose_config_names_none(make_config, tiny_checkpoint, tmp_path):
    """The official config.json has no dtype (only "precision": "amp_bf16") and bf16 shards: the merged
    checkpoint must be bf16 too, not an upcast float32 copy of twice the size."""
    import shutil

    from difusi.tuning.merge import merge_adapter

    base = tmp_path / "bf16-base"
    LLaDAModelLM.from_pretrained(tiny_checkpoint, dtype=torch.bfloat16).save_pretrained(base)
    for name in ("tokenizer.json", "tokenizer_config.json", "generation_config.json"):
        shutil.copy(tiny_checkpoint / name, base / name)
    config = json.loads((base / "config.json").read_text())
    config.pop("dtype", None)
    (base / "config.json").write_text(json.dumps(config | {"precision": "amp_bf16"}))
    adapter = train(make_config(max_steps=1)) / "adapter"

    merged = merge_adapter(str(base), adapter, tmp_path / "merged")
    assert json.loads((merged / "config.json").read_text())["dtype"] == "bfloat16"
    assert (merged / "model.safetensors").stat().st_size == (base / "model.safetensors").stat().st_size
    assert LLaDAModelLM.from_pretrained(merged, dtype="auto").dtype == torch.bfloat16


def test_answer_area_reaches_the_trainers_collator(make_config):
    run = prepare_run(make_config(answer_area=40))
    batch = run.trainer.data_collator(run.train_data.examples[:2])
    longest_prompt = max(example["prompt_length"] for example in run.train_data.examples[:2])
    assert batch["input_ids"].shape[1] == max(
        longest_prompt + 40, *(len(e["input_ids"]) for e in run.train_data.examples[:2])
    )
    assert (batch["input_ids"][:, -1] == run.tokenizer.convert_tokens_to_ids("<|endoftext|>")).all()
