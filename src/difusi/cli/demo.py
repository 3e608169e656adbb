"""`difusi demo --out DIR [--quick] [--seeds N] [--pretrain] [--speed-quality] [--block-methods]`: the
seed's experiment in miniature,
offline on CPU (the README's main command)."""

from __future__ import annotations

import argparse
import dataclasses


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("demo", help="run the whole pipeline offline on a small model")
    parser.add_argument("--out", default="runs/demo", help="output directory (default runs/demo)")
    parser.add_argument("--quick", action="store_true", help="smaller sizes: under 3 minutes instead of 12")
    parser.add_argument("--seeds", type=int, default=1, help="fine-tuning runs per method (default 1)")
    parser.add_argument(
        "--pretrain",
        action="store_true",
        help="pretrain the base (and the AR twin) here instead of copying the shipped ones "
        "(about 16 minutes each on two CPU cores)",
    )
    parser.add_argument(
        "--speed-quality",
        action="store_true",
        help="after the demo: fine-tune its AR twin and block-diffusion conversions of both bases, "
        "then sweep the samplers against the AR twin",
    )
    parser.add_argument(
        "--block-methods",
        action="store_true",
        help="after the demo: full fine-tuning, LoRA, LoRA+ and PiSSA each convert the base to block "
        "diffusion; evaluated and compared with paired verdicts",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from difusi.demo import QUICK_DEMO, DemoConfig, run_block_methods, run_demo, run_speed_quality
    from difusi.errors import DifusiError

    if args.seeds < 1:
        raise DifusiError(f"--seeds must be at least 1, got {args.seeds}")
    config = dataclasses.replace(
        QUICK_DEMO if args.quick else DemoConfig(), seeds=args.seeds, pretrain=args.pretrain
    )
    run_demo(args.out, config)
    if args.speed_quality:
        run_speed_quality(args.out, config)
    if args.block_methods:
        run_block_methods(args.out, config)
