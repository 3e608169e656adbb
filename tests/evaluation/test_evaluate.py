"""`difusi evaluate` end to end on the tiny checkpoint and a 4-row test set."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from peft import LoraConfig, get_peft_model

from difusi import LLaDAModelLM
from difusi.cli import main
from difusi.diffusion.sampler import SamplerSettings
from difusi.errors import DifusiError
from difusi.evaluation.evaluate import EvaluationConfig, evaluate, summarize
from difusi.generation import decode_answer, fit_prompt, generate_answers
from difusi.model.loading import load_model
from difusi.model.tokenizer import special_token_ids

ROWS = [
    ("dolly", "dolly_0", "Apa ibu kota Indonesia?", "Jakarta."),
    (
        "wikihow",
        "wikihow_0",
        "Bagaimana cara mencuci tangan dengan benar?",
        "Gunakan sabun dan air mengalir.",
    ),
    ("dolly", "dolly_0", "Sebutkan satu pulau.", "Bali."),
    ("wikihow", "wikihow_1", "Tulis langkah pertama memasak nasi.", "Cuci beras sampai bersih."),
]
CONFIG = EvaluationConfig(
    sampler=SamplerSettings(steps=8, gen_length=8, block_length=4), batch_size=3, mc_num=2, max_length=64
)


@pytest.fixture(scope="module")
def test_parquet(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "test.parquet"
    columns = {
        "dataset_name": ["cendol"] * 4,
        "subset_name": [row[0] for row in ROWS],
        "prompt_id": [row[1] for row in ROWS],
        "template_name": [row[1] for row in ROWS],
        "dataset_key": ["train"] * 4,
        "input": [row[2] for row in ROWS],
        "output": [row[3] for row in ROWS],
    }
    pq.write_table(pa.table(columns), path)
    return path


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_evaluate_writes_generations_and_metrics(tiny_checkpoint, test_parquet, tmp_path):
    metrics = evaluate(str(tiny_checkpoint), test_parquet, tmp_path, config=CONFIG, progress=False)
    records = _jsonl(tmp_path / "generations.jsonl")
    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics
    assert [record["id"] for record in records] == [0, 1, 2, 3]
    assert [(r["subset_name"], r["template_name"], r["prompt"], r["reference"]) for r in records] == [
        (subset, template, prompt, answer) for subset, template, prompt, answer in ROWS
    ]
    assert all(0 <= record["answer_tokens"] <= 8 for record in records)
    assert all(record["nelbo"] > 0 and record["reference_tokens"] > 0 for record in records)
    overall, per_subset = summarize(records)
    assert metrics["overall"] == overall and metrics["per_subset"] == per_subset
    assert {name: values["n"] for name, values in per_subset.items()} == {"dolly": 2, "wikihow": 2}
    assert metrics["label"] == "base" and metrics["adapter"] is None and metrics["n"] == 4
    assert metrics["sampler"] == {
        "steps": 8,
        "gen_length": 8,
        "block_length": 4,
        "temperature": 0.0,
        "cfg_scale": 0.0,
        "remasking": "low_confidence",
        "cache": "none",
        "threshold": None,
        "early_stop": False,
        "top_p": 1.0,
        "top_k": 0,
    }
    assert metrics["truncated_prompts"] == 0 and metrics["truncated_references"] == 0

    # Batching (length-sorted, left-padded) does not change a row's answer: row 1 generated alone.
    model, tokenizer = load_model(str(tiny_checkpoint))
    prompt = fit_prompt(tokenizer, ROWS[1][2], CONFIG.max_length - 8)
    [(alone, alone_tokens)] = generate_answers(
        model, tokenizer, [prompt.ids], CONFIG.sampler, 1, progress=False
    )
    assert (records[1]["generation"], records[1]["answer_tokens"]) == (alone, alone_tokens)


def test_evaluate_with_adapter_takes_the_runs_method_as_label(tiny_checkpoint, test_parquet, tmp_path):
    torch.manual_seed(0)
    lora = LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(LLaDAModelLM.from_pretrained(tiny_checkpoint), lora).save_pretrained(
        tmp_path / "run" / "adapter"
    )
    (tmp_path / "run" / "run_info.json").write_text(json.dumps({"method": "lora", "seed": 1}))
    config = EvaluationConfig(sampler=CONFIG.sampler, mc_num=2, max_length=64, limit=2)
    adapter = str(tmp_path / "run" / "adapter")
    metrics = evaluate(
        str(tiny_checkpoint), test_parquet, tmp_path / "eval", adapter, config=config, progress=False
    )
    assert metrics["label"] == "lora" and metrics["n"] == 2 and metrics["adapter"] == adapter
    # Same rows, same Monte Carlo draws: only the adapter's weights can move the ELBO.
    base = evaluate(str(tiny_checkpoint), test_parquet, tmp_path / "base", config=config, progress=False)
    assert base["overall"]["nelbo_per_token"] != metrics["overall"]["nelbo_per_token"]


def test_evaluate_cli(tiny_checkpoint, test_parquet, tmp_path, capsys):
    args = ["evaluate", "--base", str(tiny_checkpoint), "--data", str(test_parquet), "--out", str(tmp_path)]
    small = [
        "--steps",
        "4",
        "--gen-length",
        "4",
        "--block-length",
        "4",
        "--mc-num",
        "1",
        "--max-length",
        "48",
    ]
    assert main([*args, *small, "--limit", "1", "--label", "tiny", "--no-progress"]) == 0
    assert capsys.readouterr().out.startswith("tiny: 1 rows  chrF++ ")
    assert json.loads((tmp_path / "metrics.json").read_text())["sampler"]["gen_length"] == 4

    assert main([*args, "--gen-length", "64", "--block-length", "32", "--max-length", "64"]) == 2
    assert "difusi evaluate: error: --gen-length 64 leaves no room for a prompt in --max-length 64" in (
        capsys.readouterr().err
    )
    broken = tmp_path / "broken.parquet"
    pq.write_table(pa.table({"input": ["a"], "output": ["b"]}), broken)
    assert (
        main(["evaluate", "--base", str(tiny_checkpoint), "--data", str(broken), "--out", str(tmp_path)]) == 2
    )
    assert f"error: {broken} lacks column 'subset_name'" in capsys.readouterr().err


def test_fit_prompt_cuts_the_user_message_and_keeps_the_markup(tiny_tokenizer):
    content = "Ceritakan sejarah panjang kota Jakarta dari masa ke masa. " * 10
    whole = fit_prompt(tiny_tokenizer, content, 1000)
    cut = fit_prompt(tiny_tokenizer, content, 40)
    assert not whole.truncated and cut.truncated
    assert len(cut.ids) <= 40 and content.startswith(cut.content.strip())
    assert cut.ids[-6:] == whole.ids[-6:]  # still ends in <|eot_id|> and the assistant header
    with pytest.raises(DifusiError, match="the chat markup alone exceeds 5 prompt tokens"):
        fit_prompt(tiny_tokenizer, content, 5)


def test_decode_answer_stops_at_eos_or_end_of_turn(tiny_tokenizer):
    ids = special_token_ids(tiny_tokenizer)
    word = tiny_tokenizer.encode("Jakarta", add_special_tokens=False)
    stop = {ids.eos, ids.eot}
    assert decode_answer(tiny_tokenizer, [*word, ids.eot, *word], stop) == ("Jakarta", len(word))
    assert decode_answer(tiny_tokenizer, [ids.eos, ids.eos], stop) == ("", 0)
    assert decode_answer(tiny_tokenizer, word, stop) == ("Jakarta", len(word))


def test_general_text_nelbo_is_scored_per_document(tiny_checkpoint, test_parquet, tmp_path):
    general = tmp_path / "general.txt"
    general.write_text("Hujan turun sejak pagi di Bandung.\n\nPasar dibuka pukul tujuh.\n")
    config = CONFIG.with_overrides({"general_text": str(general)})
    metrics = evaluate(str(tiny_checkpoint), test_parquet, tmp_path / "eval", config=config, progress=False)
    documents = _jsonl(tmp_path / "eval" / "general.jsonl")
    _, tokenizer = load_model(str(tiny_checkpoint))
    lengths = [
        len(tokenizer.encode(t, add_special_tokens=False))
        for t in ("Hujan turun sejak pagi di Bandung.", "Pasar dibuka pukul tujuh.")
    ]
    assert [(d["id"], d["reference_tokens"]) for d in documents] == [(0, lengths[0]), (1, lengths[1])]
    expected = sum(d["nelbo"] for d in documents) / sum(lengths)
    assert metrics["overall"]["general_nelbo_per_token"] == pytest.approx(expected, rel=1e-12)
    assert expected > 0


KILLED_AFTER_TWO_BATCHES = """
import sys, time
from difusi.cli import main
from difusi.evaluation.journal import AnswerJournal
append, kept = AnswerJournal.append, []
def append_then_pause(self, indices, answers):
    append(self, indices, answers)
    kept.append(indices)
    if len(kept) == 2:
        print("paused", flush=True)
        time.sleep(120)
AnswerJournal.append = append_then_pause
sys.exit(main(sys.argv[1:]))
"""


def kill_after_two_batches(args: list[str]) -> None:
    """`difusi evaluate ARGS` in a child process, SIGKILLed once it has kept two batches."""
    import subprocess
    import sys

    child = subprocess.Popen(
        [sys.executable, "-c", KILLED_AFTER_TWO_BATCHES, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert next(line for line in child.stdout if line == "paused\n")
    child.kill()
    child.wait()


def test_a_killed_evaluation_continues_where_it_was_and_writes_the_uninterrupted_report(
    tiny_checkpoint, test_parquet, tmp_path, monkeypatch, caplog
):
    import difusi.evaluation.evaluate as module

    def args(out):
        return ["evaluate", "--base", str(tiny_checkpoint), "--data", str(test_parquet), "--out", str(out),
                "--steps", "4", "--gen-length", "4", "--block-length", "4", "--mc-num", "2", "--max-length", "48",
                "--batch-size", "1", "--temperature", "0.8", "--no-progress"]  # fmt: skip

    assert main(args(tmp_path / "whole")) == 0
    kill_after_two_batches(args(tmp_path / "cut"))
    assert not (tmp_path / "cut" / "generations.jsonl").exists()
    generated, generate_answers = [], module.generate_answers

    def counted(*a, **kw):  # the batches the relaunch generates
        on_batch = kw["on_batch"]
        kw["on_batch"] = lambda indices, answers: (generated.append(indices), on_batch(indices, answers))
        return generate_answers(*a, **kw)

    monkeypatch.setattr(module, "generate_answers", counted)
    with caplog.at_level("WARNING"):
        assert main(args(tmp_path / "cut")) == 0  # the same command
    assert "continuing with 2 answered rows" in caplog.text
    assert len(generated) == 2  # only the rows it had left
    assert (tmp_path / "cut" / "generations.jsonl").read_text() == (
        tmp_path / "whole" / "generations.jsonl"
    ).read_text()
    whole, cut = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("whole", "cut"))
    assert (cut["overall"], cut["per_subset"]) == (whole["overall"], whole["per_subset"])
    assert not (tmp_path / "cut" / "generations.partial.jsonl").exists()

    # Killed again, relaunched with another seed: it starts afresh and says which argument changed.
    kill_after_two_batches(args(tmp_path / "again"))
    generated.clear()
    caplog.clear()
    with caplog.at_level("WARNING"):
        assert main([*args(tmp_path / "again"), "--seed", "3"]) == 0
    journal = tmp_path / "again" / "generations.partial.jsonl"
    assert f"{journal} was made with another setting seed: starting the evaluation afresh" in caplog.text
    assert len(generated) == 4 and not journal.exists()
