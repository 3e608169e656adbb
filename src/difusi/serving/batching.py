"""Concurrent requests, one sampler call: a bounded queue of answers to generate, drained a batch at
a time by `generate_answers` (left padding, attention mask), streaming text as it settles.

A masked-diffusion answer does not grow left to right: positions fill in any order within a block.
A streamed answer therefore sends, after every sampler step, the text of its committed prefix (the
tokens before its first mask), which no later step changes.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass, field

import torch

from difusi.diffusion.sampler import SamplerSettings
from difusi.generation import cut_at_stop, decode_answer, generate_answers, stop_token_ids

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Delta:
    """More text of a streamed answer."""

    index: int
    text: str


@dataclass(frozen=True)
class Answer:
    """A finished answer: its text, OpenAI's finish reason ("stop" or "length") and its tokens."""

    index: int
    text: str
    finish_reason: str
    tokens: int


Event = Delta | Answer | Exception


@dataclass(eq=False)
class Job:
    """One answer to generate: the prompt's token ids, how to sample it, and the queue of the request
    that waits for it (its `index` tells the request's answers apart)."""

    prompt: list[int]
    settings: SamplerSettings
    seed: int
    stop: tuple[str, ...]
    index: int
    stream: bool
    events: asyncio.Queue[Event]
    loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.get_running_loop)

    def post(self, event: Event) -> None:
        """Hand `event` to the waiting request (safe from the sampler's thread)."""
        self.loop.call_soon_threadsafe(self.events.put_nowait, event)


class QueueFull(Exception):
    """The queue holds as many jobs as it may; the request should be retried later."""


class TextStream:
    """The text of a streamed answer sent so far, and what to send next as the answer settles."""

    def __init__(self, stop: tuple[str, ...]) -> None:
        self.stop, self.sent = stop, ""

    def advance(self, text: str) -> str:
        """The new part of `text` (an answer so far) that is safe to send: cut at a stop sequence,
        holding back a trailing incomplete character or a possible beginning of a stop sequence."""
        text, stopped = cut_at_stop(text, self.stop)
        if not stopped:
            text = text.rstrip("\ufffd")
            longest = min(len(text), max(map(len, self.stop), default=0))
            held = next(
                (n for n in range(longest, 0, -1) if any(s.startswith(text[-n:]) for s in self.stop)), 0
            )
            text = text[: len(text) - held]
        if len(text) <= len(self.sent) or not text.startswith(self.sent):
            return ""
        delta, self.sent = text[len(self.sent) :], text
        return delta

    def finish(self, text: str) -> str:
        """What is left to send of the final answer `text`."""
        return text[len(self.sent) :] if text.startswith(self.sent) else ""


class Engine:
    """The model side: runs a batch of jobs (same settings and seed) through one `generate_answers`
    call and posts each job's text deltas and answer."""

    def __init__(self, model, tokenizer) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.stop_ids = stop_token_ids(tokenizer, model.config)

    def run(self, jobs: list[Job]) -> None:
        settings, seed = jobs[0].settings, jobs[0].seed
        streams = {row: TextStream(job.stop) for row, job in enumerate(jobs) if job.stream}
        answers = generate_answers(
            self.model, self.tokenizer, [job.prompt for job in jobs], settings, batch_size=len(jobs),
            seed=seed, progress=False, on_step=self._streamer(jobs, streams) if streams else None,
        )  # fmt: skip
        for row, (job, (text, tokens)) in enumerate(zip(jobs, answers, strict=True)):
            text, stopped = cut_at_stop(text, job.stop)
            if row in streams and (rest := streams[row].finish(text)):
                job.post(Delta(job.index, rest))
            finish = "stop" if stopped or tokens < settings.gen_length else "length"
            job.post(Answer(job.index, text, finish, tokens))

    def _streamer(self, jobs: list[Job], streams: dict[int, TextStream]):
        mask_id = self.model.config.mask_token_id

        def on_step(rows: list[int], answers: torch.Tensor) -> None:
            for position, row in enumerate(rows):
                if row not in streams:
                    continue
                ids = answers[position].tolist()
                committed = ids[: ids.index(mask_id)] if mask_id in ids else ids
                text, _ = decode_answer(self.tokenizer, committed, self.stop_ids)
                if delta := streams[row].advance(text):
                    jobs[row].post(Delta(jobs[row].index, delta))

        return on_step


class Batcher:
    """A bounded queue of jobs, drained one sampler call at a time: each call takes the oldest job and
    every queued job with the same settings and seed, up to `max_batch_size`. Requests that arrive
    while a call runs wait for the next one, so concurrent requests share calls."""

    def __init__(self, engine: Engine, max_batch_size: int, max_queue: int) -> None:
        self.engine, self.max_batch_size, self.max_queue = engine, max_batch_size, max_queue
        self.pending: deque[Job] = deque()
        self.sampler_calls = 0
        self._wake = asyncio.Event()

    def submit(self, jobs: list[Job]) -> None:
        """Queue all of `jobs`, or none: QueueFull when they do not fit."""
        if len(self.pending) + len(jobs) > self.max_queue:
            raise QueueFull(f"{len(self.pending)} answers are queued (at most {self.max_queue})")
        self.pending.extend(jobs)
        self._wake.set()

    def drop(self, jobs: list[Job], why: str) -> None:
        """Take a request's jobs out of the queue (its client left or its time ran out): no sampler
        call generates them. A job already in the running call finishes there, unread: the samplers
        decode a batch as one."""
        queued = [job for job in jobs if job in self.pending]
        for job in queued:
            self.pending.remove(job)
        log.info("request %s: %d queued answer(s) dropped, %d in the running call", why, len(queued),
                 len(jobs) - len(queued))  # fmt: skip

    def _take(self) -> list[Job]:
        key = (self.pending[0].settings, self.pending[0].seed)
        batch = [job for job in self.pending if (job.settings, job.seed) == key][: self.max_batch_size]
        for job in batch:
            self.pending.remove(job)
        return batch

    async def run(self) -> None:
        """Serve the queue until cancelled."""
        while True:
            await self._wake.wait()
            if not self.pending:  # every queued job was dropped
                self._wake.clear()
                continue
            batch = self._take()
            if not self.pending:
                self._wake.clear()
            self.sampler_calls += 1
            log.info("sampler call %d: %d answer(s) in one batch", self.sampler_calls, len(batch))
            try:
                await asyncio.to_thread(self.engine.run, batch)
            except Exception as error:  # every request of the batch gets the failure; the server goes on
                log.exception("sampler call %d failed", self.sampler_calls)
                for job in batch:
                    job.post(error)
