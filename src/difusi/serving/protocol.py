"""The OpenAI request bodies the server accepts, checked field by field, their sampler settings, and
OpenAI's error shape.

Fields are strictly typed (no "10" for 10, no "yes" for true) and checked against OpenAI's ranges
(temperature 0-2, top_p in (0, 1], penalties in [-2, 2], at most 4 stop sequences ...). Every
sampling field is either honoured (temperature, top_p, the `top_k` extra, seed, stop, max_tokens)
or, with a value that would change the answer, refused with a 400 naming it (penalties, logit_bias,
logprobs, n or best_of above 1, echo, suffix, tools, a JSON response format, streamed usage):
never a silent no-op. Fields that cannot change the answer (user, metadata ...) are accepted. difusi's
sampler settings are extra body fields of the same names (`steps`, `block_length`, `cache`,
`threshold` ...).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from difusi.diffusion.sampler import Cache, Remasking, SamplerSettings
from difusi.errors import DifusiError
from difusi.generation import SAMPLER_FIELDS


class ApiError(Exception):
    """A request the server answers with an error: HTTP status and OpenAI's error fields."""

    def __init__(
        self,
        status: int,
        message: str,
        kind: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.kind, self.param, self.code = status, message, kind, param, code

    def body(self) -> dict[str, Any]:
        """OpenAI's error shape: {"error": {"message", "type", "param", "code"}}."""
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


class Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")


class GenerationRequest(Strict):
    """What both completion endpoints share: the model, OpenAI's sampling fields and the sampler's."""

    model: str
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)  # the chat API's newer name for max_tokens
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    top_k: int | None = Field(None, ge=0)  # vLLM's extra field; 0 is every token
    stream: bool = False
    stop: str | list[str] | None = Field(None, max_length=4)
    n: int = Field(1, ge=1, le=128)
    seed: int | None = None
    # OpenAI fields the sampler cannot honour: accepted at the values that change nothing.
    presence_penalty: float = Field(0.0, ge=-2, le=2)
    frequency_penalty: float = Field(0.0, ge=-2, le=2)
    logit_bias: dict[str, float] | None = None
    logprobs: bool | int | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)
    best_of: int | None = Field(None, ge=1)
    echo: bool = False
    suffix: str | None = None
    tools: list[dict] | None = None
    response_format: dict | None = None
    stream_options: dict | None = None
    steps: int | None = Field(None, ge=1)
    gen_length: int | None = Field(None, ge=1)
    block_length: int | None = Field(None, ge=1)
    cfg_scale: float | None = Field(None, ge=0)
    remasking: Remasking | None = None
    cache: Cache | None = None
    threshold: float | None = Field(None, ge=0, le=1)
    early_stop: bool | None = None

    @field_validator("n", "best_of")
    @classmethod
    def one_answer(cls, value: int | None) -> int | None:
        if value is not None and value > 1:
            raise ValueError("the server gives one answer per prompt; send the request again for more")
        return value

    @field_validator("presence_penalty", "frequency_penalty")
    @classmethod
    def no_penalty(cls, value: float) -> float:
        if value != 0:
            raise ValueError("the diffusion sampler has no repetition penalties; leave it at 0")
        return value

    @field_validator("logit_bias", "tools")
    @classmethod
    def empty(cls, value):
        if value:
            raise ValueError("not supported by the diffusion sampler; leave it out")
        return value

    @field_validator("logprobs", "top_logprobs", "echo", "suffix")
    @classmethod
    def not_asked(cls, value):
        if value:  # False, 0 or None ask for nothing
            raise ValueError("not supported by this server; leave it out")
        return value

    @field_validator("stream_options")
    @classmethod
    def no_stream_usage(cls, value: dict | None) -> dict | None:
        if value and value.get("include_usage"):
            raise ValueError("streamed usage is not sent by this server; leave include_usage out")
        return value

    @field_validator("response_format")
    @classmethod
    def plain_text(cls, value: dict | None) -> dict | None:
        if value is not None and value.get("type") != "text":
            raise ValueError("only {'type': 'text'} is supported; the sampler cannot constrain its output")
        return value

    def stop_sequences(self) -> tuple[str, ...]:
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())

    def sampler_settings(self, defaults: SamplerSettings) -> SamplerSettings:
        """The server's settings with this request's: `max_tokens` is the answer length (the steps
        per token and the block length kept where they still fit), then every sampler field given."""
        given = {name: value for name in SAMPLER_FIELDS if (value := getattr(self, name, None)) is not None}
        settings = defaults
        max_tokens = self.max_tokens if self.max_tokens is not None else self.max_completion_tokens
        if max_tokens is not None:
            if given.get("gen_length", max_tokens) != max_tokens:
                raise DifusiError("max_tokens and gen_length differ; give one of them")
            settings = with_answer_length(defaults, max_tokens)
        settings = replace(settings, **given)
        settings.check()
        return settings


def with_answer_length(settings: SamplerSettings, gen_length: int) -> SamplerSettings:
    """`settings` for a `gen_length`-token answer: its block length if it divides gen_length (one
    block otherwise) and its steps per token, rounded up to a whole number of steps per block."""
    block_length = settings.block_length if gen_length % settings.block_length == 0 else gen_length
    blocks = gen_length // block_length
    steps = -(-settings.steps * gen_length // settings.gen_length)  # ceiling division
    steps = -(-steps // blocks) * blocks
    return replace(settings, gen_length=gen_length, block_length=block_length, steps=steps)


class TextPart(Strict):
    type: Literal["text"]
    text: str


class ChatMessage(Strict):
    role: Literal["system", "user", "assistant"]
    content: str | list[TextPart]

    def as_dict(self) -> dict[str, str]:
        """The message as `render_chat` takes it, text parts joined."""
        content = (
            self.content if isinstance(self.content, str) else "".join(part.text for part in self.content)
        )
        return {"role": self.role, "content": content}


class ChatCompletionRequest(GenerationRequest):
    messages: list[ChatMessage] = Field(min_length=1)


class CompletionRequest(GenerationRequest):
    """A plain-text prompt (no chat template), or several: one answer each."""

    prompt: str | list[str] = Field(min_length=1)
