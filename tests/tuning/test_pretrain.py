"""`difusi pretrain` on the tiny preset: packing, a short run, the checkpoint it writes, and its errors."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from difusi import LLaDAModelLM
from difusi.errors import DifusiError
from difusi.model.presets import build_checkpoint, preset_tokenizer
from difusi.tuning.config import PretrainConfig
from difusi.tuning.pretrain import general_sft_examples, pack_corpus, pretrain, read_corpus


def test_read_corpus_file_and_directory(tmp_path):
    (tmp_path / "a.txt").write_text("Saya makan nasi.\n\n  Dia minum teh.  \n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.txt").write_text("Kami pergi ke pasar.\n")
    (tmp_path / "notes.md").write_text("ignored\n")
    assert read_corpus(tmp_path / "a.txt") == ["Saya makan nasi.", "Dia minum teh."]
    assert read_corpus(tmp_path) == ["Saya makan nasi.", "Dia minum teh.", "Kami pergi ke pasar."]
    assert len(read_corpus(None)) == 32780  # the built-in offline news corpus


def test_pack_corpus_joins_with_eos_and_drops_the_tail():
    tokenizer = preset_tokenizer("tiny")
    eos = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    texts = ["Saya makan nasi.", "Dia minum teh."]
    stream = []
    for text in texts:
        stream += tokenizer.encode(text, add_special_tokens=False) + [eos]
    blocks = pack_corpus(texts, tokenizer, 4, eos)
    assert [b["input_ids"] for b in blocks] == [stream[i : i + 4] for i in range(0, len(stream) - 3, 4)]
    with pytest.raises(
        DifusiError, match=f"^the corpus gives {len(stream)} tokens, fewer than one sequence of 999;"
    ):
        pack_corpus(texts, tokenizer, 999, eos)


def test_pretrain_tiny_writes_a_loadable_checkpoint(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(["Indonesia adalah negara kepulauan terbesar di dunia."] * 40))
    config = PretrainConfig(
        out=str(tmp_path / "run"), corpus=str(corpus), preset="tiny", seq_len=32, batch_size=4,
        max_steps=3, logging_steps=1, precision="fp32", learning_rate=1e-2, warmup_ratio=0.0,
    )  # fmt: skip
    out = pretrain(config)
    model = LLaDAModelLM.from_pretrained(out / "model")
    assert (out / "model" / "tokenizer.json").is_file() and (
        out / "model" / "generation_config.json"
    ).is_file()
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [1, 2, 3]
    assert all(line["tokens_seen"] == 4 * 32 * line["step"] for line in lines)
    info = json.loads((out / "run_info.json").read_text())
    assert (info["preset"], info["corpus_texts"], info["steps"]) == ("tiny", 40, 3)
    assert info["trainable_params"] == info["total_params"] == sum(p.numel() for p in model.parameters())
    # the weights moved away from the preset's random initialisation
    initial = LLaDAModelLM.from_pretrained(build_checkpoint("tiny", tmp_path / "init", seed=42))
    assert not torch.equal(initial.model.transformer.wte.weight, model.model.transformer.wte.weight)


def test_pretrain_errors(tmp_path):
    with pytest.raises(DifusiError, match="^corpus .*missing.txt does not exist; pass a text file"):
        pretrain(
            PretrainConfig(out=str(tmp_path / "run"), corpus=str(tmp_path / "missing.txt"), preset="tiny")
        )
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(DifusiError, match="^corpus .*empty.txt holds no text"):
        pretrain(PretrainConfig(out=str(tmp_path / "run"), corpus=str(tmp_path / "empty.txt"), preset="tiny"))
    with pytest.raises(DifusiError, match="^seq_len 4096 exceeds preset 'tiny''s maximum 256$"):
        pretrain(PretrainConfig(out=str(tmp_path / "run"), preset="tiny", seq_len=4096))
    with pytest.raises(DifusiError, match="^unknown model preset 'huge'"):
        pretrain(PretrainConfig(out=str(tmp_path / "run"), preset="huge"))
    assert not (tmp_path / "run").exists()


def test_pretrain_with_general_tasks_and_a_held_out_tail(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(f"Kalimat nomor {i} ada di sini." for i in range(50)))
    config = PretrainConfig(
        out=str(tmp_path / "run"), corpus=str(corpus), preset="tiny", seq_len=96, batch_size=4,
        max_steps=2, logging_steps=1, precision="fp32", general_tasks=30, held_out=10,
    )  # fmt: skip
    out = pretrain(config)
    info = json.loads((out / "run_info.json").read_text())
    assert (info["corpus_texts"], info["general_tasks"], info["held_out"]) == (40, 30, 10)
    tokenizer = preset_tokenizer("tiny")
    texts = [f"Kalimat nomor {i} ada di sini." for i in range(40)]
    blocks = pack_corpus(texts, tokenizer, 96, tokenizer.eos_token_id)
    general = general_sft_examples(tokenizer, 30, 96, seed=42)  # those whose prompt fits in 96 tokens
    assert 20 < len(general) <= 30 and info["sequences"] == len(blocks) + len(general)
    with pytest.raises(DifusiError, match="must not be negative"):
        pretrain(PretrainConfig(out=str(tmp_path / "x"), preset="tiny", general_tasks=-1))


def test_general_sft_examples_follow_the_chat_format():
    from difusi.model.tokenizer import encode_chat
    from difusi.synthetic.general import general_examples

    tokenizer = preset_tokenizer("tiny")
    examples = general_sft_examples(tokenizer, 7, 512, seed=0)
    for example, (prompt, _) in zip(examples, general_examples(7, 0), strict=True):
        ids = encode_chat(tokenizer, prompt)
        assert example["input_ids"][: example["prompt_length"]] == ids


def test_an_ar_warm_start_trains_causally_then_switches_to_diffusion(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(f"Kalimat nomor {i} ada di sini." for i in range(60)))

    def run(name: str, **settings) -> tuple[list[float], LLaDAModelLM]:
        config = PretrainConfig(
            out=str(tmp_path / name), corpus=str(corpus), preset="tiny", seq_len=32, batch_size=4,
            max_steps=4, logging_steps=1, precision="fp32", general_tasks=20, **settings,
        )  # fmt: skip
        out = pretrain(config)
        losses = [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]
        return losses, LLaDAModelLM.from_pretrained(out / "model")

    ar_losses, ar_model = run("ar", objective="ar")
    warm_losses, warm_model = run("warm", ar_steps=2)
    # Same initialisation, data and optimizer: the first two steps are the AR run's, the rest diffusion.
    assert warm_losses[:2] == ar_losses[:2] and warm_losses[2:] != ar_losses[2:]
    assert ar_model.config.causal and not warm_model.config.causal  # saved as a diffusion model
    assert json.loads((tmp_path / "warm" / "run_info.json").read_text())["ar_steps"] == 2
    with pytest.raises(DifusiError, match="^ar_steps 4 leaves no step of max_steps 4 for the diffusion loss"):
        pretrain(PretrainConfig(out=str(tmp_path / "x"), preset="tiny", max_steps=4, ar_steps=4))
    with pytest.raises(DifusiError, match="^ar_steps is a warm start for diffusion or block pretraining"):
        pretrain(
            PretrainConfig(out=str(tmp_path / "x"), preset="tiny", max_steps=4, ar_steps=2, objective="ar")
        )


def test_a_run_resumed_inside_the_ar_warm_start_equals_the_whole_run(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(f"Kalimat nomor {i} ada di sini." for i in range(60)))

    def config(name: str) -> PretrainConfig:
        return PretrainConfig(
            out=str(tmp_path / name), corpus=str(corpus), preset="tiny", seq_len=32, batch_size=4,
            max_steps=4, logging_steps=1, save_steps=1, precision="fp32", general_tasks=20, ar_steps=2,
        )  # fmt: skip

    whole = pretrain(config("whole"))
    cut = pretrain(config("cut"))
    # Killed after step 1, still causal: only checkpoint-1 survives.
    for name in ("checkpoints/checkpoint-2", "checkpoints/checkpoint-3", "checkpoints/checkpoint-4", "model"):
        shutil.rmtree(cut / name)
    (cut / "run_info.json").unlink()
    pretrain(config("cut"), resume=True)
    a = LLaDAModelLM.from_pretrained(whole / "model").state_dict()
    b = LLaDAModelLM.from_pretrained(cut / "model")
    assert not b.config.causal and all(torch.equal(a[k], v) for k, v in b.state_dict().items())
