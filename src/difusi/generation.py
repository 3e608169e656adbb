"""From prompts to decoded answers, for diffusion models and the autoregressive baseline alike.

`generate_text` answers one message (what `difusi generate` prints); `generate_answers` is what
`evaluate`, the benchmarks, lm-evaluation-harness and the server call: batched by length, left-padded
with an attention mask, decoded up to the first end-of-answer token; `cut_at_stop` ends an answer at
its first stop sequence. `fit_prompt` encodes a message cut to a token budget.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from difusi.autoregressive import ar_generate
from difusi.diffusion.block_sampler import block_generate
from difusi.diffusion.losses import batch_generator
from difusi.diffusion.sampler import SamplerSettings, generate
from difusi.distributed import Processes
from difusi.errors import DifusiError
from difusi.model.configuration_llada import padding_id
from difusi.model.tokenizer import EOT_TOKEN, encode_chat

# The sampler settings by name: what a request (an lm-eval task, a server request) may set.
SAMPLER_FIELDS = frozenset(field.name for field in fields(SamplerSettings))


def stop_token_ids(tokenizer: PreTrainedTokenizerBase, config) -> set[int]:
    """Tokens that end an answer: EOS and, when the tokenizer has one, end of turn."""
    eot = tokenizer.convert_tokens_to_ids(EOT_TOKEN)
    return {config.eos_token_id} | ({eot} if eot is not None and eot != tokenizer.unk_token_id else set())


def decode_answer(
    tokenizer: PreTrainedTokenizerBase, answer_ids: list[int], stop_ids: set[int]
) -> tuple[str, int]:
    """Text of the generated answer up to its first stop token (EOS or end of turn), and its length in tokens."""
    length = next((i for i, token in enumerate(answer_ids) if token in stop_ids), len(answer_ids))
    return tokenizer.decode(answer_ids[:length], skip_special_tokens=True).strip(), length


def cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """`text` up to the earliest occurrence of any of the `stop` sequences, and whether one occurred."""
    cuts = [found for sequence in stop if sequence and (found := text.find(sequence)) >= 0]
    return (text[: min(cuts)], True) if cuts else (text, False)


# on_step(prompt indices of the batch, their answer areas [batch, gen_length] after a sampler step)
BatchStepHook = Callable[[list[int], torch.Tensor], None]


def generate_answers(
    model,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[list[int]],
    sampler: SamplerSettings,
    batch_size: int,
    seed: int = 0,
    progress: bool = True,
    on_step: BatchStepHook | None = None,
    done: dict[int, tuple[str, int]] | None = None,
    on_batch: Callable[[list[int], list[tuple[str, int]]], None] | None = None,
    processes: Processes | None = None,
) -> list[tuple[str, int]]:
    """Generate one answer per prompt (token ids); returns (text, answer tokens) in the prompts' order.

    Prompts are batched by length (longest first) so left padding stays short; the sampler sees an
    attention mask over the padding. Sampling draws (temperature > 0, random remasking) come from a
    generator per batch, seeded from `seed` and the batch's number, so a batch's answers do not
    depend on the batches before it: `done` (prompt index -> answer, e.g. from a killed run) skips
    every batch whose prompts it holds, and gives what the full run gives. `on_batch(indices,
    answers)` follows each batch generated. With `processes` (every process of a launch calls this),
    each generates its share of the batches, a round at a time, and every process gets every answer
    (and every `on_batch`), the same answers one process gives. A causal model decodes
    autoregressively (`ar_generate`, same gen_length and temperature; the diffusion-only settings
    do not apply). A block-diffusion model (`config.block_size`) decodes block by block
    (`block_generate`): `threshold` as given (None: gen_length / steps tokens per pass), stopping at
    the end of text; block_length, cache, remasking and early_stop do not apply.

    `on_step(indices, answers)` follows every diffusion step: the indices of the batch's prompts and
    their answer areas (mask ids where nothing is committed yet); a causal model never calls it.
    """
    processes = processes or Processes()
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    answers: list[tuple[str, int]] = [("", 0)] * len(prompts)
    done = done or {}
    batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    todo = []
    for number, batch in enumerate(batches):
        if all(index in done for index in batch):
            for index in batch:
                answers[index] = done[index]
        else:
            todo.append((number, batch))
    rounds = processes.rounds(todo)
    for mine in tqdm(rounds, total=processes.round_count(todo), desc="generating", unit="batch",
                     disable=not progress or not processes.main):  # fmt: skip
        made = None
        if mine is not None:
            number, batch = mine
            made = (
                batch,
                _answer_batch(
                    model, tokenizer, prompts, batch, sampler, batch_generator(seed, number), on_step
                ),
            )
        for batch, batch_answers in filter(None, processes.everyone(made)):
            for index, answer in zip(batch, batch_answers, strict=True):
                answers[index] = answer
            if on_batch is not None:
                on_batch(batch, batch_answers)
    return answers


def _answer_batch(
    model, tokenizer, prompts: list[list[int]], batch: list[int], sampler: SamplerSettings, generator, on_step
) -> list[tuple[str, int]]:
    """The answers to the prompts `batch` indexes, decoded as one left-padded sampler call."""
    stop_ids = stop_token_ids(tokenizer, model.config)
    device = next(model.parameters()).device
    width = max(len(prompts[i]) for i in batch)
    input_ids = torch.full((len(batch), width), padding_id(model.config), dtype=torch.long)
    attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, index in enumerate(batch):
        prompt = prompts[index]
        input_ids[row, width - len(prompt) :] = torch.tensor(prompt)
        attention_mask[row, width - len(prompt) :] = 1
    input_ids, attention_mask = input_ids.to(device), attention_mask.to(device)
    if model.config.block_size:
        hook = None if on_step is None else (lambda _, answer: on_step(batch, answer))
        output = block_generate(
            model, input_ids, attention_mask, sampler.gen_length, sampler.threshold,
            tokens_per_pass=max(1, round(sampler.gen_length / sampler.steps)),
            temperature=sampler.temperature, top_p=sampler.top_p, top_k=sampler.top_k,
            stop_ids=tuple(stop_ids), generator=generator, on_pass=hook,
        )  # fmt: skip
    elif model.config.causal:
        output = ar_generate(
            model, input_ids, attention_mask, sampler.gen_length, sampler.temperature, tuple(stop_ids),
            generator, sampler.top_p, sampler.top_k,
        )  # fmt: skip
    else:
        hook = None if on_step is None else (lambda _, x: on_step(batch, x[:, width:]))
        output = generate(
            model, input_ids, attention_mask=attention_mask, generator=generator, on_step=hook,
            eot_id=tokenizer.convert_tokens_to_ids(EOT_TOKEN), **asdict(sampler),
        )  # fmt: skip
    return [decode_answer(tokenizer, output[row, width:].tolist(), stop_ids) for row in range(len(batch))]


def generate_text(
    model,
    tokenizer: PreTrainedTokenizerBase,
    prompt: str,
    settings: SamplerSettings | None = None,
    chat_template: bool = True,
    seed: int = 0,
) -> str:
    """The model's answer to `prompt`, decoded up to its first EOS or end of turn (by masked
    diffusion, or autoregressively for a causal `--objective ar` model).

    The LLaDA-Instruct chat format is applied when `chat_template` is set and the tokenizer has a
    template; otherwise the prompt is encoded as plain text.
    """
    ids = (
        encode_chat(tokenizer, prompt)
        if chat_template and tokenizer.chat_template
        else tokenizer.encode(prompt)
    )
    [(answer, _)] = generate_answers(
        model, tokenizer, [ids], settings or SamplerSettings(), batch_size=1, seed=seed, progress=False
    )
    return answer


@dataclass(frozen=True)
class FittedPrompt:
    """A user message as the model sees it (possibly cut) and its rendered one-turn prompt's token ids."""

    content: str
    ids: list[int]
    truncated: bool


def fit_prompt(tokenizer: PreTrainedTokenizerBase, content: str, max_tokens: int) -> FittedPrompt:
    """Render a one-turn prompt, cutting the user message from its end until it fits `max_tokens`.

    The chat markup is kept whole, so the model still sees a well-formed turn.
    """
    truncated = False
    while True:
        ids = encode_chat(tokenizer, content)
        if len(ids) <= max_tokens:
            return FittedPrompt(content, ids, truncated)
        content_ids = tokenizer.encode(content.strip(), add_special_tokens=False)
        overflow = len(ids) - max_tokens
        if overflow >= len(content_ids):
            raise DifusiError(
                f"the chat markup alone exceeds {max_tokens} prompt tokens; raise --max-length or lower --gen-length"
            )
        # Re-tokenising the cut text can merge differently at the cut, hence the loop.
        content = tokenizer.decode(content_ids[: len(content_ids) - overflow])
        truncated = True
