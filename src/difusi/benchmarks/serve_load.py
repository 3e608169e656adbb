"""A load test of `difusi serve`: concurrent clients over a fixed prompt set for a fixed time, and
the same prompts one at a time in the same run, so the batching gain is a ratio.

The server runs as its own process (`python -m difusi serve ...`), so its resident memory is read
from /proc as a deployment would see it. Clients are the official `openai` package in threads;
half of them stream (time to first token is the first content chunk), half do not (it is the
whole answer's latency).
"""

from __future__ import annotations

import dataclasses
import itertools
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from difusi.errors import DifusiError
from difusi.evaluation.evaluate import load_test_rows
from difusi.evaluation.tables import markdown_table
from difusi.io import write_json, write_text
from difusi.model.checkpoint import resolve_checkpoint_dir
from difusi.model.tokenizer import load_tokenizer


@dataclass(frozen=True)
class Outcome:
    """One request: when it started and ended, its time to first token, tokens, and failure if any."""

    started: float
    seconds: float
    first_token_s: float
    tokens: int
    error: str | None = None


@dataclass(frozen=True)
class LoadResult:
    """A phase of the test: `clients` concurrent clients for `seconds`."""

    phase: str
    clients: int
    seconds: float
    requests: int
    failed: int
    requests_per_s: float
    tokens_per_s: float
    latency_p50_s: float
    latency_p95_s: float
    latency_p99_s: float
    first_token_p50_s: float
    first_token_p95_s: float


def resident_bytes(pid: int) -> int:
    """A process's resident memory (VmRSS), from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise DifusiError(f"no VmRSS for process {pid}; the load test reads /proc (Linux)")


def start_server(serve_args: Sequence[str], timeout_s: float = 300) -> tuple[subprocess.Popen, str]:
    """`difusi serve SERVE_ARGS` on a free port of 127.0.0.1, once it answers /health; (process, url)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "difusi", "serve", *serve_args, "--port", str(port), "--name", "load"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + timeout_s
    while True:
        try:
            urllib.request.urlopen(f"{url}/health", timeout=5).read()
            return process, url
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise DifusiError(
                    f"difusi serve {' '.join(serve_args)} did not start; run it alone to see why"
                ) from None
            time.sleep(0.2)


def ask(client, prompt: str, stream: bool, max_tokens: int | None, count_tokens) -> Outcome:
    """One chat request, timed; `count_tokens(text)` counts a streamed answer's tokens (a stream
    carries no usage)."""
    started = time.perf_counter()
    try:
        reply = client.chat.completions.create(
            model="load", messages=[{"role": "user", "content": prompt}], stream=stream, max_tokens=max_tokens
        )
        if not stream:
            seconds = time.perf_counter() - started
            return Outcome(started, seconds, seconds, reply.usage.completion_tokens)
        first, text = None, ""
        for chunk in reply:
            if chunk.choices and chunk.choices[0].delta.content:
                first = first or time.perf_counter() - started
                text += chunk.choices[0].delta.content
        seconds = time.perf_counter() - started
        return Outcome(started, seconds, first or seconds, count_tokens(text))
    except Exception as error:  # a failed request is counted, not fatal
        return Outcome(started, time.perf_counter() - started, 0.0, 0, f"{type(error).__name__}: {error}")


def run_phase(
    url: str,
    prompts: Sequence[str],
    clients: int,
    seconds: float,
    max_tokens: int | None,
    phase: str,
    count_tokens,
) -> tuple[LoadResult, list[Outcome]]:
    """`clients` threads sending the prompts round-robin (alternately streaming) until `seconds` pass."""
    import openai

    client = openai.OpenAI(base_url=f"{url}/v1", api_key="load", max_retries=0, timeout=600)
    outcomes: list[Outcome] = []
    lock, end = threading.Lock(), time.perf_counter() + seconds
    counter = itertools.count()

    def worker(number: int) -> None:
        while time.perf_counter() < end:
            with lock:
                n = next(counter)
            outcome = ask(client, prompts[n % len(prompts)], (n + number) % 2 == 1, max_tokens, count_tokens)
            with lock:
                outcomes.append(outcome)

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(worker, range(clients)))
    return summarize(phase, clients, time.perf_counter() - started, outcomes), outcomes


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def summarize(phase: str, clients: int, seconds: float, outcomes: Sequence[Outcome]) -> LoadResult:
    good = [o for o in outcomes if o.error is None]
    latencies, firsts = [o.seconds for o in good], [o.first_token_s for o in good]
    return LoadResult(
        phase=phase, clients=clients, seconds=seconds, requests=len(outcomes),
        failed=len(outcomes) - len(good), requests_per_s=len(good) / seconds,
        tokens_per_s=sum(o.tokens for o in good) / seconds,
        latency_p50_s=percentile(latencies, 50), latency_p95_s=percentile(latencies, 95),
        latency_p99_s=percentile(latencies, 99), first_token_p50_s=percentile(firsts, 50),
        first_token_p95_s=percentile(firsts, 95),
    )  # fmt: skip


def load_table(results: Sequence[LoadResult]) -> str:
    """Markdown, one row per phase."""
    header = ["phase", "clients", "requests", "failed", "requests/s", "tokens/s", "latency p50 / p95 / p99 s", "first token p50 / p95 s"]  # fmt: skip
    rows = [
        [
            r.phase,
            str(r.clients),
            str(r.requests),
            str(r.failed),
            f"{r.requests_per_s:.2f}",
            f"{r.tokens_per_s:.1f}",
            f"{r.latency_p50_s:.2f} / {r.latency_p95_s:.2f} / {r.latency_p99_s:.2f}",
            f"{r.first_token_p50_s:.2f} / {r.first_token_p95_s:.2f}",
        ]  # fmt: skip
        for r in results
    ]
    return markdown_table(header, rows, right_from=1)


def load_test(
    serve_args: Sequence[str],
    prompts: Sequence[str],
    count_tokens,
    clients: int = 32,
    seconds: float = 300,
    single_seconds: float = 60,
    max_tokens: int | None = None,
) -> dict:
    """Start the server, answer `prompts` one at a time for `single_seconds`, then with `clients`
    concurrent clients for `seconds`; the server's resident memory at the start, after the first
    fifth of the concurrent phase (at most a minute) and at the end. Returns the report."""
    process, url = start_server(serve_args)
    try:
        import openai

        warm = openai.OpenAI(base_url=f"{url}/v1", api_key="load", max_retries=0, timeout=600)
        ask(warm, prompts[0], False, max_tokens, count_tokens)  # model and allocator warm
        memory = {"start": resident_bytes(process.pid)}
        single, _ = run_phase(url, prompts, 1, single_seconds, max_tokens, "one at a time", count_tokens)
        timer = threading.Timer(
            min(60.0, seconds / 5),
            lambda: memory.__setitem__("after first minute", resident_bytes(process.pid)),
        )
        timer.start()
        loaded, outcomes = run_phase(
            url, prompts, clients, seconds, max_tokens, f"{clients} clients", count_tokens
        )
        timer.cancel()
        memory["end"] = resident_bytes(process.pid)
    finally:
        process.terminate()
        process.wait(timeout=120)
    errors = sorted({o.error for o in outcomes if o.error})
    return {
        "serve_args": list(serve_args),
        "prompts": len(prompts),
        "results": [dataclasses.asdict(single), dataclasses.asdict(loaded)],
        "batching_gain": loaded.tokens_per_s / single.tokens_per_s if single.tokens_per_s else None,
        "resident_bytes": memory,
        "errors": errors[:10],
    }


def write_serve_benchmark(
    serve_args: Sequence[str],
    data: str,
    limit: int,
    clients: int,
    duration: float,
    single_duration: float,
    max_tokens: int | None,
    out: str | Path,
) -> None:
    """`difusi bench serve`: `load_test` of a server started with `serve_args` on the first `limit`
    prompts of `data`, printed and written to OUT/serve_load.json and .md."""
    serve_args = list(serve_args[1:] if serve_args[:1] == ["--"] else serve_args)
    if "--model" not in serve_args:
        raise DifusiError("give the server's arguments after `--`, e.g. -- --model runs/demo/base/model")
    rows = load_test_rows(data, limit)
    tokenizer = load_tokenizer(resolve_checkpoint_dir(serve_args[serve_args.index("--model") + 1]))
    count = lambda text: len(tokenizer.encode(text, add_special_tokens=False))  # noqa: E731
    report = load_test(
        serve_args, [row["input"] for row in rows], count, clients, duration, single_duration, max_tokens
    )
    memory = {k: v / 2**20 for k, v in report["resident_bytes"].items()}
    table = load_table([LoadResult(**result) for result in report["results"]])
    summary = (
        f"batched throughput {report['batching_gain']:.2f}x one at a time (tokens/s); server memory "
        + ", ".join(f"{k} {v:.0f} MiB" for k, v in memory.items())
    )
    out = Path(out)
    write_json(out / "serve_load.json", report)
    write_text(out / "serve_load.md", f"{table}\n\n{summary}\n")
    print(f"{table}\n\n{summary}")
    if report["errors"]:
        print("errors:", *report["errors"], sep="\n  ")
    print(f"written {out}/serve_load.json and .md")
