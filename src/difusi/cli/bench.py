"""`difusi bench ITEM`: speed benchmarks that print figures (speed claims live here, not in tests).

Each benchmark is a sub-command registered by a function in BENCHMARKS; its options are handed, by
name, to its function in difusi.benchmarks.
"""

from __future__ import annotations

import argparse

from difusi.benchmarks.sampler import FAST_SAMPLERS


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


def _options(args: argparse.Namespace) -> dict:
    """The parsed options, named as the benchmark functions' parameters."""
    return {
        key: value
        for key, value in vars(args).items()
        if key not in ("command", "item", "func", "passed_through")
    }


def run_sampler(args: argparse.Namespace) -> None:
    from difusi.benchmarks.sampler import print_sampler_benchmark

    print_sampler_benchmark(**_options(args))


def run_sampling(args: argparse.Namespace) -> None:
    from difusi.benchmarks.sampler import write_sampling_benchmark

    write_sampling_benchmark(**_options(args))


def run_speed_quality(args: argparse.Namespace) -> None:
    from difusi.benchmarks.speed_quality import write_speed_quality_benchmark

    write_speed_quality_benchmark(**_options(args))


def run_serve(args: argparse.Namespace) -> None:
    from difusi.benchmarks.serve_load import write_serve_benchmark

    write_serve_benchmark(**_options(args))
