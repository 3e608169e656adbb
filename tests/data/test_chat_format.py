"""LLaDA-Instruct chat strings, SFT examples and their collation."""

from __future__ import annotations

import pytest
import torch

from difusi.data.chat_format import build_sft_example, collate_sft
from difusi.errors import DifusiError
from difusi.model.tokenizer import render_chat

ONE_TURN = [{"role": "user", "content": "Apa ibu kota Indonesia?"}]
TWO_TURNS = [
    {"role": "user", "content": "Apa ibu kota Indonesia?"},
    {"role": "assistant", "content": "Jakarta."},
    {"role": "user", "content": "Dan Jawa Barat?"},
]
ONE_TURN_TEXT = (
    "<|startoftext|><|start_header_id|>user<|end_header_id|>\n\nApa ibu kota Indonesia?<|eot_id|>"
    "<|start_header_id|>assistant<|end_header_id|>\n\n"
)
TWO_TURN_TEXT = (
    "<|startoftext|><|start_header_id|>user<|end_header_id|>\n\nApa ibu kota Indonesia?<|eot_id|>"
    "<|start_header_id|>assistant<|end_header_id|>\n\nJakarta.<|eot_id|>"
    "<|start_header_id|>user<|end_header_id|>\n\nDan Jawa Barat?<|eot_id|>"
    "<|start_header_id|>assistant<|end_header_id|>\n\n"
)


def test_one_turn_is_byte_exact(tiny_tokenizer):
    assert render_chat(ONE_TURN) == ONE_TURN_TEXT
    assert render_chat(ONE_TURN, tiny_tokenizer) == ONE_TURN_TEXT


def test_two_turns_are_byte_exact(tiny_tokenizer):
    assert render_chat(TWO_TURNS, tiny_tokenizer) == TWO_TURN_TEXT


@pytest.mark.parametrize("messages", [ONE_TURN, TWO_TURNS])
def test_tokenizer_template_gives_the_same_string(tiny_tokenizer, messages):
    assert tiny_tokenizer.apply_chat_template(messages, tokenize=False) == render_chat(
        messages, tiny_tokenizer
    )


def test_content_is_trimmed_like_the_template(tiny_tokenizer):
    padded = [{"role": "user", "content": "  Apa ibu kota Indonesia?\n"}]
    assert render_chat(padded) == ONE_TURN_TEXT
    assert tiny_tokenizer.apply_chat_template(padded, tokenize=False) == ONE_TURN_TEXT


def test_without_generation_prompt_ends_after_the_last_turn():
    assert render_chat(TWO_TURNS[:2], add_generation_prompt=False) == (
        "<|startoftext|><|start_header_id|>user<|end_header_id|>\n\nApa ibu kota Indonesia?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nJakarta.<|eot_id|>"
    )


def test_bad_conversations():
    with pytest.raises(
        DifusiError, match="^cannot render an empty conversation; pass at least one user message$"
    ):
        render_chat([])
    with pytest.raises(DifusiError, match="^chat message 2 needs string 'role' and 'content' fields$"):
        render_chat([ONE_TURN[0], {"role": "assistant"}])


def test_sft_example_boundary(tiny_tokenizer):
    prompt_ids = tiny_tokenizer.encode(ONE_TURN_TEXT, add_special_tokens=False)
    answer_ids = tiny_tokenizer.encode("Jakarta.", add_special_tokens=False)
    assert len(prompt_ids) == 30 and len(answer_ids) == 5
    example = build_sft_example(tiny_tokenizer, "Apa ibu kota Indonesia?", " Jakarta. ", max_length=64)
    assert example == {"input_ids": prompt_ids + answer_ids + [511], "prompt_length": 30, "truncated": False}
    # BOS first, the assistant header's "\n\n" last in the prompt, then the answer.
    assert example["input_ids"][0] == 506
    assert tiny_tokenizer.decode(example["input_ids"][28:30]) == "\n\n"
    assert tiny_tokenizer.decode(example["input_ids"][30:]) == "Jakarta.<|eot_id|>"


def test_sft_example_truncation(tiny_tokenizer):
    fits = build_sft_example(tiny_tokenizer, "Apa ibu kota Indonesia?", "Jakarta.", max_length=36)
    assert (len(fits["input_ids"]), fits["input_ids"][-1], fits["truncated"]) == (36, 511, False)
    cut = build_sft_example(tiny_tokenizer, "Apa ibu kota Indonesia?", "Jakarta.", max_length=35)
    assert cut["input_ids"] == fits["input_ids"][:35] and cut["truncated"] is True
    assert cut["input_ids"][-1] != 511
    shortest = build_sft_example(tiny_tokenizer, "Apa ibu kota Indonesia?", "Jakarta.", max_length=31)
    assert (len(shortest["input_ids"]), shortest["prompt_length"]) == (31, 30)
    with pytest.raises(DifusiError) as error:
        build_sft_example(tiny_tokenizer, "Apa ibu kota Indonesia?", "Jakarta.", max_length=30)
    assert (
        str(error.value)
        == "prompt is 30 tokens but max_length is 30; raise max_length above 30 or drop this example"
    )


def test_multi_turn_sft_example(tiny_tokenizer):
    example = build_sft_example(tiny_tokenizer, TWO_TURNS, "Bandung.", max_length=256)
    prompt_ids = tiny_tokenizer.encode(TWO_TURN_TEXT, add_special_tokens=False)
    assert example["prompt_length"] == len(prompt_ids)
    assert example["input_ids"][: len(prompt_ids)] == prompt_ids
    assert tiny_tokenizer.decode(example["input_ids"]) == TWO_TURN_TEXT + "Bandung.<|eot_id|>"


def test_collate_pads_answers_with_eos():
    batch = collate_sft(
        [
            {"input_ids": [506, 10, 11, 12, 511], "prompt_length": 3},
            {"input_ids": [506, 20, 21], "prompt_length": 2},
        ],
        pad_id=507,
    )
    assert torch.equal(batch["input_ids"], torch.tensor([[506, 10, 11, 12, 511], [506, 20, 21, 507, 507]]))
    assert torch.equal(batch["prompt_lengths"], torch.tensor([3, 2]))
    assert batch["input_ids"].dtype == batch["prompt_lengths"].dtype == torch.long
    with pytest.raises(DifusiError, match="^cannot collate an empty batch of SFT examples$"):
        collate_sft([], pad_id=507)


def test_collate_pads_every_answer_to_the_answer_area():
    examples = [
        {"input_ids": [506, 10, 11, 12, 511], "prompt_length": 3},
        {"input_ids": [506, 20], "prompt_length": 1},
    ]
    # The longest prompt (3) + 4 answer positions: 7 columns; every row has at least 4 after its prompt.
    batch = collate_sft(examples, pad_id=507, answer_area=4)
    assert torch.equal(
        batch["input_ids"],
        torch.tensor([[506, 10, 11, 12, 511, 507, 507], [506, 20, 507, 507, 507, 507, 507]]),
    )
    # An area shorter than the answers changes nothing.
    assert torch.equal(
        collate_sft(examples, pad_id=507, answer_area=1)["input_ids"], collate_sft(examples, 507)["input_ids"]
    )
