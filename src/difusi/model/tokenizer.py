"""LLaDA tokenizers: load one from a checkpoint, render the chat template, resolve its special ids, or
train a small Indonesian one.

The project tokenizer is for offline work and tiny models: byte-level BPE trained on real Indonesian
news text, with words, spaces, digits and punctuation as separate pieces (WORD_PIECES), carrying
LLaDA's special tokens by name (at the top of the vocabulary, as in LLaDA) and the LLaDA-Instruct
chat template, so code written against it runs unchanged on the real tokenizer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from difusi.errors import DifusiError, first_line
from difusi.synthetic.corpus import indonesian_sentences

BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"
MASK_TOKEN = "<|mdm_mask|>"
START_HEADER_TOKEN = "<|start_header_id|>"
END_HEADER_TOKEN = "<|end_header_id|>"
EOT_TOKEN = "<|eot_id|>"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
SPECIAL_TOKENS = (BOS_TOKEN, EOS_TOKEN, MASK_TOKEN, START_HEADER_TOKEN, END_HEADER_TOKEN, EOT_TOKEN)

# The LLaDA-Instruct template: Llama-3 layout, BOS before the first turn, message content trimmed,
# no system/date block, and the assistant header appended unconditionally (add_generation_prompt
# is ignored, as in the official tokenizer_config.json).
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first %}{{ bos_token }}{% endif %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim"
    " + '<|eot_id|>' }}"
    "{% endfor %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}"
)

Message = Mapping[str, str]

# The project tokenizer's pre-tokens: whitespace runs, single digits, letter runs, punctuation runs.
# LLaDA's byte-level BPE glues a space to the word after it, so "Jakarta" at an answer's start and
# " Jakarta" inside a prompt are different ids (and "17" and " 17" differ in length): a tiny model
# would have to learn two spellings of every word before it could copy one. Here a word is the same
# ids wherever it stands; the cost is about 40% more tokens per sentence.
WORD_PIECES = Regex(r"\s+|\d|[^\W\d_]+|[^\w\s]+")


def _turn(role: str, content: str | None = None) -> str:
    header = f"{START_HEADER_TOKEN}{role}{END_HEADER_TOKEN}\n\n"
    # Content is stripped, as the official template's `| trim` does.
    return header if content is None else f"{header}{content.strip()}{EOT_TOKEN}"


def render_chat(
    messages: Sequence[Message],
    tokenizer: PreTrainedTokenizerBase | None = None,
    add_generation_prompt: bool = True,
) -> str:
    """Render a conversation (dicts with "role" and "content") as LLaDA-Instruct text: `<|startoftext|>`,
    then per turn `<|start_header_id|>{role}<|end_header_id|>\\n\\n{content}<|eot_id|>` (Llama-3
    layout, no system/date block), then the assistant header.

    BOS is the tokenizer's `bos_token` when a tokenizer is given. With `add_generation_prompt` the
    text ends in the assistant header, ready for the answer; it gives the same string as the
    official tokenizer's `apply_chat_template(messages, tokenize=False)`.
    """
    if not messages:
        raise DifusiError("cannot render an empty conversation; pass at least one user message")
    for number, message in enumerate(messages, 1):
        if not isinstance(message.get("role"), str) or not isinstance(message.get("content"), str):
            raise DifusiError(f"chat message {number} needs string 'role' and 'content' fields")
    bos = (tokenizer.bos_token if tokenizer is not None else None) or BOS_TOKEN
    text = bos + "".join(_turn(m["role"], m["content"]) for m in messages)
    return text + _turn("assistant") if add_generation_prompt else text


def encode_chat(tokenizer: PreTrainedTokenizerBase, messages: str | Sequence[Message]) -> list[int]:
    """Token ids of a user message, or a conversation, rendered with `render_chat` and ready for the
    answer: the prompt every difusi caller (generation, evaluation, chat, SFT data) gives the model."""
    if isinstance(messages, str):
        messages = [{"role": "user", "content": messages}]
    # The rendered text already starts with BOS, so no special tokens are added on encoding.
    return tokenizer.encode(render_chat(messages, tokenizer), add_special_tokens=False)


@dataclass(frozen=True)
class SpecialTokenIds:
    """The ids LLaDA code needs, resolved from a tokenizer (and a model config when given)."""

    bos: int
    eos: int
    pad: int
    mask: int
    eot: int
    start_header: int
    end_header: int


def load_tokenizer(path_or_hub_id: str | Path) -> PreTrainedTokenizerBase:
    """Load a LLaDA tokenizer (checkpoint directory or hub id) with AutoTokenizer, no remote code."""
    path = Path(path_or_hub_id)
    # Anything that looks like a path must be a tokenizer directory; only the rest is a hub id.
    if path.exists() or str(path_or_hub_id).startswith((".", "/")):
        if not path.is_dir():
            raise DifusiError(f"tokenizer directory {path} does not exist; pass a LLaDA checkpoint directory")
        if not any((path / name).is_file() for name in TOKENIZER_FILES):
            raise DifusiError(
                f"{path} holds no {' or '.join(TOKENIZER_FILES)}; pass a checkpoint directory with its tokenizer"
            )
    try:
        return AutoTokenizer.from_pretrained(str(path_or_hub_id))
    except (OSError, ValueError) as error:
        raise DifusiError(
            f"could not load a tokenizer from {path_or_hub_id!r}: {first_line(error)}"
        ) from error


def token_id(tokenizer: PreTrainedTokenizerBase, token: str) -> int:
    """Id of the single token named `token`; DifusiError if the tokenizer does not have it."""
    found = tokenizer.convert_tokens_to_ids(token)
    # Tokenizers with an unknown token map any missing name to it rather than to None.
    if found is None or (found == tokenizer.unk_token_id and token != tokenizer.unk_token):
        raise DifusiError(f"tokenizer has no {token} token; use a LLaDA-Instruct or difusi-built tokenizer")
    return found


def _agree(name: str, from_config: int | None, from_tokenizer: int) -> int:
    if from_config is not None and from_config != from_tokenizer:
        raise DifusiError(
            f"model config {name}_token_id is {from_config} but the tokenizer's {name} token is "
            f"{from_tokenizer}; load the tokenizer saved with this checkpoint"
        )
    return from_tokenizer


def special_token_ids(tokenizer: PreTrainedTokenizerBase, config=None) -> SpecialTokenIds:
    """Resolve bos/eos/pad/mask/eot/header ids by token name; a given model config must agree.

    EOS and pad are both `<|endoftext|>` in LLaDA (padding is EOS and is trained on), so pad falls
    back to EOS when the tokenizer names none.
    """
    eos = token_id(tokenizer, tokenizer.eos_token or EOS_TOKEN)
    pad = token_id(tokenizer, tokenizer.pad_token) if tokenizer.pad_token else eos
    return SpecialTokenIds(
        bos=token_id(tokenizer, tokenizer.bos_token or BOS_TOKEN),
        eos=_agree("eos", getattr(config, "eos_token_id", None), eos),
        pad=_agree("pad", getattr(config, "pad_token_id", None), pad),
        mask=_agree("mask", getattr(config, "mask_token_id", None), token_id(tokenizer, MASK_TOKEN)),
        eot=token_id(tokenizer, EOT_TOKEN),
        start_header=token_id(tokenizer, START_HEADER_TOKEN),
        end_header=token_id(tokenizer, END_HEADER_TOKEN),
    )


def train_indonesian_tokenizer(
    vocab_size: int, sentences: Sequence[str] | None = None
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer of exactly `vocab_size` ids on Indonesian text.

    `sentences` defaults to the offline news corpus. Merges stay inside one WORD_PIECES piece. The
    six LLaDA special tokens take the top ids, as in LLaDA. Training is deterministic: the same text
    and size give the same vocab and merges.
    """
    if vocab_size < 256 + len(SPECIAL_TOKENS) + 1:
        raise DifusiError(
            f"vocab_size {vocab_size} is too small for byte-level BPE; use at least {256 + len(SPECIAL_TOKENS) + 1}"
        )
    if sentences is None:
        sentences = indonesian_sentences()
    backend = byte_level(models.BPE(), pieces=WORD_PIECES)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(sentences, trainer=trainer)
    return as_llada_tokenizer(backend)


def byte_level(model: models.Model, pieces: Regex | None = None) -> Tokenizer:
    """A tokenizer around `model` that splits and decodes text as bytes: GPT-2 style, as LLaDA's, or
    first cut into `pieces` (each match a pre-token of its own) when given."""
    backend = Tokenizer(model)
    if pieces is None:
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    else:
        backend.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(pieces, behavior="isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
    backend.decoder = decoders.ByteLevel()
    return backend


def as_llada_tokenizer(backend: Tokenizer) -> PreTrainedTokenizerFast:
    """A transformers tokenizer with LLaDA's special tokens (added at the end of the vocabulary unless
    `backend` already holds them, at whatever ids it gives them) and the LLaDA-Instruct chat template."""
    backend.add_special_tokens(list(SPECIAL_TOKENS))
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=EOS_TOKEN,
        mask_token=MASK_TOKEN,
        additional_special_tokens=[START_HEADER_TOKEN, END_HEADER_TOKEN, EOT_TOKEN],
        chat_template=CHAT_TEMPLATE,
        model_max_length=4096,
    )
