"""`difusi prepare --source SRC --out DIR`: the seed's data preparation (defaults are the seed's)."""

from __future__ import annotations

import argparse
import logging

from difusi.data.prepare import INDONESIAN_SUBSETS, PrepareConfig
from difusi.data.source import DEFAULT_SOURCE


def register(subparsers: argparse._SubParsersAction) -> None:
    defaults = PrepareConfig()
    parser = subparsers.add_parser("prepare", help="Cendol Collection v2 to the training and test sets")
    parser.add_argument(
        "--source",
        default=DEFAULT_SOURCE,
        help="hub dataset id, directory of shards, or parquet/JSONL/CSV file",
    )
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument(
        "--subsets",
        nargs="+",
        default=list(INDONESIAN_SUBSETS),
        help="subset_name values to keep (spaces or commas)",
    )
    parser.add_argument("--strat-fraction", type=float, default=defaults.strat_fraction)
    parser.add_argument(
        "--embedder", default=defaults.embedder, help="indobert, hf:NAME_OR_PATH, or tfidf (offline)"
    )
    parser.add_argument("--clusters", type=int, default=defaults.clusters)
    parser.add_argument("--per-cluster", type=int, default=defaults.per_cluster)
    parser.add_argument("--test-fraction", type=float, default=defaults.test_fraction)
    parser.add_argument("--test-size", type=int, default=defaults.test_size)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument(
        "--keep-duplicates", action="store_true", help="skip de-duplication (the seed as written)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from difusi.data.prepare import prepare

    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    config = PrepareConfig(
        subsets=tuple(name for item in args.subsets for name in item.split(",") if name),
        strat_fraction=args.strat_fraction,
        embedder=args.embedder,
        clusters=args.clusters,
        per_cluster=args.per_cluster,
        test_fraction=args.test_fraction,
        test_size=args.test_size,
        seed=args.seed,
        keep_duplicates=args.keep_duplicates,
    )
    card = prepare(args.source, args.out, config)
    stages = card["stages"]
    print(
        f"wrote {stages['train_rows']:,} training and {stages['test_rows']:,} test rows to {args.out} "
        f"({stages['duplicates_removed']:,} duplicates removed, overlap {card['overlap']})"
    )
