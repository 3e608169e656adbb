"""LLaDA-Instruct SFT examples in the official layout.

An SFT example is the rendered chat prompt (`difusi.model.tokenizer.render_chat`) followed by the
answer and `<|eot_id|>`; the batch's EOS padding after it belongs to the answer (official GUIDELINES).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from transformers import PreTrainedTokenizerBase

from difusi.errors import DifusiError
from difusi.model.tokenizer import EOT_TOKEN, Message, encode_chat, token_id


def build_sft_example(
    tokenizer: PreTrainedTokenizerBase,
    prompt: str | Sequence[Message],
    answer: str,
    max_length: int,
) -> dict:
    """Token ids of one SFT sample: the rendered prompt, then the answer ending in `<|eot_id|>`.

    `prompt` is the user's message, or a conversation ending in a user turn. Prompt and answer are
    encoded separately (the prompt exactly as at inference), so `prompt_length` is an exact
    boundary. When prompt + answer exceed `max_length` the answer is cut to fit and carries no
    `<|eot_id|>` (the model must not learn to stop where the answer did not end); `truncated`
    says so. The prompt is never cut: it must leave room for at least one answer token.
    """
    prompt_ids = encode_chat(tokenizer, prompt)
    answer_ids = tokenizer.encode(answer.strip(), add_special_tokens=False) + [token_id(tokenizer, EOT_TOKEN)]
    room = max_length - len(prompt_ids)
    if room < 1:
        raise DifusiError(
            f"prompt is {len(prompt_ids)} tokens but max_length is {max_length}; "
            f"raise max_length above {len(prompt_ids)} or drop this example"
        )
    truncated = len(answer_ids) > room
    return {
        "input_ids": prompt_ids + answer_ids[:room],
        "prompt_length": len(prompt_ids),
        "truncated": truncated,
    }


def collate_sft(examples: Sequence[Mapping], pad_id: int, answer_area: int = 0) -> dict[str, torch.Tensor]:
    """Right-pad SFT examples to the batch's longest: input_ids [B, T] and prompt_lengths [B].

    Pass the EOS id as `pad_id`: in the official recipe EOS padding is part of the answer, masked
    and trained on like it, and no attention mask is used. `answer_area` pads further, until every
    row has at least that many positions after its prompt: a sampler fills `gen_length` positions,
    and a model that never saw EOS that far after a prompt fills the rest with stray tokens.
    """
    if not examples:
        raise DifusiError("cannot collate an empty batch of SFT examples")
    length = max(
        max(len(example["input_ids"]) for example in examples),
        max(example["prompt_length"] for example in examples) + answer_area,
    )
    input_ids = torch.full((len(examples), length), pad_id, dtype=torch.long)
    for row, example in enumerate(examples):
        input_ids[row, : len(example["input_ids"])] = torch.as_tensor(example["input_ids"], dtype=torch.long)
    prompt_lengths = torch.tensor([example["prompt_length"] for example in examples], dtype=torch.long)
    return {"input_ids": input_ids, "prompt_lengths": prompt_lengths}
