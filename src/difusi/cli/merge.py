"""`difusi merge`: fold a trained adapter into its base model and write a plain checkpoint."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("merge", help="merge a trained adapter into its base model")
    parser.add_argument("--base", required=True, help="the ORIGINAL base model (directory or hub id)")
    parser.add_argument("--adapter", required=True, help="adapter directory (a run's adapter/)")
    parser.add_argument("--out", required=True, help="new directory for the merged checkpoint")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from difusi.tuning.merge import merge_adapter

    print(f"merged checkpoint written to {merge_adapter(args.base, args.adapter, args.out)}")
