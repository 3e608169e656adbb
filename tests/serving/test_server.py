"""`difusi serve`: the OpenAI-compatible server, driven by the official `openai` client and raw HTTP
against 127.0.0.1 (uvicorn in a thread, the tiny checkpoint behind it)."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
openai = pytest.importorskip("openai")

import uvicorn  # noqa: E402

from difusi import SamplerSettings, load_model  # noqa: E402
from difusi.serving import ServeConfig  # noqa: E402
from difusi.serving.app import create_app  # noqa: E402

SAMPLER = SamplerSettings(steps=16, gen_length=16, block_length=8)
MESSAGES = [{"role": "user", "content": "Apa ibu kota Indonesia?"}]


@dataclass
class Server:
    app: object
    url: str

    def client(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key="unused", max_retries=0)

    @property
    def sampler_calls(self) -> int:
        return self.app.state.batcher.sampler_calls


@contextmanager
def start(app) -> Iterator[Server]:
    """The app served by uvicorn on a free port of 127.0.0.1 until the block ends."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    yield Server(app, f"http://127.0.0.1:{sock.getsockname()[1]}")
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def tiny(tiny_checkpoint: Path):
    return load_model(tiny_checkpoint, device="cpu")


@pytest.fixture(scope="module")
def server(tiny) -> Iterator[Server]:
    with start(create_app(*tiny, SAMPLER, ServeConfig(name="tiny"))) as running:
        yield running


def http(url: str, body: bytes | None = None, headers: dict | None = None) -> tuple[int, dict]:
    """(status, JSON body) of a GET (no body) or POST, 4xx and 5xx included."""
    headers = {"Content-Type": "application/json", **(headers or {})}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, body, headers), timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_chat_and_text_completions(server):
    client = server.client()

    chat = client.chat.completions.create(model="tiny", messages=MESSAGES)
    text = client.completions.create(model="tiny", prompt=["Jakarta adalah", "Saya"], max_tokens=8)

    [choice] = chat.choices
    assert choice.message.role == "assistant" and choice.message.content
    assert choice.finish_reason in ("stop", "length")
    assert chat.usage.prompt_tokens > 0 and 0 < chat.usage.completion_tokens <= 16
    assert [c.index for c in text.choices] == [0, 1] and all(c.text for c in text.choices)
    assert [m.id for m in client.models.list().data] == ["tiny"]
    assert http(f"{server.url}/health") == (
        200,
        {"status": "ok", "model": "tiny", "queued": 0, "sampler_calls": server.sampler_calls},
    )


def test_sampler_options_are_extra_body_fields_and_stop_sequences_cut(server):
    client = server.client()
    whole = client.completions.create(
        model="tiny", prompt="Halo", extra_body={"steps": 8, "block_length": 16}
    )
    stop = whole.choices[0].text[4:6]

    cut = client.completions.create(
        model="tiny", prompt="Halo", stop=[stop], extra_body={"steps": 8, "block_length": 16}
    )

    assert cut.choices[0].text == whole.choices[0].text[: whole.choices[0].text.find(stop)]
    assert cut.choices[0].finish_reason == "stop"


def test_sixteen_concurrent_chat_requests_share_sampler_calls(server, caplog):
    client = server.client()
    before = server.sampler_calls

    def ask(number: int) -> str:
        messages = [{"role": "user", "content": f"Pertanyaan nomor {number}"}]
        return client.chat.completions.create(model="tiny", messages=messages).choices[0].message.content

    with caplog.at_level(logging.INFO, logger="difusi.serving.batching"), ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(ask, range(16)))

    calls = server.sampler_calls - before
    assert len(answers) == 16 and all(answers)
    assert calls < 16, f"{calls} sampler calls for 16 requests"
    logged = [record.getMessage() for record in caplog.records if "sampler call" in record.getMessage()]
    assert len(logged) == calls and any(" 1 answer(s)" not in line for line in logged)
    print(f"16 concurrent requests: {calls} sampler calls: {logged}")


def test_streamed_chat_yields_chunks_that_add_up_to_the_answer(server):
    client = server.client()
    whole = client.chat.completions.create(model="tiny", messages=MESSAGES).choices[0].message.content

    chunks = list(client.chat.completions.create(model="tiny", messages=MESSAGES, stream=True))

    pieces = [chunk.choices[0].delta.content for chunk in chunks if chunk.choices[0].delta.content]
    assert len(pieces) >= 3
    assert "".join(pieces) == whole
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")

    body = json.dumps({"model": "tiny", "messages": MESSAGES, "stream": True}).encode()
    request = urllib.request.Request(
        f"{server.url}/v1/chat/completions", body, {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        events = [line for line in response.read().decode().splitlines() if line.startswith("data: ")]
    assert events[-1] == "data: [DONE]" and len(events) >= 5


MALFORMED = [
    ("bad JSON", b'{"model": "tiny", "messages": [', 400),
    ("not an object", b"[1, 2, 3]", 400),
    ("empty body", b"", 400),
    ("missing messages", {"model": "tiny"}, 400),
    ("empty messages", {"model": "tiny", "messages": []}, 400),
    ("missing model", {"messages": MESSAGES}, 400),
    ("unknown model", {"model": "gpt-4o", "messages": MESSAGES}, 404),
    ("negative max_tokens", {"model": "tiny", "messages": MESSAGES, "max_tokens": -5}, 400),
    ("zero max_tokens", {"model": "tiny", "messages": MESSAGES, "max_tokens": 0}, 400),
    ("huge max_tokens", {"model": "tiny", "messages": MESSAGES, "max_tokens": 10**9}, 400),
    ("max_tokens as text", {"model": "tiny", "messages": MESSAGES, "max_tokens": "ten"}, 400),
    ("messages as text", {"model": "tiny", "messages": "hello"}, 400),
    ("content as number", {"model": "tiny", "messages": [{"role": "user", "content": 5}]}, 400),
    ("unknown role", {"model": "tiny", "messages": [{"role": "robot", "content": "hi"}]}, 400),
    ("stream as text", {"model": "tiny", "messages": MESSAGES, "stream": "yes"}, 400),
    ("negative temperature", {"model": "tiny", "messages": MESSAGES, "temperature": -1}, 400),
    ("n above one", {"model": "tiny", "messages": MESSAGES, "n": 3}, 400),
    ("steps not fitting blocks", {"model": "tiny", "messages": MESSAGES, "steps": 7}, 400),
    ("unknown cache", {"model": "tiny", "messages": MESSAGES, "cache": "huge"}, 400),
    ("prompt as number", {"model": "tiny", "prompt": 42}, 400),
]


@pytest.mark.parametrize(("case", "body", "status"), MALFORMED, ids=[case for case, *_ in MALFORMED])
def test_malformed_requests_get_openai_errors_and_the_server_goes_on(server, case, body, status):
    endpoint = "completions" if isinstance(body, dict) and "prompt" in body else "chat/completions"
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()

    got, answer = http(f"{server.url}/v1/{endpoint}", raw)

    assert got == status, answer
    assert set(answer["error"]) == {"message", "type", "param", "code"} and answer["error"]["message"]
    assert "\n" not in answer["error"]["message"]
    assert http(f"{server.url}/health")[0] == 200


def test_server_answers_after_every_malformed_request(server):
    for _, body, _ in MALFORMED:
        http(
            f"{server.url}/v1/chat/completions",
            body if isinstance(body, bytes) else json.dumps(body).encode(),
        )
    answer = server.client().chat.completions.create(model="tiny", messages=MESSAGES)
    assert answer.choices[0].message.content
    assert http(f"{server.url}/v1/nowhere")[1]["error"]["message"] == "Not Found"


def test_a_full_queue_answers_503(tiny):
    app = create_app(*tiny, SAMPLER, ServeConfig(name="tiny", max_queue=1))
    engine = app.state.batcher.engine
    release, running = threading.Event(), threading.Event()
    real_run = engine.run

    def held_run(jobs):
        running.set()
        release.wait(30)
        real_run(jobs)

    engine.run = held_run
    with start(app) as server:
        client = server.client()

        def ask():
            return client.chat.completions.create(model="tiny", messages=MESSAGES)

        with ThreadPoolExecutor(2) as pool:
            first = pool.submit(ask)
            assert running.wait(30)  # the first request is in the sampler
            second = pool.submit(ask)
            while http(f"{server.url}/health")[1]["queued"] < 1:
                time.sleep(0.01)
            with pytest.raises(openai.APIStatusError) as refused:
                ask()
            release.set()
            assert first.result().choices[0].message.content and second.result().choices[0].message.content
        assert refused.value.status_code == 503
        assert refused.value.body["code"] == "queue_full"


def test_serve_command_binds_localhost_by_default(tiny_checkpoint):
    assert ServeConfig().host == "127.0.0.1"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "difusi", "serve", "--model", str(tiny_checkpoint), "--port", str(port)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                status, health = http(f"http://127.0.0.1:{port}/health")
                break
            except urllib.error.URLError:
                assert process.poll() is None and time.monotonic() < deadline, "difusi serve did not start"
                time.sleep(0.2)
        assert status == 200 and health["model"] == str(tiny_checkpoint)
    finally:
        process.terminate()
        output = process.communicate(timeout=30)[0]
    assert f"Uvicorn running on http://127.0.0.1:{port}" in output


def test_a_failed_sampler_call_is_a_500_and_the_server_goes_on(tiny):
    app = create_app(*tiny, SAMPLER, ServeConfig(name="tiny"))
    engine = app.state.batcher.engine
    real_run = engine.run

    def failing_run(jobs):
        engine.run = real_run
        raise RuntimeError("CUDA out of memory")

    engine.run = failing_run
    with start(app) as server:
        body = json.dumps({"model": "tiny", "messages": MESSAGES}).encode()
        status, answer = http(f"{server.url}/v1/chat/completions", body)
        assert status == 500 and answer["error"]["type"] == "server_error"
        assert "CUDA out of memory" in answer["error"]["message"]
        assert (
            server.client()
            .chat.completions.create(model="tiny", messages=MESSAGES)
            .choices[0]
            .message.content
        )
