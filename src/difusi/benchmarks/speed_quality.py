"""Speed against quality on real test prompts: diffusion sampler settings, block-diffusion models
and the AR twin.

Each sampler setting answers the same test rows at each batch size; quality (chrF++, exact match)
comes from those answers, speed from their wall time. Tokens/s counts the answer area a sampler
resolves (rows x gen_length; early stop, the block sampler and AR stop at the end of the answer,
which is their gain), tokens per step is that area over the model passes it took, and answer
tokens per pass counts only the answer tokens (up to and with the end of text) a pass resolves
per row. Greedy answers do not depend on the batch size (left padding is masked), so quality is
reported once per setting, with a paired bootstrap interval of its chrF++ minus the AR twin's.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from difusi.benchmarks.sampler import benchmark_device, load_ar_twin
from difusi.diffusion.sampler import SamplerSettings
from difusi.errors import DifusiError
from difusi.evaluation.evaluate import load_test_rows
from difusi.evaluation.metrics import CHRF_PP, EXACT_MATCH, PairedDifference, paired_bootstrap_difference
from difusi.evaluation.plots import plot_per_batch_size
from difusi.evaluation.tables import markdown_table
from difusi.generation import fit_prompt, generate_answers
from difusi.io import write_json, write_text
from difusi.model.loading import load_model

AR = "AR twin, KV cache"


def sweep_settings(gen_length: int, block_length: int) -> dict[str, SamplerSettings]:
    """The diffusion settings the issue compares, by name: the exact sampler at steps = gen length,
    1/2 and 1/4 of it; prefix and dual cache; dual cache with thresholds 0.5-0.95; and early stop."""
    exact = SamplerSettings(steps=gen_length, gen_length=gen_length, block_length=block_length)
    settings = {
        f"exact, {gen_length // d} steps": dataclasses.replace(exact, steps=gen_length // d)
        for d in (1, 2, 4)
    }
    settings["prefix cache"] = dataclasses.replace(exact, cache="prefix")
    settings["dual cache"] = dataclasses.replace(exact, cache="dual")
    for tau in (0.5, 0.7, 0.8, 0.9, 0.95):
        settings[f"dual cache + threshold {tau}"] = dataclasses.replace(exact, cache="dual", threshold=tau)
    settings["dual cache + threshold 0.9 + early stop"] = dataclasses.replace(
        exact, cache="dual", threshold=0.9, early_stop=True
    )
    settings["exact + early stop"] = dataclasses.replace(exact, early_stop=True)
    return settings


def block_settings(gen_length: int) -> dict[str, SamplerSettings]:
    """A block-diffusion model's settings, by name: thresholds 0.3-0.9, and one token per pass."""
    one = SamplerSettings(steps=gen_length, gen_length=gen_length)
    thresholds = (0.3, 0.4, 0.5, 0.7, 0.9)
    settings = {f"threshold {tau}": dataclasses.replace(one, threshold=tau) for tau in thresholds}
    settings["1 token/pass"] = one
    return settings


@dataclass(frozen=True)
class SpeedQuality:
    """One sampler setting at one batch size; `vs_ar` is its chrF++ minus the AR twin's (paired)."""

    sampler: str
    batch_size: int
    tokens_per_s: float
    seconds: float
    tokens_per_step: float
    answer_tokens_per_pass: float
    chrf_pp: float
    exact_match: float
    vs_ar: PairedDifference | None = None


def _count_passes(model) -> tuple[list[int], torch.utils.hooks.RemovableHandle]:
    passes = [0]
    handle = model.register_forward_hook(lambda module, args, output: passes.__setitem__(0, passes[0] + 1))
    return passes, handle


def speed_quality(
    model,
    tokenizer,
    rows: list[dict],
    ar_model=None,
    gen_length: int = 256,
    block_length: int = 32,
    batch_sizes: Sequence[int] = (1, 8),
    max_length: int = 512,
    settings: dict[str, SamplerSettings] | None = None,
    block_models: dict[str, object] | None = None,
    repeats: int = 1,
) -> list[SpeedQuality]:
    """Answer `rows` (prepared test rows) with every setting of `model` (None: no diffusion rows),
    every `block_settings` of each of `block_models` (by name), and `ar_model`, greedy, when given,
    at every batch size; see the module docstring for what is measured. Each setting is timed
    `repeats` times, in interleaved rounds, and its fastest run kept."""
    settings = settings or sweep_settings(gen_length, block_length)
    prompts = [fit_prompt(tokenizer, row["input"], max_length - gen_length).ids for row in rows]
    runners = [(name, model, setting) for name, setting in settings.items()] if model is not None else []
    for label, block_model in (block_models or {}).items():
        runners += [(f"{label}, {name}", block_model, s) for name, s in block_settings(gen_length).items()]
    if ar_model is not None:
        runners.append((AR, ar_model, SamplerSettings(steps=gen_length, gen_length=gen_length)))
    timed = [(name, runner, setting, b) for name, runner, setting in runners for b in batch_sizes]
    seconds, outputs = {}, {}
    for round_ in range(repeats):  # rounds interleave the settings, so a slow spell hits them all
        for name, runner, setting, batch_size in timed:
            passes, handle = _count_passes(runner)
            try:
                started = time.perf_counter()
                answers = generate_answers(runner, tokenizer, prompts, setting, batch_size, progress=False)
                elapsed = time.perf_counter() - started
            finally:
                handle.remove()
            key = (name, batch_size)
            seconds[key] = min(elapsed, seconds.get(key, elapsed))
            if round_ == 0:  # greedy: every round gives the same answers
                outputs[key] = answers, passes[0]
    results, scored_by = [], {}
    for name, _, _, batch_size in timed:
        answers, n_passes = outputs[name, batch_size]
        scored = [
            {"generation": text, "reference": row["output"]}
            for (text, _), row in zip(answers, rows, strict=True)
        ]
        scored_by[name] = scored
        batches = -(-len(prompts) // batch_size)
        resolved = sum(min(length + 1, gen_length) for _, length in answers)  # the end of text too
        results.append(
            SpeedQuality(
                sampler=name,
                batch_size=batch_size,
                tokens_per_s=len(prompts) * gen_length / seconds[name, batch_size],
                seconds=seconds[name, batch_size],
                tokens_per_step=batches * gen_length / max(n_passes, 1),
                answer_tokens_per_pass=resolved * batches / len(prompts) / max(n_passes, 1),
                chrf_pp=CHRF_PP(scored),
                exact_match=EXACT_MATCH(scored),
            )
        )
    if AR in scored_by:
        versus = {
            name: paired_bootstrap_difference([scored_by[AR]], [scored], CHRF_PP)
            for name, scored in scored_by.items()
            if name != AR
        }
        results = [dataclasses.replace(row, vs_ar=versus.get(row.sampler)) for row in results]
    return results


def speed_quality_table(results: Sequence[SpeedQuality]) -> str:
    """Markdown: per setting, chrF++, exact match, tokens per step and tokens/s at each batch size."""
    batch_sizes = sorted({row.batch_size for row in results})
    header = [
        "sampler",
        "chrF++",
        "chrF++ - AR twin [95% CI]",
        "exact match %",
        "tokens/step",
        "answer tokens/pass",
        *(f"tokens/s, batch {b}" for b in batch_sizes),
    ]
    rows = []
    for name in dict.fromkeys(row.sampler for row in results):
        by_batch = {row.batch_size: row for row in results if row.sampler == name}
        first = by_batch[batch_sizes[0]]
        versus = first.vs_ar
        paired = "-" if versus is None else f"{versus.estimate:+.2f} [{versus.low:+.2f}, {versus.high:+.2f}]"
        cells = [f"{first.chrf_pp:.2f}", paired, f"{first.exact_match:.1f}", f"{first.tokens_per_step:.2f}"]
        cells += [f"{first.answer_tokens_per_pass:.2f}"]
        cells += [f"{by_batch[b].tokens_per_s:.1f}" for b in batch_sizes]
        rows.append([name, *cells])
    return markdown_table(header, rows, right_from=1)


def matching_quality(results: Sequence[SpeedQuality], tolerance: float = 1.0) -> str:
    """Where (if anywhere) a diffusion setting reaches the AR twin's chrF++ within `tolerance`, or is
    not significantly worse (its paired interval holds 0), and its speed there relative to the AR
    twin, per batch size."""
    sentences = []
    for batch_size in sorted({row.batch_size for row in results}):
        rows = [row for row in results if row.batch_size == batch_size]
        ar = next((row for row in rows if row.sampler == AR), None)
        if ar is None:
            return "No AR twin was given."
        others = [row for row in rows if row.sampler != AR]
        within = [row for row in others if row.chrf_pp >= ar.chrf_pp - tolerance]
        not_worse = [row for row in others if row.vs_ar is not None and row.vs_ar.high >= 0]
        if within:
            fastest = max(within, key=lambda row: row.tokens_per_s)
            claim = f"matches the AR twin's quality within {tolerance} chrF++"
        elif not_worse:
            fastest = max(not_worse, key=lambda row: row.tokens_per_s)
            claim = (
                "is not significantly worse than the AR twin on these rows (paired 95% interval "
                f"[{fastest.vs_ar.low:+.2f}, {fastest.vs_ar.high:+.2f}]; more rows would narrow it)"
            )
        else:
            best = max(others, key=lambda row: row.chrf_pp)
            sentences.append(
                f"Batch {batch_size}: no diffusion setting comes within {tolerance} chrF++ of the AR twin "
                f"({ar.chrf_pp:.2f}) or holds 0 in its paired interval; the best, {best.sampler}, "
                f"reaches {best.chrf_pp:.2f}."
            )
            continue
        sentences.append(
            f"Batch {batch_size}: {fastest.sampler} {claim}: chrF++ {fastest.chrf_pp:.2f} against "
            f"{ar.chrf_pp:.2f}, at {fastest.tokens_per_s / ar.tokens_per_s:.2f}x its speed "
            f"({fastest.tokens_per_s:.1f} against {ar.tokens_per_s:.1f} tokens/s)."
        )
    return "\n".join(sentences)


def plot_speed_quality(results: Sequence[SpeedQuality], path) -> None:
    """chrF++ against tokens/s, one panel per batch size; the AR twin as a star."""

    def draw(axis, rows: list[SpeedQuality], first: bool) -> None:
        for row in rows:
            ar = row.sampler == AR
            axis.scatter(row.tokens_per_s, row.chrf_pp, marker="*" if ar else "o", s=160 if ar else 40)
            axis.annotate(
                row.sampler,
                (row.tokens_per_s, row.chrf_pp),
                fontsize=6,
                xytext=(3, 3),
                textcoords="offset points",
            )

    plot_per_batch_size(results, 6, 4.5, path, draw, xlabel="tokens/s (log)", ylabel="chrF++", xscale="log")


def write_speed_quality(results: Sequence[SpeedQuality], rows: int, out: str | Path, header: str) -> str:
    """Write OUT/speed_quality.json, .md (`header`, the table, the matching-quality sentences) and .png;
    returns the markdown."""
    out = Path(out)
    text = f"{header}\n\n{speed_quality_table(results)}\n\n{matching_quality(results)}\n"
    write_json(
        out / "speed_quality.json", {"rows": rows, "results": [dataclasses.asdict(r) for r in results]}
    )
    write_text(out / "speed_quality.md", text)
    plot_speed_quality(results, out / "speed_quality.png")
    return text


def write_speed_quality_benchmark(
    model: str,
    adapter: str | None,
    block_model: Sequence[str],
    ar_model: str | None,
    ar_adapter: str | None,
    data: str,
    out: str | Path,
    gen_length: int,
    block_length: int,
    batch_sizes: Sequence[int],
    limit: int,
    repeats: int,
    device: str | None,
) -> None:
    """`difusi bench speed-quality`: `speed_quality` on the first `limit` rows of `data`, with the
    block-diffusion models `block_model` (NAME=CHECKPOINT[:ADAPTER] each; a block model as `model`
    gets only its block rows), printed and written to OUT."""
    where = benchmark_device(device)
    rows = load_test_rows(data, limit)  # fails before any model loads
    block_checkpoints = {}
    for spec in block_model:
        name, _, checkpoint = spec.partition("=")
        if not name or not checkpoint:
            raise DifusiError(
                f"--block-model {spec!r} is not NAME=CHECKPOINT[:ADAPTER]; e.g. from-ar=runs/b/model"
            )
        block_checkpoints[name] = checkpoint.split(":", 1) if ":" in checkpoint else (checkpoint, None)
    network, tokenizer = load_model(model, adapter, device=where)
    blocks = {name: load_model(c, a, device=where)[0] for name, (c, a) in block_checkpoints.items()}
    for name, block in blocks.items():
        if not block.config.block_size:
            raise DifusiError(
                f"--block-model {name} is not a block-diffusion model; pass an `--objective block` run"
            )
    if network.config.block_size:  # a block model given as --model: its block rows, no diffusion sweep
        blocks, network = {"block": network, **blocks}, None
    ar_twin = load_ar_twin(ar_model, where, ar_adapter)
    results = speed_quality(
        network,
        tokenizer,
        rows,
        ar_twin,
        gen_length,
        block_length,
        batch_sizes,
        block_models=blocks,
        repeats=repeats,
    )
    header = (
        f"{len(rows)} test rows, {gen_length} tokens, block {block_length}, {where}, "
        f"threads {torch.get_num_threads()}, best of {repeats} interleaved timings"
    )
    print(write_speed_quality(results, len(rows), out, header))
    print(f"written {out}/speed_quality.json, .md and .png")
