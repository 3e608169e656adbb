"""`difusi pretrain`: masked-diffusion pretraining from scratch of a preset model (the demo's base)."""

from __future__ import annotations

import argparse

from difusi.cli.options import add_config_options, resolve_config
from difusi.tuning.config import PretrainConfig


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "pretrain",
        help="pretrain a small LLaDA model from scratch on text",
        description="Build a preset model at random and pretrain it with the masked-diffusion loss on a "
        "text corpus (default: the built-in offline Indonesian corpus). Writes OUT/model, usable as "
        "`difusi train --base OUT/model`.",
    )
    add_config_options(parser, PretrainConfig, "configs/demo-pretrain.yaml", resume=True)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from difusi.tuning.pretrain import pretrain

    out = pretrain(resolve_config(args, PretrainConfig), resume=args.resume)
    print(f"pretrained model written to {out / 'model'}")
