from __future__ import annotations

from difusi.cli import main
from difusi.diffusion.sampler import SamplerSettings
from difusi.generation import generate_text
from difusi.model import LLaDAModelLM
from difusi.model.tokenizer import load_tokenizer

SAMPLER = ["--steps", "8", "--gen-length", "16", "--block-length", "8"]


def test_generate_prints_the_decoded_answer(tiny_checkpoint, capsys):
    assert main(["generate", "--model", str(tiny_checkpoint), "--prompt", "Apa kabar?", *SAMPLER]) == 0
    printed = capsys.readouterr().out
    model = LLaDAModelLM.from_pretrained(tiny_checkpoint).eval()
    tokenizer = load_tokenizer(tiny_checkpoint)
    settings = SamplerSettings(steps=8, gen_length=16, block_length=8)
    assert printed == generate_text(model, tokenizer, "Apa kabar?", settings) + "\n"


def test_generate_reports_bad_settings_in_one_line(tiny_checkpoint, capsys):
    argv = ["generate", "--model", str(tiny_checkpoint), "--prompt", "Halo", "--gen-length", "20"]
    assert main([*argv, "--block-length", "8"]) == 2
    assert capsys.readouterr().err == (
        "difusi generate: error: gen_length 20 is not divisible by block_length 8; "
        "use a block_length that divides gen_length\n"
    )


def test_bench_sampler_prints_a_table(tiny_checkpoint, capsys):
    argv = ["bench", "sampler", "--model", str(tiny_checkpoint), "--settings", "8:8", "16:8"]
    assert main([*argv, "--batch-size", "2", "--repeats", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split() == [
        "gen",
        "block",
        "steps",
        "difusi",
        "tok/s",
        "official",
        "tok/s",
        "speedup",
        "identical",
    ]
    assert [line.split()[:3] for line in lines[2:]] == [["8", "8", "8"], ["16", "8", "16"]]
    assert all(line.endswith("yes") for line in lines[2:])
