"""`difusi synth-cendol --out DIR --rows N --seed S`: write an offline Cendol-shaped collection."""

from __future__ import annotations

import argparse

from difusi.data.synth import FULL_ROWS, FULL_SHARDS


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "synth-cendol", help="generate a Cendol-shaped dataset offline (parquet shards)"
    )
    parser.add_argument("--out", required=True, help="output directory (shards go to OUT/data/)")
    parser.add_argument(
        "--rows", type=int, default=FULL_ROWS, help="rows in total (default: the real 12,810,390)"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--shards", type=int, default=FULL_SHARDS, help="number of parquet shards")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from difusi.data.synth import synth_cendol

    paths = synth_cendol(args.out, args.rows, args.seed, args.shards)
    print(f"wrote {args.rows:,} rows in {len(paths)} shards to {args.out}/data")
