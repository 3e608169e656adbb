"""Interactive multi-turn chat in the terminal, showing the reverse process live.

Each answer starts as a row of masks; every sampler step repaints it as positions fill in, most
confident first, until the answer is complete.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from rich.console import Console
from rich.live import Live
from rich.text import Text

from difusi.diffusion.sampler import SamplerSettings
from difusi.errors import DifusiError
from difusi.generation import generate_answers, stop_token_ids
from difusi.model.tokenizer import encode_chat

MASK_GLYPH = "░"
HELP = "Type a message. /reset clears the conversation, /quit (or Ctrl-D) leaves."


@dataclass
class ChatSession:
    """A conversation with a LLaDA chat model: the history and the sampler settings it answers with."""

    model: torch.nn.Module
    tokenizer: object
    sampler: SamplerSettings = field(default_factory=SamplerSettings)
    seed: int = 0
    messages: list[dict[str, str]] = field(default_factory=list)

    @property
    def stop_ids(self) -> set[int]:
        return stop_token_ids(self.tokenizer, self.model.config)

    def reset(self) -> None:
        self.messages.clear()

    def prompt_ids(self) -> list[int]:
        """The rendered conversation, dropping the oldest exchanges until prompt + answer fit the model."""
        limit = self.model.config.max_sequence_length - self.sampler.gen_length
        while True:
            ids = encode_chat(self.tokenizer, self.messages)
            if len(ids) <= limit:
                return ids
            if len(self.messages) <= 1:
                raise DifusiError(
                    f"the message is {len(ids)} tokens but at most {limit} fit before a "
                    f"{self.sampler.gen_length}-token answer; shorten it or lower --gen-length"
                )
            del self.messages[:2]  # the oldest user turn and its answer

    def reply(self, text: str, on_step: Callable[[int, list[int]], None] | None = None) -> str:
        """Answer `text` in the context of the conversation; `on_step(step, answer_ids)` sees every state."""
        self.messages.append({"role": "user", "content": text})
        try:
            ids = self.prompt_ids()
        except DifusiError:
            self.messages.pop()
            raise
        steps = itertools.count()
        hook = None if on_step is None else (lambda _, answers: on_step(next(steps), answers[0].tolist()))
        # generate_answers decodes as the model was trained: diffusion, block diffusion or AR.
        [(answer, _)] = generate_answers(
            self.model, self.tokenizer, [ids], self.sampler, batch_size=1,
            seed=self.seed + len(self.messages), progress=False, on_step=hook,
        )  # fmt: skip
        self.messages.append({"role": "assistant", "content": answer})
        return answer


def denoising_view(tokenizer, answer_ids: list[int], mask_id: int, stop_ids: set[int], caption: str) -> Text:
    """The answer area as text: committed tokens in bold, masks as ░, end-of-answer tokens as ·."""
    view = Text()
    for token in answer_ids:
        if token == mask_id:
            view.append(MASK_GLYPH, style="dim")
        elif token in stop_ids:
            view.append("·", style="dim")
        else:
            view.append(tokenizer.decode([token]), style="bold")
    return view.append(f"\n{caption}", style="dim italic")


def run_chat(
    session: ChatSession, console: Console | None = None, read: Callable[[str], str] = input
) -> None:
    """The read-answer loop: each answer is denoised live on `console`, then printed."""
    console = console or Console()
    console.print(HELP, style="dim")
    mask_id = session.model.config.mask_token_id
    total = session.sampler.steps
    while True:
        try:
            text = read("anda> ").strip()
        except EOFError:
            break
        if text in ("/quit", "/exit"):
            break
        if text == "/reset":
            session.reset()
            console.print("(conversation cleared)", style="dim")
            continue
        if not text:
            continue
        with Live(console=console, refresh_per_second=15, transient=True) as live:

            def show(step: int, answer_ids: list[int]) -> None:
                caption = f"step {step + 1}/{total}"
                live.update(denoising_view(session.tokenizer, answer_ids, mask_id, session.stop_ids, caption))

            try:
                answer = session.reply(text, on_step=show)
            except DifusiError as error:
                console.print(f"error: {error}", style="red")
                continue
        console.print(Text("difusi> ", style="bold cyan") + Text(answer))
