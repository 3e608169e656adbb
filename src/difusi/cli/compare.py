"""`difusi compare RUN_DIR... --out DIR`: one Markdown report with plots across evaluated runs."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "compare", help="compare evaluated runs (base, LoRA, LoRA+, PiSSA) in report.md with plots"
    )
    parser.add_argument(
        "run_dirs", nargs="+", metavar="RUN_DIR", help="run directories holding eval/metrics.json"
    )
    parser.add_argument("--out", required=True, help="directory for report.md and the PNG figures")
    parser.add_argument(
        "--resamples", type=int, default=1000, help="bootstrap resamples for the 95%% intervals"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from difusi.evaluation.report import write_report
    from difusi.evaluation.runs import load_groups
    from difusi.evaluation.tables import headline_table

    groups = load_groups(args.run_dirs)
    path = write_report(groups, args.out, n_resamples=args.resamples, seed=args.seed)
    print(headline_table(groups))
    print(f"\nwrote {path}")
