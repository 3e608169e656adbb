"""The FastAPI application: OpenAI's /v1/chat/completions, /v1/completions and /v1/models, and
/health, over one model shared through a `Batcher`."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException

from difusi.diffusion.sampler import SamplerSettings
from difusi.errors import DifusiError
from difusi.model.tokenizer import encode_chat
from difusi.serving import ServeConfig
from difusi.serving.batching import Answer, Batcher, Delta, Engine, Event, Job, QueueFull
from difusi.serving.protocol import ApiError, ChatCompletionRequest, CompletionRequest, GenerationRequest

log = logging.getLogger(__name__)
# Far above any prompt a LLaDA context holds (8,192 tokens are some 40 KB of text), far below what
# would make parsing and tokenising a request a denial of service.
MAX_BODY_BYTES = 1 << 20
DISCONNECT_POLL_S = 0.1  # how often a waiting request checks that its client is still there


def create_app(model, tokenizer, sampler: SamplerSettings, config: ServeConfig) -> FastAPI:
    """The server for `model` under the id `config.name`; `sampler` holds the settings requests
    start from. The batcher runs while the application does (its lifespan). The routes are closures
    over the model, the tokenizer and the batcher, FastAPI's idiom: one function holds the whole API."""
    name = config.name or str(model.config.name_or_path)
    batcher = Batcher(Engine(model, tokenizer), config.max_batch_size, config.max_queue)
    context_length = model.config.max_sequence_length

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(batcher.run())
        yield
        task.cancel()

    app = FastAPI(title="difusi", summary="OpenAI-compatible LLaDA server", lifespan=lifespan)
    app.state.batcher = batcher
    app.state.in_flight = 0  # requests waiting for answers
    app.state.draining = False  # set on SIGTERM: new requests get 503, those in flight finish

    app.add_middleware(Gate, state=app.state, api_key=config.api_key)

    async def respond(request: Request, body: GenerationRequest, prompts: list[list[int]], chat: bool):
        if body.model != name:
            raise ApiError(
                404, f"the model {body.model!r} does not exist; this server serves {name!r}",
                param="model", code="model_not_found",
            )  # fmt: skip
        try:
            settings = body.sampler_settings(sampler)
        except DifusiError as error:
            raise ApiError(400, str(error)) from error
        for prompt in prompts:
            if not prompt:
                raise ApiError(400, "the prompt is empty; give at least one token of text", param="prompt")
            if len(prompt) + settings.gen_length > context_length:
                raise ApiError(
                    400,
                    f"the prompt ({len(prompt)} tokens) and the answer ({settings.gen_length} tokens) exceed "
                    f"the model's context of {context_length} tokens; shorten the prompt or lower max_tokens",
                    param="max_tokens", code="context_length_exceeded",
                )  # fmt: skip
        events: asyncio.Queue[Event] = asyncio.Queue()
        seed = config.seed if body.seed is None else body.seed
        stop = body.stop_sequences()
        jobs = [
            Job(ids, settings, seed, stop, index, body.stream, events) for index, ids in enumerate(prompts)
        ]
        try:
            batcher.submit(jobs)
        except QueueFull as error:
            raise ApiError(
                503, f"the server is busy: {error}; retry later", "server_overloaded", code="queue_full"
            ) from error
        reply = Reply(name, chat, sum(map(len, prompts)))
        deadline = None if config.request_timeout is None else time.monotonic() + config.request_timeout
        if body.stream:

            async def chunks() -> AsyncIterator[str]:
                finished = False
                app.state.in_flight += 1  # here, not before: a stream never started never ends either
                try:
                    async for chunk in reply.stream(events, len(jobs), deadline):
                        yield chunk
                    finished = True
                finally:  # the client left mid-stream (or its time ran out): nothing more for it
                    if not finished:
                        batcher.drop(jobs, "stream closed early")
                    app.state.in_flight -= 1

            return StreamingResponse(chunks(), media_type="text/event-stream")
        app.state.in_flight += 1
        try:
            return reply.complete(await answers_unless_abandoned(request, events, jobs, deadline))
        finally:
            app.state.in_flight -= 1

    async def answers_unless_abandoned(request, events, jobs, deadline) -> list[Answer]:
        """The request's answers; its jobs dropped if its client disconnects or its time runs out."""
        waiting = asyncio.ensure_future(collect(events, len(jobs)))
        while not waiting.done():
            await asyncio.wait({waiting}, timeout=DISCONNECT_POLL_S)
            if waiting.done():
                break
            timed_out = deadline is not None and time.monotonic() > deadline
            if timed_out or await request.is_disconnected():
                waiting.cancel()
                batcher.drop(jobs, "timed out" if timed_out else "disconnected")
                if timed_out:
                    raise ApiError(
                        504, f"no answer within {config.request_timeout} s", "timeout", code="timeout"
                    )
                return []  # nobody reads it
        return waiting.result()

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatCompletionRequest, request: Request):
        prompt = encode_chat(tokenizer, [m.as_dict() for m in body.messages])
        return await respond(request, body, [prompt], chat=True)

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest, request: Request):
        texts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
        return await respond(request, body, [tokenizer.encode(text) for text in texts], chat=False)

    @app.get("/v1/models")
    async def models():
        return {
            "object": "list",
            "data": [{"id": name, "object": "model", "created": 0, "owned_by": "difusi"}],
        }

    @app.get("/health")
    async def health():
        return {
            "status": "ok",
            "model": name,
            "queued": len(batcher.pending),
            "in_flight": app.state.in_flight,
            "sampler_calls": batcher.sampler_calls,
        }

    @app.exception_handler(ApiError)
    async def api_error(_: Request, error: ApiError) -> JSONResponse:
        return JSONResponse(error.body(), status_code=error.status)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, error: RequestValidationError) -> JSONResponse:
        return await api_error(_, validation_error(error.errors()))

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, error: HTTPException) -> JSONResponse:
        return await api_error(_, ApiError(error.status_code, str(error.detail)))

    return app


UNION_TAGS = {"str", "int", "float", "bool"}


def validation_error(errors) -> ApiError:
    """A 400 naming the first problem pydantic found in a request body."""
    first = errors[0]
    if first["type"] == "json_invalid":
        return ApiError(
            400, f"the request body is not valid JSON ({first['ctx'].get('error', 'parse error')})"
        )
    # loc[0] is "body"; a union's errors name its member types ("str", "list[str]"), not fields.
    where = ".".join(
        str(part) for part in first["loc"][1:] if part not in UNION_TAGS and "[" not in str(part)
    )
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    message = first["msg"].removeprefix("Value error, ")  # pydantic's prefix for our own checks
    return ApiError(400, f"{where or 'body'}: {message}{more}", param=where or None)


async def collect(events: asyncio.Queue[Event], count: int) -> list[Answer]:
    """The `count` answers of a request, by index."""
    answers: list[Answer] = []
    while len(answers) < count:
        event = await events.get()
        if isinstance(event, Exception):
            raise ApiError(500, f"generation failed: {event}", "server_error") from event
        if isinstance(event, Answer):
            answers.append(event)
    return sorted(answers, key=lambda answer: answer.index)


class Reply:
    """OpenAI's response bodies for one request: a whole completion, or its stream of chunks."""

    def __init__(self, model: str, chat: bool, prompt_tokens: int) -> None:
        self.model, self.chat, self.prompt_tokens = model, chat, prompt_tokens
        self.id = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}"
        self.created = int(time.time())

    def _body(self, kind: str, choices: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": kind,
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }

    def complete(self, answers: list[Answer]) -> dict[str, Any]:
        if self.chat:
            choices = [
                {
                    "index": a.index,
                    "message": {"role": "assistant", "content": a.text},
                    "finish_reason": a.finish_reason,
                }
                for a in answers
            ]
        else:
            choices = [
                {"index": a.index, "text": a.text, "logprobs": None, "finish_reason": a.finish_reason}
                for a in answers
            ]
        completion_tokens = sum(answer.tokens for answer in answers)
        usage = {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": self.prompt_tokens + completion_tokens,
        }
        return self._body("chat.completion" if self.chat else "text_completion", choices) | {"usage": usage}

    def chunk(self, index: int, text: str | None, finish_reason: str | None = None) -> str:
        """One server-sent event: `text` of answer `index` (None: the chat role's opening chunk)."""
        if self.chat:
            delta = (
                {"role": "assistant", "content": ""} if text is None else {"content": text} if text else {}
            )
            choice = {"index": index, "delta": delta, "finish_reason": finish_reason}
            body = self._body("chat.completion.chunk", [choice])
        else:
            body = self._body(
                "text_completion",
                [{"index": index, "text": text or "", "logprobs": None, "finish_reason": finish_reason}],
            )
        return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

    async def stream(
        self, events: asyncio.Queue[Event], count: int, deadline: float | None = None
    ) -> AsyncIterator[str]:
        """The chunks of `count` answers as they settle, each answer's last with its finish reason,
        then `data: [DONE]`; a failure, or the `deadline` (time.monotonic) passing, is sent as an
        error event."""
        if self.chat:
            for index in range(count):
                yield self.chunk(index, None)
        finished = 0
        while finished < count:
            try:
                left = None if deadline is None else max(deadline - time.monotonic(), 0)
                event = await asyncio.wait_for(events.get(), left)
            except TimeoutError:
                yield f"data: {json.dumps(ApiError(504, 'no answer in time', 'timeout', code='timeout').body())}\n\n"
                return
            if isinstance(event, Exception):
                yield f"data: {json.dumps(ApiError(500, f'generation failed: {event}', 'server_error').body())}\n\n"
                break
            if isinstance(event, Delta):
                yield self.chunk(event.index, event.text)
            else:
                yield self.chunk(event.index, "", event.finish_reason)
                finished += 1
        yield "data: [DONE]\n\n"


def serve(model, tokenizer, sampler: SamplerSettings, config: ServeConfig) -> None:
    """Serve `model` over HTTP until interrupted; on SIGTERM (or Ctrl-C) new requests get 503, the
    answers in flight are finished, then the server exits (a second signal exits at once)."""
    app = create_app(model, tokenizer, sampler, config)
    server = DrainingServer(uvicorn.Config(app, host=config.host, port=config.port, log_level="info"))
    server.run()


class Gate:
    """What every request passes before the endpoints: 503 while the server drains, 413 for a body
    above MAX_BODY_BYTES, 401 on /v1 without the API key (when there is one). Plain ASGI rather
    than Starlette's BaseHTTPMiddleware, which would hide a client's disconnect from the endpoints."""

    def __init__(self, app, state, api_key: str | None) -> None:
        self.app, self.state = app, state
        self.expected = f"Bearer {api_key}".encode() if api_key else None

    def refusal(self, scope) -> ApiError | None:
        headers = dict(scope["headers"])
        v1 = scope["path"].startswith("/v1")
        if self.state.draining and v1:
            return ApiError(503, "the server is shutting down; retry on another replica", "server_error",
                            code="shutting_down")  # fmt: skip
        if int(headers.get(b"content-length") or 0) > MAX_BODY_BYTES:
            return ApiError(413, f"the request body exceeds {MAX_BODY_BYTES} bytes; send a shorter prompt",
                            code="request_too_large")  # fmt: skip
        # compare_digest: the time taken does not tell how much of a guessed key was right.
        if (
            self.expected
            and v1
            and not hmac.compare_digest(headers.get(b"authorization", b""), self.expected)
        ):
            return ApiError(401, "invalid or missing API key: send the header Authorization: Bearer KEY",
                            code="invalid_api_key")  # fmt: skip
        return None

    async def __call__(self, scope, receive, send) -> None:
        refused = self.refusal(scope) if scope["type"] == "http" else None
        if refused is None:
            return await self.app(scope, receive, send)
        while (await receive()).get("more_body"):  # read the body away unkept: the client reads our answer
            pass
        await JSONResponse(refused.body(), status_code=refused.status)(scope, receive, send)


class DrainingServer(uvicorn.Server):
    """uvicorn's server, whose first exit signal drains the application before it stops."""

    def handle_exit(self, sig, frame) -> None:
        state = self.config.app.state
        if state.draining:
            return super().handle_exit(sig, frame)
        state.draining = True
        log.info("shutting down: %d request(s) in flight finish first; new ones get 503", state.in_flight)
        threading.Thread(target=self._exit_when_idle, args=(sig, frame), daemon=True).start()

    def _exit_when_idle(self, sig, frame) -> None:
        state = self.config.app.state
        while state.in_flight or state.batcher.pending:
            time.sleep(0.05)
        self.should_exit = True  # not handle_exit: uvicorn would re-raise the signal and exit by it
