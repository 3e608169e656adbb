"""`difusi train`: fine-tune a LLaDA base with LoRA, LoRA+, PiSSA or fully (options mirror TrainConfig)."""

from __future__ import annotations

import argparse

from difusi.cli.options import add_config_options, resolve_config
from difusi.tuning.config import TrainConfig


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="fine-tune a LLaDA model with the masked-diffusion SFT loss",
        description="Fine-tune a LLaDA model on prepared data. Every option can also be set in the "
        "--config YAML (same names, with underscores); options given here override it.",
    )
    add_config_options(parser, TrainConfig, "configs/llada8b-lora.yaml", resume=True)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from difusi.tuning.train import train

    out = train(resolve_config(args, TrainConfig), resume=args.resume)
    print(f"run written to {out}")
