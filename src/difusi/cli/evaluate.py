"""`difusi evaluate --base MODEL [--adapter DIR] --data test.parquet --out DIR`: score a model on the test set."""

from __future__ import annotations

import argparse

from difusi.cli.options import add_sampler_arguments, sampler_settings
from difusi.evaluation.evaluate import EvaluationConfig

DEFAULTS = EvaluationConfig()


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="generate answers for the test set and score them (chrF++, BLEU, ROUGE-L, exact match, ELBO)",
    )
    parser.add_argument("--base", required=True, help="base model: checkpoint directory or hub id")
    parser.add_argument("--adapter", help="PEFT adapter directory (a `difusi train` run's adapter/)")
    parser.add_argument("--data", required=True, help="test.parquet written by `difusi prepare`")
    parser.add_argument("--out", required=True, help="directory for generations.jsonl and metrics.json")
    parser.add_argument("--label", help="name in reports (default: the run's method, or 'base')")
    add_sampler_arguments(parser)
    parser.add_argument(
        "--batch-size", type=int, default=DEFAULTS.batch_size, help="rows per generation batch"
    )
    parser.add_argument(
        "--mc-num", type=int, default=DEFAULTS.mc_num, help="Monte Carlo draws per reference for the ELBO"
    )
    parser.add_argument(
        "--max-length",
        type=int,
        default=DEFAULTS.max_length,
        help="prompt + answer tokens; longer prompts are cut",
    )
    parser.add_argument("--limit", type=int, help="evaluate only the first N test rows")
    parser.add_argument(
        "--seed", type=int, default=DEFAULTS.seed, help="seed of the sampler and Monte Carlo ELBO draws"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from difusi.evaluation.evaluate import evaluate

    config = EvaluationConfig(
        sampler=sampler_settings(args),
        batch_size=args.batch_size,
        mc_num=args.mc_num,
        max_length=args.max_length,
        limit=args.limit,
        seed=args.seed,
    )
    metrics = evaluate(
        args.base,
        args.data,
        args.out,
        adapter=args.adapter,
        label=args.label,
        config=config,
        progress=not args.no_progress,
    )
    overall = metrics["overall"]
    print(
        f"{metrics['label']}: {metrics['n']} rows  chrF++ {overall['chrf_pp']:.2f}  BLEU {overall['bleu']:.2f}  "
        f"ROUGE-L {overall['rouge_l']:.2f}  exact match {overall['exact_match']:.1f}%  "
        f"NELBO/token {overall['nelbo_per_token']:.3f}  empty {overall['empty_rate']:.1f}%"
    )
    print(f"wrote {args.out}/metrics.json and {args.out}/generations.jsonl in {metrics['seconds']:.1f} s")
