"""`difusi evaluate --base MODEL [--adapter DIR] --data test.parquet --out DIR [--config YAML]`: score a
model on the test set.

Every EvaluationConfig key is an option and a YAML key, the sampler's settings flattened among them
(configs/evaluate-llada8b.yaml); options given on the command line override the YAML. The model,
adapter, data, output directory and label are options only.
"""

from __future__ import annotations

import argparse

from difusi.cli.options import add_config_options, resolve_config
from difusi.evaluation.evaluate import EvaluationConfig


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
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    add_config_options(parser, EvaluationConfig, "configs/evaluate-llada8b.yaml")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from difusi.evaluation.evaluate import evaluate

    config = resolve_config(args, EvaluationConfig)
    config.sampler.check()  # fail before a long model load
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
        f"NELBO/token {overall['nelbo_per_token']:.3f}  empty {overall['empty_rate']:.1f}%  "
        f"one-char {overall['one_char_rate']:.1f}%"
    )
    print(f"wrote {args.out}/metrics.json and {args.out}/generations.jsonl in {metrics['seconds']:.1f} s")
