"""`difusi serve`: an OpenAI-compatible HTTP server for a LLaDA model (FastAPI and uvicorn, the
`serve` extra).

Endpoints: POST /v1/chat/completions (the chat template), POST /v1/completions (plain text), GET
/v1/models and /health. Answers stream as server-sent events when asked; concurrent requests share
sampler calls (`batching`); bad requests get a 4xx JSON error in OpenAI's shape (`protocol`); with
an API key, /v1 answers only requests that carry it. This
module holds only the server's settings, so the command line can build its options without
importing the web stack; `difusi.serving.app` has `create_app` and `serve`.
"""

from __future__ import annotations

from dataclasses import dataclass

from difusi.config import option


@dataclass(frozen=True)
class ServeConfig:
    """Where the server listens and how it queues and batches requests."""

    host: str = option("127.0.0.1", "address to bind (0.0.0.0 exposes the server to the network)")
    port: int = option(8000, "TCP port")
    name: str | None = option(None, "model id clients send (default: the --adapter or --model given)")
    max_batch_size: int = option(16, "most answers generated in one sampler call")
    max_queue: int = option(64, "most answers waiting; beyond it requests get 503")
    seed: int = option(0, "sampling seed of requests that give none")
    request_timeout: float | None = option(
        None, "seconds a request may wait for its answer before a 504 (None: no limit)"
    )
    api_key: str | None = option(
        None, "require `Authorization: Bearer KEY` on /v1 (default: $DIFUSI_API_KEY; neither: open to all)"
    )
