"""The Fast-dLLM options of `generate`: prefix / dual key-value cache and confidence-threshold decoding."""

from __future__ import annotations

import copy
import json
import shutil
from types import SimpleNamespace

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from torch import nn

from difusi import LLaDAModelLM, generate
from difusi.cli import main
from difusi.diffusion.reference import reference_generate
from difusi.errors import DifusiError
from difusi.model import LLaDAConfig

MASK_ID, EOS_ID = 99, 1  # the conftest models' ids
PROMPT = 7  # the padded batch's width

FAST = [
    dict(cache="prefix"),
    dict(cache="dual"),
    dict(threshold=0.9),
    dict(cache="prefix", threshold=0.9),
    dict(cache="dual", threshold=0.9),
    dict(cache="dual", threshold=0.9, cfg_scale=1.0),
]


@pytest.mark.parametrize(
    "options",
    [
        dict(steps=12, gen_length=24, block_length=8),
        dict(steps=16, gen_length=16, block_length=8, cfg_scale=1.0),
        dict(steps=12, gen_length=24, block_length=8, remasking="random"),
        dict(steps=32, gen_length=16, block_length=8, remasking="random"),  # idle steps
    ],
)
def test_cache_off_and_no_threshold_is_the_official_algorithm(model, padded_batch, options):
    prompt, attention_mask = padded_batch
    ours = generate(
        model,
        prompt,
        attention_mask,
        cache="none",
        threshold=None,
        generator=torch.Generator().manual_seed(3),
        **options,
    )
    official = reference_generate(
        model, prompt, attention_mask, generator=torch.Generator().manual_seed(3), **options
    )
    assert torch.equal(ours, official)


def recorded_steps(model, prompt, attention_mask, **options) -> list[torch.Tensor]:
    """The state before generation and after every step."""
    states = [None]
    out = generate(model, prompt, attention_mask, on_step=lambda step, x: states.append(x), **options)
    states[0] = torch.cat([prompt, torch.full((prompt.shape[0], out.shape[1] - PROMPT), MASK_ID)], 1)
    assert torch.equal(states[-1], out)
    return states


@pytest.mark.parametrize("options", FAST)
def test_fast_modes_fill_every_mask_and_commit_only_inside_the_current_block(model, padded_batch, options):
    prompt, attention_mask = padded_batch
    block_length = 8
    states = recorded_steps(model, prompt, attention_mask, steps=12, gen_length=24, block_length=8, **options)
    assert torch.equal(states[-1][:, :PROMPT], prompt)
    assert not (states[-1] == MASK_ID).any()
    for before, after in zip(states, states[1:], strict=False):
        # The current block is the first with masks left; nothing outside it changes.
        first_masked = int((before[:, PROMPT:] == MASK_ID).any(0).nonzero()[0])
        start = PROMPT + first_masked // block_length * block_length
        changed = before != after
        columns = changed.any(0).nonzero().flatten()
        assert len(columns) > 0
        assert bool(((columns >= start) & (columns < start + block_length)).all())
        assert bool((before[changed] == MASK_ID).all())  # only masks are ever written


@pytest.mark.parametrize("options", [dict(threshold=0.9), dict(cache="dual", threshold=0.5)])
def test_threshold_commits_at_least_one_token_per_row_and_step(model, padded_batch, options):
    prompt, attention_mask = padded_batch
    states = recorded_steps(model, prompt, attention_mask, steps=8, gen_length=16, block_length=8, **options)
    for before, after in zip(states, states[1:], strict=False):
        first_masked = int((before[:, PROMPT:] == MASK_ID).any(0).nonzero()[0])
        start = PROMPT + first_masked // 8 * 8
        rows_with_masks = (before[:, start : start + 8] == MASK_ID).any(1)
        committed = (before != after).sum(1) >= 1
        assert torch.equal(committed, rows_with_masks)


class PositionLogits(nn.Module):
    """A stand-in model whose logits depend only on the absolute position: logits[position] [V]."""

    def __init__(self, logits: torch.Tensor):
        super().__init__()
        vocab = logits.shape[1]
        self.config = LLaDAConfig(
            vocab_size=vocab, embedding_size=vocab, mask_token_id=vocab - 1, eos_token_id=0, pad_token_id=0
        )
        self.register_buffer("logits", logits)
        self.anchor = nn.Parameter(torch.zeros(()))  # gives the model a device

    def forward(self, input_ids, attention_mask=None, kv_cache=None, cache_start=0, logits_positions=None):
        logits = self.logits[cache_start + logits_positions]
        return SimpleNamespace(logits=logits[None].expand(input_ids.shape[0], -1, -1).clone())


@pytest.mark.parametrize("cache", ["none", "prefix", "dual"])
def test_threshold_commits_every_confident_token_then_the_most_confident_one(cache):
    # Answer positions predict tokens 2..5 with probabilities 0.95, 0.3, 0.92, 0.5; the other six
    # tokens share the rest equally.
    probabilities = torch.full((5, 7), 1 / 7)
    for position, (token, p) in enumerate([(2, 0.95), (3, 0.3), (4, 0.92), (5, 0.5)], start=1):
        probabilities[position] = (1 - p) / 6
        probabilities[position, token] = p
    model = PositionLogits(probabilities.log())
    prompt = torch.tensor([[1]])
    states = []
    out = generate(
        model,
        prompt,
        steps=4,
        gen_length=4,
        block_length=4,
        threshold=0.9,
        cache=cache,
        on_step=lambda step, x: states.append(x[0, 1:].tolist()),
    )
    masked = 6
    assert states == [[2, masked, 4, masked], [2, masked, 4, 5], [2, 3, 4, 5]]
    assert out[0, 1:].tolist() == [2, 3, 4, 5]


@pytest.mark.parametrize("options", [dict(cache="dual"), dict(cache="dual", threshold=0.9, cfg_scale=1.0)])
def test_left_padding_does_not_change_a_rows_answer_under_the_dual_cache(model, padded_batch, options):
    prompt, attention_mask = padded_batch
    settings = dict(steps=12, gen_length=24, block_length=8) | options
    batch = generate(model, prompt, attention_mask, **settings)
    for row, pad in ((0, 0), (1, 3), (2, 1)):
        alone = generate(model, prompt[row : row + 1, pad:], **settings)
        assert torch.equal(batch[row, PROMPT:], alone[0, PROMPT - pad :])


def test_an_unmerged_peft_adapter_decodes_like_its_merged_model(model, padded_batch):
    from peft import LoraConfig, get_peft_model

    prompt, attention_mask = padded_batch
    lora = LoraConfig(r=4, target_modules=["q_proj", "v_proj", "up_proj"], init_lora_weights=False)
    torch.manual_seed(0)
    wrapped = get_peft_model(copy.deepcopy(model), lora).eval()
    merged = copy.deepcopy(wrapped).merge_and_unload()
    settings = dict(steps=8, gen_length=16, block_length=8, cache="dual", threshold=0.9)
    adapted = generate(wrapped, prompt, attention_mask, **settings)
    assert torch.equal(adapted, generate(merged, prompt, attention_mask, **settings))
    assert not torch.equal(adapted, generate(model, prompt, attention_mask, **settings))


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(cache="full"), "unknown cache 'full'; use one of none, prefix, dual"),
        (dict(threshold=1.5), r"threshold 1.5 is not a probability; use a value in \[0, 1\], e.g. 0.9"),
        (
            dict(threshold=0.9, remasking="random"),
            "threshold decoding compares model confidences; use remasking low_confidence",
        ),
    ],
)
def test_bad_fast_settings_raise_clear_errors(model, padded_batch, options, message):
    prompt, attention_mask = padded_batch
    with pytest.raises(DifusiError, match=message):
        generate(model, prompt, attention_mask, steps=8, gen_length=16, block_length=8, **options)


def test_token_agreement_counts_positions_over_the_longer_answer():
    from difusi.benchmarks.sampler import token_agreement

    # row 1: 2 of 3 positions agree; row 2: 1 of 4 (the other answer stops after one token); row 3: empty
    assert token_agreement([[1, 2, 3], [5, 6, 7, 8], []], [[1, 9, 3], [5], []]) == 3 / 7
    assert token_agreement([[]], [[]]) == 1.0


def test_bench_sampling_writes_json_and_plot(tiny_checkpoint, tmp_path):
    rows = {name: ["x", "y"] for name in ("subset_name", "template_name")}
    rows |= {"input": ["Apa ibu kota Indonesia?", "Sebutkan satu buah."], "output": ["Jakarta.", "Mangga."]}
    pq.write_table(pa.table(rows), tmp_path / "test.parquet")
    ar_dir = shutil.copytree(tiny_checkpoint, tmp_path / "ar")  # the tiny model made causal
    ar = LLaDAModelLM.from_pretrained(ar_dir)
    ar.config.causal = True
    ar.save_pretrained(ar_dir)
    args = ["bench", "sampling", "--model", str(tiny_checkpoint), "--ar-model", str(ar_dir)]
    args += ["--test", str(tmp_path / "test.parquet"), "--gen-lengths", "16", "--batch-sizes", "1", "2"]
    args += ["--block-length", "8", "--quality-gen-length", "16", "--out", str(tmp_path / "bench")]
    assert main(args) == 0
    report = json.loads((tmp_path / "bench" / "sampling.json").read_text())
    names = ["exact", "prefix", "dual", "threshold", "prefix+threshold", "dual+threshold", "ar"]
    assert [(r["sampler"], r["batch_size"]) for r in report["speed"]] == [
        (n, b) for b in (1, 2) for n in names
    ]
    assert all(r["speedup"] == 1.0 for r in report["speed"] if r["sampler"] == "exact")
    assert [r["sampler"] for r in report["quality"]] == names
    assert report["quality"][0]["agreement"] == 1.0
    assert (tmp_path / "bench" / "sampling.png").stat().st_size > 0


def test_early_stop_ends_once_every_answer_is_complete_and_keeps_the_answers(model):
    """A model that answers 5 5 5 <eot> then EOS padding (less sure of the padding): stopping early
    keeps those tokens and skips the steps that would only fill the padding."""
    from difusi.diffusion.sampler import generate

    eot_id, prompt = 2, torch.tensor([[7, 8, 9, 10], [11, 12, 13, 14]])
    L = prompt.shape[1]

    def scripted(module, args, kwargs, output):
        columns = kwargs["cache_start"] + kwargs["logits_positions"] - L  # answer positions of the logits
        logits = torch.zeros_like(output.logits)
        logits[..., 5] = torch.where(columns < 3, 20.0, 0.0)
        logits[..., eot_id] = torch.where(columns == 3, 20.0, 0.0)
        logits[..., EOS_ID] = torch.where(columns > 3, 5.0, 0.0)
        output.logits = logits
        return output

    handle = model.register_forward_hook(scripted, with_kwargs=True)
    try:
        for options in ({}, dict(cache="dual", threshold=0.9)):
            runs = {}
            for early_stop in (False, True):
                steps = []
                out = generate(model, prompt, steps=16, gen_length=16, block_length=16, eot_id=eot_id,
                               early_stop=early_stop, on_step=lambda s, x, seen=steps: seen.append(s), **options)  # fmt: skip
                runs[early_stop] = (out, len(steps))
            (full, full_steps), (early, early_steps) = runs[False], runs[True]
            assert early[:, L : L + 4].tolist() == full[:, L : L + 4].tolist() == [[5, 5, 5, eot_id]] * 2
            assert (early[:, L + 4 :] == EOS_ID).all()
            if not options:  # the exact schedule commits one token a step: 4 of 16 steps are needed
                assert (full_steps, early_steps) == (16, 4)
            else:  # all four sure tokens pass 0.9 in the first step; the padding needs more steps
                assert early_steps == 1 < full_steps
    finally:
        handle.remove()
