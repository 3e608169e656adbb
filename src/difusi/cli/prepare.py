"""`difusi prepare --source SRC --out DIR [--config YAML]`: the seed's data preparation (defaults are the seed's).

Every PrepareConfig field is an option and a YAML key (configs/prepare-seed.yaml); options given on
the command line override the YAML. The source and output directory are options only.
"""

from __future__ import annotations

import argparse
import logging

from difusi.cli.options import add_config_options, resolve_config
from difusi.data.prepare import PrepareConfig
from difusi.data.source import DEFAULT_SOURCE


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("prepare", help="Cendol Collection v2 to the training and test sets")
    parser.add_argument(
        "--source",
        default=DEFAULT_SOURCE,
        help="hub dataset id, directory of shards, or parquet/JSONL/CSV file",
    )
    parser.add_argument("--out", required=True, help="output directory")
    add_config_options(parser, PrepareConfig, "configs/prepare-seed.yaml")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from difusi.data.prepare import prepare

    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    card = prepare(args.source, args.out, resolve_config(args, PrepareConfig))
    if card is None:  # a launch's other process: it shared the embedding, the main one writes
        return
    stages = card["stages"]
    print(
        f"wrote {stages['train_rows']:,} training and {stages['test_rows']:,} test rows to {args.out} "
        f"({stages['duplicates_removed']:,} duplicates removed, overlap {card['overlap']})"
    )
