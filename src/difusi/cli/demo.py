"""`difusi demo --out DIR [--quick]`: the whole seed pipeline offline on CPU (the README's main command)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("demo", help="run the whole pipeline offline on a small model")
    parser.add_argument("--out", default="runs/demo", help="output directory (default runs/demo)")
    parser.add_argument("--quick", action="store_true", help="smaller sizes: a few minutes instead of ten")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from difusi.demo import QUICK_DEMO, DemoConfig, run_demo

    run_demo(args.out, QUICK_DEMO if args.quick else DemoConfig())
