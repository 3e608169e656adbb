"""Sampler benchmarks: `generate` against the literal official algorithm (`benchmark_sampler`), and
the fast samplers (key/value cache, confidence threshold) and AR decoding against the exact sampler
(`benchmark_sampling`, `sampling_quality`)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from difusi.autoregressive import ar_generate
from difusi.diffusion.reference import reference_generate
from difusi.diffusion.sampler import SamplerSettings, generate, model_device
from difusi.errors import DifusiError
from difusi.evaluation.evaluate import load_test_rows
from difusi.evaluation.metrics import CHRF_PP
from difusi.evaluation.plots import plot_per_batch_size
from difusi.evaluation.tables import markdown_table
from difusi.generation import fit_prompt, generate_answers
from difusi.io import write_json
from difusi.model import LLaDAModelLM
from difusi.model.loading import load_model
from difusi.model.presets import preset_config, preset_tokenizer

# The diffusion samplers compared, as `generate` options on top of the exact sampler's.
FAST_SAMPLERS: dict[str, dict] = {
    "exact": {},
    "prefix": dict(cache="prefix"),
    "dual": dict(cache="dual"),
    "threshold": dict(threshold=0.9),
    "prefix+threshold": dict(cache="prefix", threshold=0.9),
    "dual+threshold": dict(cache="dual", threshold=0.9),
}
AR = "ar"  # the autoregressive baseline's name in results


@dataclass(frozen=True)
class SamplerSpeed:
    """Generated tokens per second (best of the repeats) of both samplers at one setting."""

    gen_length: int
    block_length: int
    steps: int
    batch_size: int
    tokens_per_s: float
    reference_tokens_per_s: float
    identical: bool  # same tokens as the reference (expected at temperature 0)

    @property
    def speedup(self) -> float:
        return self.tokens_per_s / self.reference_tokens_per_s


def _timed(sampler: Callable, model, prompt: torch.Tensor, options: dict) -> tuple[float, torch.Tensor]:
    """Wall time of one sampler(model, prompt, **options) run, and its output."""
    if prompt.device.type == "cuda":
        torch.cuda.synchronize(prompt.device)
    started = time.perf_counter()
    output = sampler(model, prompt, **options)
    if prompt.device.type == "cuda":
        torch.cuda.synchronize(prompt.device)
    return time.perf_counter() - started, output


def random_prompt(model, batch_size: int, prompt_length: int, seed: int = 0) -> torch.Tensor:
    """Random token ids [batch_size, prompt_length] on the model's device, never the mask id (which
    would turn prompt tokens into positions to fill)."""
    vocab = model.config.vocab_size
    prompt = torch.randint(
        0, vocab, (batch_size, prompt_length), generator=torch.Generator().manual_seed(seed)
    )
    return torch.where(prompt == model.config.mask_token_id, (prompt + 1) % vocab, prompt).to(
        model_device(model)
    )


def benchmark_sampler(
    model,
    settings: Sequence[tuple[int, int]] = ((64, 64), (128, 32), (256, 32)),
    batch_size: int = 4,
    prompt_length: int = 32,
    repeats: int = 2,
    temperature: float = 0.0,
    seed: int = 0,
) -> list[SamplerSpeed]:
    """Tokens/s of `generate` and of the official algorithm for each (gen_length, block_length), with
    steps = gen_length (LLaDA's recommendation) on a random prompt batch; warmed up first."""
    prompt = random_prompt(model, batch_size, prompt_length, seed)
    generate(model, prompt, steps=4, gen_length=8, block_length=8)
    results = []
    for gen_length, block_length in settings:
        options = dict(
            steps=gen_length, gen_length=gen_length, block_length=block_length, temperature=temperature
        )
        # Alternate the two samplers and keep each one's best run, so load changes hit both alike.
        ours = theirs = float("inf")
        for _ in range(repeats):
            seconds, ours_tokens = _timed(generate, model, prompt, options)
            ours = min(ours, seconds)
            seconds, their_tokens = _timed(reference_generate, model, prompt, options)
            theirs = min(theirs, seconds)
        generated = batch_size * gen_length
        results.append(
            SamplerSpeed(
                gen_length,
                block_length,
                gen_length,
                batch_size,
                generated / ours,
                generated / theirs,
                torch.equal(ours_tokens, their_tokens),
            )
        )
    return results


@dataclass(frozen=True)
class SamplingSpeed:
    """One sampler at one (gen_length, batch_size): best wall time of a batch and generated tokens/s."""

    sampler: str
    gen_length: int
    batch_size: int
    seconds: float
    tokens_per_s: float
    speedup: float  # tokens/s over the exact sampler's at the same setting


def benchmark_sampling(
    model,
    ar_model=None,
    gen_lengths: Sequence[int] = (64, 128, 256),
    batch_sizes: Sequence[int] = (1, 8),
    block_length: int = 32,
    prompt_length: int = 32,
    repeats: int = 1,
    samplers: Sequence[str] = tuple(FAST_SAMPLERS),
    seed: int = 0,
) -> list[SamplingSpeed]:
    """Latency and tokens/s of each diffusion sampler in `samplers` (steps = gen_length, blocks of
    `block_length`) and of `ar_generate` on `ar_model` (when given, no early stop), on random prompts.

    The samplers alternate within each repeat and keep their best run, so load changes hit all alike.
    """
    runners = {name: (generate, model, FAST_SAMPLERS[name]) for name in samplers}
    if ar_model is not None:
        runners[AR] = (ar_generate, ar_model, {})
    generate(model, random_prompt(model, 1, 4), steps=4, gen_length=8, block_length=8)  # warm-up
    results = []
    for gen_length in gen_lengths:
        for batch_size in batch_sizes:
            prompt = random_prompt(model, batch_size, prompt_length, seed)
            best = dict.fromkeys(runners, float("inf"))
            for _ in range(repeats):
                for name, (sampler, runner_model, options) in runners.items():
                    options = options | dict(gen_length=gen_length)
                    if sampler is generate:
                        options |= dict(steps=gen_length, block_length=min(block_length, gen_length))
                    best[name] = min(best[name], _timed(sampler, runner_model, prompt, options)[0])
            reference = best.get("exact")
            for name, seconds in best.items():
                speedup = reference / seconds if reference is not None else float("nan")
                tokens_per_s = batch_size * gen_length / seconds
                results.append(SamplingSpeed(name, gen_length, batch_size, seconds, tokens_per_s, speedup))
    return results


@dataclass(frozen=True)
class SamplingQuality:
    """One sampler's answers on test rows: chrF++ against the references, and the share of answer
    tokens equal to the exact sampler's (position by position, over the longer of the two answers)."""

    sampler: str
    chrf_pp: float
    agreement: float
    seconds: float


def sampling_quality(
    model,
    tokenizer,
    rows: list[dict],
    ar_model=None,
    gen_length: int = 256,
    block_length: int = 32,
    batch_size: int = 8,
    max_length: int = 512,
    samplers: Sequence[str] = tuple(FAST_SAMPLERS),
) -> list[SamplingQuality]:
    """Answer the test `rows` (prepared test.parquet rows) with each sampler, greedy, as `difusi
    evaluate` does, and score the answers; the exact sampler runs first as the agreement reference."""
    prompts = [fit_prompt(tokenizer, row["input"], max_length - gen_length).ids for row in rows]
    settings = SamplerSettings(steps=gen_length, gen_length=gen_length, block_length=block_length)
    runners = {name: (model, FAST_SAMPLERS[name]) for name in ("exact", *samplers)}
    if ar_model is not None:
        runners[AR] = (ar_model, {})
    exact_tokens: list[list[int]] = []
    results = []
    for name, (runner_model, options) in runners.items():
        started = time.perf_counter()
        sampler = dataclasses.replace(settings, **options)
        answers = generate_answers(runner_model, tokenizer, prompts, sampler, batch_size, progress=False)
        seconds = time.perf_counter() - started
        tokens = [tokenizer.encode(text, add_special_tokens=False) for text, _ in answers]
        exact_tokens = exact_tokens or tokens  # the exact sampler runs first
        scored = [
            {"generation": text, "reference": row["output"]}
            for (text, _), row in zip(answers, rows, strict=True)
        ]
        results.append(SamplingQuality(name, CHRF_PP(scored), token_agreement(exact_tokens, tokens), seconds))
    return results


def token_agreement(reference: list[list[int]], other: list[list[int]]) -> float:
    """Share of positions, pooled over rows, where two answers hold the same token; a position only
    one answer reaches counts as a disagreement. Two empty answers agree fully."""
    same = total = 0
    for a, b in zip(reference, other, strict=True):
        same += sum(x == y for x, y in zip(a, b, strict=False))
        total += max(len(a), len(b))
    return same / total if total else 1.0


def sampling_table(speeds: Sequence[SamplingSpeed]) -> str:
    """Markdown table: tokens/s, latency and speed-up over the exact sampler for every setting."""
    rows = [
        [
            row.sampler,
            str(row.gen_length),
            str(row.batch_size),
            f"{row.tokens_per_s:.1f}",
            f"{row.seconds:.2f}",
            f"{row.speedup:.2f}x",
        ]
        for row in speeds
    ]
    return markdown_table(
        ["sampler", "gen", "batch", "tokens/s", "latency (s)", "vs exact"], rows, right_from=1
    )


def quality_table(quality: Sequence[SamplingQuality]) -> str:
    """Markdown table: chrF++ (and its change from the exact sampler's) and token agreement."""
    exact = next(row.chrf_pp for row in quality if row.sampler == "exact")
    rows = [
        [
            row.sampler,
            f"{row.chrf_pp:.2f}",
            f"{row.chrf_pp - exact:+.2f}",
            f"{100 * row.agreement:.1f}%",
            f"{row.seconds:.1f}",
        ]
        for row in quality
    ]
    return markdown_table(
        ["sampler", "chrF++", "Δ chrF++", "agreement with exact", "seconds"], rows, right_from=1
    )


def plot_sampling(speeds: Sequence[SamplingSpeed], path) -> None:
    """Tokens/s against gen length, one panel per batch size, one line per sampler (log scale)."""

    def draw(axis, rows: list[SamplingSpeed], first: bool) -> None:
        for sampler in dict.fromkeys(row.sampler for row in rows):
            line = [row for row in rows if row.sampler == sampler]
            axis.plot([r.gen_length for r in line], [r.tokens_per_s for r in line], marker="o", label=sampler)
        if first:
            axis.legend(fontsize=8)

    plot_per_batch_size(speeds, 5, 4, path, draw, xlabel="generated tokens", ylabel="tokens/s", yscale="log")


def benchmark_device(device: str | None) -> torch.device:
    """`device`, or CUDA when present, else the CPU."""
    return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))


def load_ar_twin(path: str | None, device: torch.device, adapter: str | None = None):
    """The AR baseline at `path` (None: none), refused unless it is causal."""
    if path is None:
        return None
    model = load_model(path, adapter, device=device)[0]
    if not model.config.causal:
        raise DifusiError(f"{path} is not a causal model; pass a `--objective ar` checkpoint")
    return model


def print_sampler_benchmark(
    model: str | None,
    preset: str | None,
    settings: Sequence[tuple[int, int]],
    batch_size: int,
    prompt_length: int,
    repeats: int,
    temperature: float,
    device: str | None,
) -> None:
    """`difusi bench sampler`: `benchmark_sampler` on a checkpoint or a random `preset` model, printed."""
    where = benchmark_device(device)
    if model is not None:
        network = load_model(model, device=where)[0]
    else:
        dtype = torch.bfloat16 if where.type == "cuda" else torch.float32
        torch.manual_seed(0)
        network = LLaDAModelLM(preset_config(preset, preset_tokenizer(preset))).to(where, dtype).eval()
    parameters = sum(p.numel() for p in network.parameters())
    print(
        f"sampler benchmark: {model or preset} ({parameters / 1e6:.1f}M parameters), {where}, "
        f"batch {batch_size}, prompt {prompt_length}, temperature {temperature}, "
        f"threads {torch.get_num_threads()}"
    )
    rows = benchmark_sampler(network, settings, batch_size, prompt_length, repeats, temperature)
    print(
        f"{'gen':>5} {'block':>5} {'steps':>5} {'difusi tok/s':>12} {'official tok/s':>14} {'speedup':>7} identical"
    )
    for row in rows:
        print(
            f"{row.gen_length:>5} {row.block_length:>5} {row.steps:>5} {row.tokens_per_s:>12.1f} "
            f"{row.reference_tokens_per_s:>14.1f} {row.speedup:>6.2f}x {'yes' if row.identical else 'no'}"
        )


def write_sampling_benchmark(
    model: str,
    ar_model: str | None,
    test: str | None,
    out: str | Path,
    gen_lengths: Sequence[int],
    batch_sizes: Sequence[int],
    block_length: int,
    samplers: Sequence[str],
    prompt_length: int,
    repeats: int,
    limit: int,
    quality_gen_length: int,
    device: str | None,
) -> None:
    """`difusi bench sampling`: `benchmark_sampling` (and, with `test`, `sampling_quality` on its first
    `limit` rows), printed and written to OUT/sampling.json and OUT/sampling.png."""
    where = benchmark_device(device)
    rows = load_test_rows(test, limit) if test else None  # fail before the model loads
    network, tokenizer = load_model(model, device=where)
    ar_twin = load_ar_twin(ar_model, where)
    print(f"sampling benchmark: {model}, {where}, block {block_length}, threads {torch.get_num_threads()}")
    speeds = benchmark_sampling(
        network, ar_twin, gen_lengths, batch_sizes, block_length, prompt_length, repeats, samplers
    )
    print(sampling_table(speeds))
    report = {"model": model, "ar_model": ar_model, "device": str(where)}
    report["speed"] = [dataclasses.asdict(row) for row in speeds]
    if rows is not None:
        quality = sampling_quality(
            network, tokenizer, rows, ar_twin, quality_gen_length, block_length, samplers=samplers
        )
        print(f"\nquality on {len(rows)} test rows at {quality_gen_length} tokens:")
        print(quality_table(quality))
        report["quality"] = [dataclasses.asdict(row) for row in quality]
    out = Path(out)
    write_json(out / "sampling.json", report)
    plot_sampling(speeds, out / "sampling.png")
    print(f"written {out / 'sampling.json'} and {out / 'sampling.png'}")
