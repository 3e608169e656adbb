"""Project tokenizer training, special-id resolution and loading."""

from __future__ import annotations

import pytest
from tokenizers import Tokenizer, models
from transformers import PreTrainedTokenizerFast

from difusi import LLaDAConfig
from difusi.errors import DifusiError
from difusi.model.tokenizer import (
    CHAT_TEMPLATE,
    SPECIAL_TOKENS,
    SpecialTokenIds,
    load_tokenizer,
    special_token_ids,
    token_id,
    train_indonesian_tokenizer,
)

SENTENCES = [
    "Presiden meresmikan jembatan baru di Kalimantan Timur.",
    "Harga beras naik menjelang Lebaran, kata pedagang di pasar.",
    "Tim nasional menang dua gol tanpa balas atas Malaysia.",
] * 20


def test_special_tokens_take_the_top_ids(tiny_tokenizer):
    assert len(tiny_tokenizer) == 512
    assert tiny_tokenizer.convert_ids_to_tokens(list(range(506, 512))) == list(SPECIAL_TOKENS)
    assert special_token_ids(tiny_tokenizer) == SpecialTokenIds(
        bos=506, eos=507, pad=507, mask=508, eot=511, start_header=509, end_header=510
    )
    assert tiny_tokenizer.chat_template == CHAT_TEMPLATE


def test_special_ids_must_agree_with_the_model_config(tiny_tokenizer):
    ids = special_token_ids(
        tiny_tokenizer, LLaDAConfig(mask_token_id=508, eos_token_id=507, pad_token_id=507)
    )
    assert (ids.mask, ids.eos, ids.pad) == (508, 507, 507)
    llada_config = LLaDAConfig()  # LLaDA-8B's ids do not belong to the tiny tokenizer
    with pytest.raises(DifusiError) as error:
        special_token_ids(tiny_tokenizer, llada_config)
    assert str(error.value) == (
        "model config eos_token_id is 126081 but the tokenizer's eos token is 507; "
        "load the tokenizer saved with this checkpoint"
    )


def test_missing_special_token_is_named():
    backend = Tokenizer(models.WordLevel({"<unk>": 0, "halo": 1}, unk_token="<unk>"))
    plain = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>")
    assert token_id(plain, "halo") == 1
    with pytest.raises(DifusiError) as error:
        token_id(plain, "<|eot_id|>")
    assert str(error.value) == (
        "tokenizer has no <|eot_id|> token; use a LLaDA-Instruct or difusi-built tokenizer"
    )


def test_training_is_deterministic_and_exactly_sized():
    first = train_indonesian_tokenizer(300, SENTENCES)
    second = train_indonesian_tokenizer(300, SENTENCES)
    assert len(first) == 300
    assert first.backend_tokenizer.to_str() == second.backend_tokenizer.to_str()
    assert first.convert_tokens_to_ids("<|mdm_mask|>") == 296


def test_too_small_vocab():
    with pytest.raises(DifusiError, match="vocab_size 200 is too small for byte-level BPE; use at least 263"):
        train_indonesian_tokenizer(200, SENTENCES)


@pytest.mark.parametrize(
    "text",
    [
        "Saya makan nasi goreng di Jakarta.",
        "Suhu 30°C — cuaca cerah, kata BMKG.\n\nBaris baru.",
        "<|startoftext|>Halo<|eot_id|><|endoftext|><|endoftext|>",
        "  spasi ganda  dan emoji 🙂 ",
    ],
)
def test_ids_round_trip(tiny_tokenizer, text):
    ids = tiny_tokenizer.encode(text, add_special_tokens=False)
    assert tiny_tokenizer.decode(ids) == text


def test_a_word_is_the_same_ids_wherever_it_stands(tiny_tokenizer):
    def ids(text):
        return tiny_tokenizer.encode(text, add_special_tokens=False)

    space, quote, newline = ids(" "), ids('"'), ids("\n")
    for word in ("Jakarta", "Sheffield", "menang", "17", "café"):
        alone = ids(word)
        assert ids(f"kata {word}") == ids("kata") + space + alone
        assert ids(f'"{word}"') == quote + alone + quote
        assert ids(f"\n{word}.") == newline + alone + ids(".")
    # Digits are single pieces: a number and its copy are the same ids, digit by digit.
    assert ids("2024") == [ids(digit)[0] for digit in "2024"]


def test_special_tokens_encode_to_single_ids(tiny_tokenizer):
    assert tiny_tokenizer.encode("<|eot_id|><|mdm_mask|>", add_special_tokens=False) == [511, 508]


def test_load_tokenizer_from_checkpoint(tiny_checkpoint):
    tokenizer = load_tokenizer(tiny_checkpoint)
    assert special_token_ids(tokenizer).mask == 508


def test_load_tokenizer_errors(tmp_path):
    with pytest.raises(DifusiError) as error:
        load_tokenizer(tmp_path / "missing")
    assert str(error.value) == (
        f"tokenizer directory {tmp_path / 'missing'} does not exist; pass a LLaDA checkpoint directory"
    )
    with pytest.raises(DifusiError) as error:
        load_tokenizer(tmp_path)
    assert str(error.value) == (
        f"{tmp_path} holds no tokenizer.json or tokenizer_config.json; "
        "pass a checkpoint directory with its tokenizer"
    )
    with pytest.raises(DifusiError, match=r"^could not load a tokenizer from 'not/a/valid/hub id': "):
        load_tokenizer("not/a/valid/hub id")
