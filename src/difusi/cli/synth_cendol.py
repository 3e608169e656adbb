"""`difusi synth-cendol --out DIR --rows N --seed S [--tasks | --unseen-qa]`: write an offline Cendol-shaped collection.

`--tasks` writes the learnable task mode instead (difusi.synthetic.tasks: the six Indonesian subsets with
answers that follow from the prompt; default 40,000 rows in 4 shards when --rows/--shards are not given).
`--unseen-qa` writes a task the demo's base never saw (difusi.synthetic.unseen) as prepared data:
OUT/train/train.parquet and OUT/test.parquet, ready for `difusi train` and `difusi evaluate`.
"""

from __future__ import annotations

import argparse

from difusi.synthetic.cendol import FULL_ROWS, FULL_SHARDS


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "synth-cendol", help="generate a Cendol-shaped dataset offline (parquet shards)"
    )
    parser.add_argument("--out", required=True, help="output directory (shards go to OUT/data/)")
    parser.add_argument(
        "--rows", type=int, default=None, help="rows in total (default: the real 12,810,390; --tasks: 40,000)"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument(
        "--shards",
        type=int,
        default=None,
        help=f"number of parquet shards (default {FULL_SHARDS}; --tasks: 4)",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--tasks",
        action="store_true",
        help="learnable task mode: the six Indonesian subsets with answers that follow from the prompt",
    )
    mode.add_argument(
        "--unseen-qa",
        action="store_true",
        help="extractive QA over names and cities, as OUT/train/train.parquet (1,000 rows) and OUT/test.parquet (60)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    def given(value: int | None, default: int) -> int:
        return default if value is None else value

    if args.unseen_qa:
        from difusi.synthetic.unseen import TEST_ROWS, TRAIN_ROWS, write_unseen_qa

        write_unseen_qa(args.out)
        print(f"wrote {TRAIN_ROWS:,} training rows and {TEST_ROWS} test rows to {args.out}")
        return
    if args.tasks:
        from difusi.synthetic.tasks import TASK_ROWS, TASK_SHARDS, synth_tasks

        rows, shards = given(args.rows, TASK_ROWS), given(args.shards, TASK_SHARDS)
        paths = synth_tasks(args.out, rows, args.seed, shards)
    else:
        from difusi.synthetic.cendol import synth_cendol

        rows, shards = given(args.rows, FULL_ROWS), given(args.shards, FULL_SHARDS)
        paths = synth_cendol(args.out, rows, args.seed, shards)
    print(f"wrote {rows:,} rows in {len(paths)} shards to {args.out}/data")
