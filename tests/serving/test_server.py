"""`difusi serve`: the OpenAI-compatible server, driven by the official `openai` client and raw HTTP
against 127.0.0.1 (uvicorn in a thread, the tiny checkpoint behind it)."""

from __future__ import annotations

import json
import logging
import os
import signal
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
        {"status": "ok", "model": "tiny", "queued": 0, "in_flight": 0, "sampler_calls": server.sampler_calls},
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
    ("top_p above one", {"model": "tiny", "messages": MESSAGES, "top_p": 7}, 400),
    ("top_p zero", {"model": "tiny", "messages": MESSAGES, "top_p": 0}, 400),
    ("negative top_k", {"model": "tiny", "messages": MESSAGES, "top_k": -1}, 400),
    ("temperature above two", {"model": "tiny", "messages": MESSAGES, "temperature": 2.5}, 400),
    ("n two", {"model": "tiny", "messages": MESSAGES, "n": 2}, 400),
    ("presence penalty", {"model": "tiny", "messages": MESSAGES, "presence_penalty": 0.5}, 400),
    ("penalty out of range", {"model": "tiny", "messages": MESSAGES, "frequency_penalty": 3}, 400),
    ("logit bias", {"model": "tiny", "messages": MESSAGES, "logit_bias": {"50": 10}}, 400),
    ("logprobs", {"model": "tiny", "messages": MESSAGES, "logprobs": True}, 400),
    ("top logprobs", {"model": "tiny", "messages": MESSAGES, "top_logprobs": 3}, 400),
    ("tools", {"model": "tiny", "messages": MESSAGES, "tools": [{"type": "function"}]}, 400),
    (
        "json response",
        {"model": "tiny", "messages": MESSAGES, "response_format": {"type": "json_object"}},
        400,
    ),
    ("five stop sequences", {"model": "tiny", "messages": MESSAGES, "stop": ["a", "b", "c", "d", "e"]}, 400),
    ("best_of two", {"model": "tiny", "prompt": "Halo", "best_of": 2}, 400),
    ("echo", {"model": "tiny", "prompt": "Halo", "echo": True}, 400),
    ("suffix", {"model": "tiny", "prompt": "Halo", "suffix": "!"}, 400),
    (
        "streamed usage",
        {"model": "tiny", "messages": MESSAGES, "stream": True, "stream_options": {"include_usage": True}},
        400,
    ),
    (
        "10 MB body",
        json.dumps({"model": "tiny", "messages": [{"role": "user", "content": "a" * 10**7}]}).encode(),
        413,
    ),
    ("invalid UTF-8", b'{"model": "tiny", "messages": [{"role": "user", "content": "\xff\xfe"}]}', 400),
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


def test_fields_are_named_in_the_error_and_honoured_fields_change_the_answer(server):
    status, answer = http(
        f"{server.url}/v1/chat/completions",
        json.dumps({"model": "tiny", "messages": MESSAGES, "top_p": 7}).encode(),
    )
    assert (
        status == 400
        and answer["error"]["param"] == "top_p"
        and answer["error"]["type"] == "invalid_request_error"
    )
    status, answer = http(
        f"{server.url}/v1/chat/completions",
        json.dumps({"model": "tiny", "messages": MESSAGES, "presence_penalty": 1}).encode(),
    )
    assert status == 400 and answer["error"]["param"] == "presence_penalty"
    assert "no repetition penalties" in answer["error"]["message"]
    client = server.client()
    greedy = client.chat.completions.create(model="tiny", messages=MESSAGES, temperature=0)
    # top_k 1 (an extra field) and a tiny top_p leave only the likeliest token: the greedy answer.
    for extra in ({"top_k": 1}, {}):
        drawn = client.chat.completions.create(
            model="tiny",
            messages=MESSAGES,
            temperature=1.0,
            seed=5,
            top_p=1e-6 if not extra else None,
            extra_body=extra,
        )
        assert drawn.choices[0].message.content == greedy.choices[0].message.content
    # Accepted at the values that change nothing, as stock clients send them.
    same = client.chat.completions.create(
        model="tiny",
        messages=MESSAGES,
        presence_penalty=0,
        frequency_penalty=0,
        logprobs=False,
        n=1,
        user="u1",
    )
    assert same.choices[0].message.content == greedy.choices[0].message.content


def test_an_api_key_guards_every_v1_route(tiny):
    with start(create_app(*tiny, SAMPLER, ServeConfig(name="tiny", api_key="s3cret"))) as server:
        wrong = openai.OpenAI(base_url=f"{server.url}/v1", api_key="guess", max_retries=0)
        with pytest.raises(openai.AuthenticationError) as refused:
            wrong.chat.completions.create(model="tiny", messages=MESSAGES)
        assert refused.value.status_code == 401 and refused.value.body["code"] == "invalid_api_key"
        for path in ("/v1/models", "/v1/completions"):
            status, answer = http(f"{server.url}{path}", None if path.endswith("models") else b"{}")
            assert status == 401 and set(answer["error"]) == {"message", "type", "param", "code"}
        right = openai.OpenAI(base_url=f"{server.url}/v1", api_key="s3cret", max_retries=0)
        assert right.chat.completions.create(model="tiny", messages=MESSAGES).choices[0].message.content
        assert right.completions.create(model="tiny", prompt="Halo").choices[0].text is not None
        assert http(f"{server.url}/health")[0] == 200  # a load balancer's probe needs no key


def test_the_command_takes_the_key_from_the_environment_and_warns_when_exposed(
    tiny_checkpoint, monkeypatch, caplog
):
    import difusi.serving.app as app_module
    from difusi.cli import main

    served = []
    monkeypatch.setattr(app_module, "serve", lambda model, tokenizer, sampler, config: served.append(config))
    monkeypatch.setenv("DIFUSI_API_KEY", "from-env")
    assert main(["serve", "--model", str(tiny_checkpoint), "--host", "0.0.0.0"]) == 0
    assert served[-1].api_key == "from-env" and "with no API key" not in caplog.text
    monkeypatch.delenv("DIFUSI_API_KEY")
    assert main(["serve", "--model", str(tiny_checkpoint), "--host", "0.0.0.0"]) == 0
    assert served[-1].api_key is None
    assert "serving on 0.0.0.0 with no API key: anyone who reaches the port can use the model" in caplog.text


def test_server_answers_after_every_malformed_request(server):
    for _, body, _ in MALFORMED:
        http(
            f"{server.url}/v1/chat/completions",
            body if isinstance(body, bytes) else json.dumps(body).encode(),
        )
    answer = server.client().chat.completions.create(model="tiny", messages=MESSAGES)
    assert answer.choices[0].message.content
    assert http(f"{server.url}/v1/nowhere")[1]["error"]["message"] == "Not Found"


def held(app) -> tuple[threading.Event, threading.Event]:
    """(running, release): the app's sampler calls wait for `release` once `running` is set."""
    engine = app.state.batcher.engine
    release, running = threading.Event(), threading.Event()
    real_run = engine.run

    def held_run(jobs):
        running.set()
        release.wait(30)
        real_run(jobs)

    engine.run = held_run
    return running, release


def test_a_full_queue_answers_503(tiny):
    app = create_app(*tiny, SAMPLER, ServeConfig(name="tiny", max_queue=1))
    running, release = held(app)
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


def test_a_client_that_leaves_is_dropped_from_the_queue(tiny, caplog):
    app = create_app(*tiny, SAMPLER, ServeConfig(name="tiny"))
    running, release = held(app)
    with caplog.at_level("INFO", logger="difusi.serving.batching"), start(app) as server:
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(server.client().chat.completions.create, model="tiny", messages=MESSAGES)
            assert running.wait(30)  # the first request is in the sampler
            host, port = server.url.removeprefix("http://").split(":")
            body = json.dumps({"model": "tiny", "messages": MESSAGES}).encode()
            with socket.create_connection((host, int(port))) as leaving:  # queued, then gone
                leaving.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)  # fmt: skip
                while http(f"{server.url}/health")[1]["queued"] < 1:
                    time.sleep(0.01)
            while http(f"{server.url}/health")[1]["queued"]:
                time.sleep(0.01)
            release.set()
            assert first.result().choices[0].message.content
        assert "request disconnected: 1 queued answer(s) dropped, 0 in the running call" in caplog.text
        assert server.sampler_calls == 1  # no call generated the answer nobody waits for


def test_a_request_past_its_time_limit_gets_504_and_leaves_the_queue(tiny):
    app = create_app(*tiny, SAMPLER, ServeConfig(name="tiny", request_timeout=0.5))
    running, release = held(app)
    with start(app) as server, ThreadPoolExecutor(1) as pool:
        first = pool.submit(
            http,
            f"{server.url}/v1/chat/completions",
            json.dumps({"model": "tiny", "messages": MESSAGES}).encode(),
        )
        assert running.wait(30)
        status, answer = http(
            f"{server.url}/v1/chat/completions", json.dumps({"model": "tiny", "messages": MESSAGES}).encode()
        )
        assert status == 504 and answer["error"]["code"] == "timeout"
        assert http(f"{server.url}/health")[1]["queued"] == 0
        release.set()
        assert first.result()[0] == 504  # held in the sampler past its limit too


def test_sigterm_finishes_the_answers_in_flight_refuses_new_ones_and_exits_0(tiny_checkpoint):
    args = [
        "--model",
        str(tiny_checkpoint),
        "--name",
        "tiny",
        "--max-batch-size",
        "1",
        "--steps",
        "64",
        "--gen-length",
        "64",
    ]
    process, url = serve_process(args)
    try:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        deadline = time.monotonic() + 60
        with ThreadPoolExecutor(8) as pool:
            asked = [
                pool.submit(client.chat.completions.create, model="tiny", messages=MESSAGES) for _ in range(8)
            ]
            while http(f"{url}/health")[1]["in_flight"] < 8:  # all 8 requests waiting for answers
                assert time.monotonic() < deadline, "the 8 requests never were in flight together"
                time.sleep(0.01)
            process.send_signal(signal.SIGTERM)
            time.sleep(0.2)
            status, refused = http(
                f"{url}/v1/chat/completions", json.dumps({"model": "tiny", "messages": MESSAGES}).encode()
            )
            answers = [future.result(timeout=120) for future in asked]
        assert status == 503 and refused["error"]["code"] == "shutting_down"
        assert all(answer.choices[0].finish_reason in ("stop", "length") for answer in answers)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
        output = process.communicate(timeout=30)[0]
    assert "shutting down: 8 request(s) in flight finish first; new ones get 503" in output


def serve_process(args: list[str]) -> tuple[subprocess.Popen, str]:
    """`difusi serve ARGS` as its own process on a free port, once /health answers; (process, url)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "difusi", "serve", *args, "--port", str(port)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 120
    while True:
        try:
            http(f"{url}/health")
            return process, url
        except urllib.error.URLError:
            assert process.poll() is None and time.monotonic() < deadline, "difusi serve did not start"
            time.sleep(0.2)


def test_serve_command_binds_localhost_by_default(tiny_checkpoint):
    assert ServeConfig().host == "127.0.0.1"
    process, url = serve_process(["--model", str(tiny_checkpoint)])
    try:
        status, health = http(f"{url}/health")
        assert status == 200 and health["model"] == str(tiny_checkpoint)
    finally:
        process.terminate()
        output = process.communicate(timeout=30)[0]
    assert f"Uvicorn running on {url}" in output


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


def test_the_load_benchmark_drives_a_real_server_and_reports_every_phase(tiny_checkpoint, tmp_path, capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from difusi.cli import main

    rows = {
        "subset_name": ["a", "b"],
        "template_name": ["t", "t"],
        "input": ["Halo", "Apa kabar?"],
        "output": ["x", "y"],
    }
    pq.write_table(pa.table(rows), tmp_path / "test.parquet")
    server = ["--model", str(tiny_checkpoint), "--steps", "4", "--gen-length", "4", "--block-length", "4"]
    code = main(["bench", "serve", "--data", str(tmp_path / "test.parquet"), "--clients", "3", "--duration", "2",
                 "--single-duration", "1", "--out", str(tmp_path / "load"), "--", *server])  # fmt: skip
    assert code == 0
    report = json.loads((tmp_path / "load" / "serve_load.json").read_text())
    single, loaded = report["results"]
    assert (single["phase"], single["clients"], loaded["phase"], loaded["clients"]) == (
        "one at a time",
        1,
        "3 clients",
        3,
    )
    for phase in (single, loaded):
        assert phase["requests"] > 0 and phase["failed"] == 0 and phase["tokens_per_s"] > 0
        assert 0 < phase["latency_p50_s"] <= phase["latency_p95_s"] <= phase["latency_p99_s"]
    assert report["batching_gain"] == pytest.approx(loaded["tokens_per_s"] / single["tokens_per_s"])
    assert set(report["resident_bytes"]) == {"start", "after first minute", "end"}
    assert all(value > 10 * 2**20 for value in report["resident_bytes"].values())
    assert "| 3 clients | 3 |" in capsys.readouterr().out
