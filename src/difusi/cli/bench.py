"""`difusi bench ITEM`: speed benchmarks that print figures (speed claims live here, not in tests).

Each benchmark is a sub-command registered by a function in BENCHMARKS.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import torch

from difusi.errors import DifusiError
from difusi.evaluation.benchmark import FAST_SAMPLERS


def _gen_block(text: str) -> tuple[int, int]:
    gen_length, _, block_length = text.partition(":")
    try:
        return int(gen_length), int(block_length)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not GEN_LENGTH:BLOCK_LENGTH, e.g. 128:32") from None


def register_sampler(items: argparse._SubParsersAction) -> None:
    parser = items.add_parser("sampler", help="tokens/s of generate() against the official algorithm")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="checkpoint directory")
    source.add_argument("--preset", help="a random model of this preset (e.g. small)")
    parser.add_argument(
        "--settings",
        nargs="+",
        type=_gen_block,
        default=[(64, 64), (128, 32), (256, 32)],
        metavar="GEN:BLOCK",
        help="gen_length:block_length pairs, steps = gen_length (default 64:64 128:32 256:32)",
    )
    parser.add_argument("--batch-size", type=int, default=4, help="prompts per batch (default 4)")
    parser.add_argument("--prompt-length", type=int, default=32, help="prompt tokens (default 32)")
    parser.add_argument(
        "--repeats", type=int, default=2, help="timed runs per sampler, best kept (default 2)"
    )
    parser.add_argument("--temperature", type=float, default=0.0, help="sampling temperature (default 0)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda when present, else cpu)")
    parser.set_defaults(func=run_sampler)


def register_sampling(items: argparse._SubParsersAction) -> None:
    parser = items.add_parser(
        "sampling",
        help="exact vs cached / threshold diffusion sampling and AR decoding: tokens/s, latency, quality",
    )
    parser.add_argument("--model", required=True, help="diffusion checkpoint directory")
    parser.add_argument("--ar-model", help="AR baseline checkpoint (`--objective ar`) of the same size")
    parser.add_argument("--test", help="test.parquet: also score each sampler's answers (chrF++, agreement)")
    parser.add_argument(
        "--out", default="bench-sampling", help="directory for sampling.json and sampling.png"
    )
    parser.add_argument(
        "--gen-lengths", nargs="+", type=int, default=[64, 128, 256], help="default 64 128 256"
    )
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 8], help="default 1 8")
    parser.add_argument("--block-length", type=int, default=32, help="semi-autoregressive block (default 32)")
    parser.add_argument(
        "--samplers", nargs="+", choices=list(FAST_SAMPLERS), default=list(FAST_SAMPLERS), help="default all"
    )
    parser.add_argument("--prompt-length", type=int, default=32, help="random prompt tokens (default 32)")
    parser.add_argument(
        "--repeats", type=int, default=1, help="timed runs per sampler, best kept (default 1)"
    )
    parser.add_argument("--limit", type=int, default=16, help="test rows scored (default 16)")
    parser.add_argument(
        "--quality-gen-length", type=int, default=256, help="gen length of the quality run (default 256)"
    )
    parser.add_argument("--device", default=None, help="torch device (default: cuda when present, else cpu)")
    parser.set_defaults(func=run_sampling)


def register_speed_quality(items: argparse._SubParsersAction) -> None:
    parser = items.add_parser(
        "speed-quality",
        help="diffusion sampler settings, block-diffusion models and the AR twin on test prompts: "
        "tokens/s against chrF++",
    )
    parser.add_argument(
        "--model", required=True, help="diffusion or block-diffusion checkpoint (base, or merged/full run)"
    )
    parser.add_argument("--adapter", help="PEFT adapter for --model")
    parser.add_argument(
        "--block-model",
        action="append",
        default=[],
        metavar="NAME=CHECKPOINT[:ADAPTER]",
        help="a block-diffusion model to add, by name (repeatable), e.g. from-ar=runs/block/model",
    )
    parser.add_argument("--ar-model", help="the AR twin's checkpoint (`--objective ar`)")
    parser.add_argument("--ar-adapter", help="PEFT adapter for --ar-model")
    parser.add_argument("--data", required=True, help="test.parquet written by `difusi prepare`")
    parser.add_argument("--out", default="bench-speed-quality", help="directory for the JSON, table and plot")
    parser.add_argument("--gen-length", type=int, default=256, help="answer area (default 256)")
    parser.add_argument("--block-length", type=int, default=32, help="semi-autoregressive block (default 32)")
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 8], help="default 1 8")
    parser.add_argument("--limit", type=int, default=16, help="test rows answered (default 16)")
    parser.add_argument(
        "--repeats", type=int, default=1, help="timed runs per setting, interleaved, best kept (default 1)"
    )
    parser.add_argument("--device", default=None, help="torch device (default: cuda when present, else cpu)")
    parser.set_defaults(func=run_speed_quality)


def register_serve(items: argparse._SubParsersAction) -> None:
    parser = items.add_parser(
        "serve",
        help="load test of `difusi serve`: concurrent clients against one at a time",
        description="Everything after `--` is passed to `difusi serve` (e.g. -- --model M --steps 32).",
    )
    parser.add_argument("--data", required=True, help="test.parquet whose inputs are the prompts")
    parser.add_argument("--limit", type=int, default=32, help="prompts taken (default 32)")
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients (default 32)")
    parser.add_argument(
        "--duration", type=float, default=300, help="seconds of the concurrent phase (default 300)"
    )
    parser.add_argument(
        "--single-duration", type=float, default=60, help="seconds one at a time (default 60)"
    )
    parser.add_argument("--max-tokens", type=int, default=None, help="answer length (default: the server's)")
    parser.add_argument("--out", default="bench-serve", help="directory for serve_load.json and .md")
    parser.add_argument("serve_args", nargs=argparse.REMAINDER, help="-- then `difusi serve` arguments")
    parser.set_defaults(func=run_serve)


BENCHMARKS = [register_sampler, register_sampling, register_speed_quality, register_serve]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("bench", help="speed benchmarks (print tokens/s tables)")
    items = parser.add_subparsers(dest="item", metavar="ITEM", required=True)
    for register_item in BENCHMARKS:
        register_item(items)


def _load_model(args: argparse.Namespace, device: torch.device):
    from difusi.model import LLaDAModelLM
    from difusi.model.loading import load_model

    if args.model is not None:
        return load_model(args.model, device=device)[0]
    from difusi.model.presets import preset_config, preset_tokenizer

    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32

    config = preset_config(args.preset, preset_tokenizer(args.preset))
    torch.manual_seed(0)
    return LLaDAModelLM(config).to(device, dtype).eval()


def run_sampler(args: argparse.Namespace) -> None:
    from difusi.evaluation.benchmark import benchmark_sampler

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model = _load_model(args, device)
    parameters = sum(p.numel() for p in model.parameters())
    print(
        f"sampler benchmark: {args.model or args.preset} ({parameters / 1e6:.1f}M parameters), {device}, "
        f"batch {args.batch_size}, prompt {args.prompt_length}, temperature {args.temperature}, "
        f"threads {torch.get_num_threads()}"
    )
    rows = benchmark_sampler(
        model, args.settings, args.batch_size, args.prompt_length, args.repeats, args.temperature
    )
    print(
        f"{'gen':>5} {'block':>5} {'steps':>5} {'difusi tok/s':>12} {'official tok/s':>14} {'speedup':>7} identical"
    )
    for row in rows:
        print(
            f"{row.gen_length:>5} {row.block_length:>5} {row.steps:>5} {row.tokens_per_s:>12.1f} "
            f"{row.reference_tokens_per_s:>14.1f} {row.speedup:>6.2f}x {'yes' if row.identical else 'no'}"
        )


def run_sampling(args: argparse.Namespace) -> None:
    from difusi.evaluation.benchmark import (
        benchmark_sampling,
        plot_sampling,
        quality_table,
        sampling_quality,
        sampling_table,
    )
    from difusi.evaluation.evaluate import load_test_rows
    from difusi.io import write_json
    from difusi.model.loading import load_model

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    rows = load_test_rows(args.test, args.limit) if args.test else None  # fail before the model loads
    model, tokenizer = load_model(args.model, device=device)
    ar_model = load_model(args.ar_model, device=device)[0] if args.ar_model else None
    if ar_model is not None and not ar_model.config.causal:
        raise DifusiError(f"{args.ar_model} is not a causal model; pass a `--objective ar` checkpoint")
    print(
        f"sampling benchmark: {args.model}, {device}, block {args.block_length}, threads {torch.get_num_threads()}"
    )
    speeds = benchmark_sampling(
        model,
        ar_model,
        args.gen_lengths,
        args.batch_sizes,
        args.block_length,
        args.prompt_length,
        args.repeats,
        args.samplers,
    )
    print(sampling_table(speeds))
    report = {"model": args.model, "ar_model": args.ar_model, "device": str(device)}
    report["speed"] = [dataclasses.asdict(row) for row in speeds]
    if rows is not None:
        quality = sampling_quality(
            model,
            tokenizer,
            rows,
            ar_model,
            args.quality_gen_length,
            args.block_length,
            samplers=args.samplers,
        )
        print(f"\nquality on {len(rows)} test rows at {args.quality_gen_length} tokens:")
        print(quality_table(quality))
        report["quality"] = [dataclasses.asdict(row) for row in quality]
    out = Path(args.out)
    write_json(out / "sampling.json", report)
    plot_sampling(speeds, out / "sampling.png")
    print(f"written {out / 'sampling.json'} and {out / 'sampling.png'}")


def run_speed_quality(args: argparse.Namespace) -> None:
    from difusi.evaluation.evaluate import load_test_rows
    from difusi.evaluation.speed_quality import speed_quality, write_speed_quality
    from difusi.model.loading import load_model

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    rows = load_test_rows(args.data, args.limit)  # fails before any model loads
    block_checkpoints = {}
    for spec in args.block_model:
        name, _, where = spec.partition("=")
        if not name or not where:
            raise DifusiError(
                f"--block-model {spec!r} is not NAME=CHECKPOINT[:ADAPTER]; e.g. from-ar=runs/b/model"
            )
        block_checkpoints[name] = where.split(":", 1) if ":" in where else (where, None)
    model, tokenizer = load_model(args.model, args.adapter, device=device)
    block_models = {name: load_model(c, a, device=device)[0] for name, (c, a) in block_checkpoints.items()}
    for name, block_model in block_models.items():
        if not block_model.config.block_size:
            raise DifusiError(
                f"--block-model {name} is not a block-diffusion model; pass an `--objective block` run"
            )
    if model.config.block_size:  # a block model given as --model: its block rows, no diffusion sweep
        block_models, model = {"block": model, **block_models}, None
    ar_model = load_model(args.ar_model, args.ar_adapter, device=device)[0] if args.ar_model else None
    if ar_model is not None and not ar_model.config.causal:
        raise DifusiError(f"{args.ar_model} is not a causal model; pass a `--objective ar` checkpoint")
    results = speed_quality(
        model, tokenizer, rows, ar_model, args.gen_length, args.block_length, args.batch_sizes,
        block_models=block_models, repeats=args.repeats,
    )  # fmt: skip
    header = (
        f"{len(rows)} test rows, {args.gen_length} tokens, block {args.block_length}, {device}, "
        f"threads {torch.get_num_threads()}, best of {args.repeats} interleaved timings"
    )
    print(write_speed_quality(results, len(rows), args.out, header))
    print(f"written {args.out}/speed_quality.json, .md and .png")


def run_serve(args: argparse.Namespace) -> None:
    from difusi.evaluation.evaluate import load_test_rows
    from difusi.io import write_json, write_text
    from difusi.model.checkpoint import resolve_checkpoint_dir
    from difusi.model.tokenizer import load_tokenizer
    from difusi.serving.load import LoadResult, load_table, load_test

    serve_args = args.serve_args[1:] if args.serve_args[:1] == ["--"] else args.serve_args
    if "--model" not in serve_args:
        raise DifusiError("give the server's arguments after `--`, e.g. -- --model runs/demo/base/model")
    rows = load_test_rows(args.data, args.limit)
    tokenizer = load_tokenizer(resolve_checkpoint_dir(serve_args[serve_args.index("--model") + 1]))
    count = lambda text: len(tokenizer.encode(text, add_special_tokens=False))  # noqa: E731
    report = load_test(
        serve_args, [row["input"] for row in rows], count, args.clients, args.duration,
        args.single_duration, args.max_tokens,
    )  # fmt: skip
    memory = {k: v / 2**20 for k, v in report["resident_bytes"].items()}
    table = load_table([LoadResult(**r) for r in report["results"]])
    summary = (
        f"batched throughput {report['batching_gain']:.2f}x one at a time (tokens/s); server memory "
        + ", ".join(f"{k} {v:.0f} MiB" for k, v in memory.items())
    )
    out = Path(args.out)
    write_json(out / "serve_load.json", report)
    write_text(out / "serve_load.md", f"{table}\n\n{summary}\n")
    print(f"{table}\n\n{summary}")
    if report["errors"]:
        print("errors:", *report["errors"], sep="\n  ")
    print(f"written {out}/serve_load.json and .md")
