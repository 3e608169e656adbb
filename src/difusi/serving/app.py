"""The FastAPI application: OpenAI's /v1/chat/completions, /v1/completions and /v1/models, and
/health, over one model shared through a `Batcher`."""

from __future__ import annotations

import asyncio
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

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

# Far above any prompt a LLaDA context holds (8,192 tokens are some 40 KB of text), far below what
# would make parsing and tokenising a request a denial of service.
MAX_BODY_BYTES = 1 << 20


def create_app(model, tokenizer, sampler: SamplerSettings, config: ServeConfig) -> FastAPI:
    """The server for `model` under the id `config.name`; `sampler` holds the settings requests
    start from. The batcher runs while the application does (its lifespan)."""
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

    @app.middleware("http")
    async def limit_body(request: Request, call_next):
        if int(request.headers.get("content-length") or 0) > MAX_BODY_BYTES:
            async for _ in request.stream():  # read it away unkept, so the client reads our answer
                pass
            too_large = ApiError(
                413, f"the request body exceeds {MAX_BODY_BYTES} bytes; send a shorter prompt",
                code="request_too_large",
            )  # fmt: skip
            return JSONResponse(too_large.body(), status_code=413)
        return await call_next(request)

    if config.api_key:
        expected = f"Bearer {config.api_key}".encode()

        @app.middleware("http")
        async def require_key(request: Request, call_next):
            given = request.headers.get("authorization", "").encode()
            # compare_digest: the time taken does not tell how much of a guessed key was right.
            if request.url.path.startswith("/v1") and not hmac.compare_digest(given, expected):
                refused = ApiError(
                    401, "invalid or missing API key: send the header Authorization: Bearer KEY",
                    code="invalid_api_key",
                )  # fmt: skip
                return JSONResponse(refused.body(), status_code=401)
            return await call_next(request)

    async def respond(body: GenerationRequest, prompts: list[list[int]], chat: bool):
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
        if body.stream:
            return StreamingResponse(reply.stream(events, len(jobs)), media_type="text/event-stream")
        answers = await collect(events, len(jobs))
        return reply.complete(answers)

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatCompletionRequest):
        return await respond(body, [encode_chat(tokenizer, [m.as_dict() for m in body.messages])], chat=True)

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest):
        texts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
        return await respond(body, [tokenizer.encode(text) for text in texts], chat=False)

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
    return ApiError(400, f"{where or 'body'}: {first['msg']}{more}", param=where or None)


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

    async def stream(self, events: asyncio.Queue[Event], count: int) -> AsyncIterator[str]:
        """The chunks of `count` answers as they settle, each answer's last with its finish reason,
        then `data: [DONE]`; a failure is sent as an error event."""
        if self.chat:
            for index in range(count):
                yield self.chunk(index, None)
        finished = 0
        while finished < count:
            event = await events.get()
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
    """Serve `model` over HTTP until interrupted."""
    import uvicorn

    uvicorn.run(
        create_app(model, tokenizer, sampler, config), host=config.host, port=config.port, log_level="info"
    )
