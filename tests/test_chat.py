"""Chat: multi-turn history, live denoising frames, history trimming and the command loop."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from difusi.chat import MASK_GLYPH, ChatSession, denoising_view, run_chat
from difusi.diffusion.sampler import SamplerSettings
from difusi.errors import DifusiError
from difusi.model.tokenizer import render_chat

SETTINGS = SamplerSettings(steps=8, gen_length=8, block_length=4)


def test_two_turns_keep_history_and_frames_fill_in(tiny_model, tiny_tokenizer):
    session = ChatSession(tiny_model, tiny_tokenizer, SETTINGS)
    frames: list[list[int]] = []
    first = session.reply("Apa ibu kota Indonesia?", on_step=lambda step, ids: frames.append(ids))
    mask_id = tiny_model.config.mask_token_id
    assert len(frames) == 8  # one frame per step
    # Two blocks of 4 positions with 4 steps each: one position fills per step.
    assert [sum(t == mask_id for t in frame) for frame in frames] == [7, 6, 5, 4, 3, 2, 1, 0]
    session.reply("Dan Malaysia?")
    assert [m["role"] for m in session.messages] == ["user", "assistant", "user", "assistant"]
    assert session.messages[1]["content"] == first
    rendered = render_chat(session.messages[:3], tiny_tokenizer)
    assert rendered.count("<|start_header_id|>user") == 2 and first.strip() in rendered


def test_oldest_exchanges_are_dropped_when_history_is_too_long(tiny_model, tiny_tokenizer):
    session = ChatSession(tiny_model, tiny_tokenizer, SamplerSettings(steps=8, gen_length=8, block_length=8))
    sentence = "Kota ini berada di pulau Jawa dan sangat ramai. " * 6
    session.messages = [
        {"role": "user", "content": sentence},
        {"role": "assistant", "content": sentence},
    ] * 3
    session.messages.append({"role": "user", "content": "Halo"})
    ids = session.prompt_ids()
    assert len(ids) <= tiny_model.config.max_sequence_length - 8
    assert session.messages[-1]["content"] == "Halo" and len(session.messages) % 2 == 1


def test_a_single_message_too_long_is_a_clear_error(tiny_model, tiny_tokenizer):
    session = ChatSession(tiny_model, tiny_tokenizer, SamplerSettings(steps=8, gen_length=8, block_length=8))
    with pytest.raises(DifusiError, match="tokens but at most 248 fit before a 8-token answer"):
        session.reply("kata " * 400)
    assert session.messages == []


def test_denoising_view_marks_masks_and_stops(tiny_tokenizer):
    ids = tiny_tokenizer.encode("Halo", add_special_tokens=False)
    view = denoising_view(tiny_tokenizer, [*ids, 508, 507], mask_id=508, stop_ids={507}, caption="step 1/8")
    assert view.plain == f"Halo{MASK_GLYPH}·\nstep 1/8"


def test_run_chat_loop_answers_resets_and_quits(tiny_model, tiny_tokenizer):
    session = ChatSession(tiny_model, tiny_tokenizer, SETTINGS)
    inputs = iter(["Halo", "/reset", "", "Apa kabar?", "/quit", "never read"])
    console = Console(file=io.StringIO(), width=100, force_terminal=False)
    run_chat(session, console, read=lambda prompt: next(inputs))
    out = console.file.getvalue()
    assert out.count("difusi> ") == 2 and "(conversation cleared)" in out
    assert [m["content"] for m in session.messages if m["role"] == "user"] == ["Apa kabar?"]
    assert next(inputs) == "never read"
