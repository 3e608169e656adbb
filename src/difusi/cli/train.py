"""`difusi train`: fine-tune a LLaDA base with LoRA, LoRA+, PiSSA or fully (options mirror TrainConfig)."""

from __future__ import annotations

import argparse
import dataclasses

from difusi.tuning.config import RunConfig, TrainConfig


def add_config_options(parser: argparse.ArgumentParser, config_cls) -> None:
    """One --option per dataclass field, default None (so only given options override the YAML)."""
    defaults = config_cls()
    shared = {field.name for field in dataclasses.fields(RunConfig)}
    # The command's own options (base, data, method ...) first, then the shared training ones.
    for field in sorted(dataclasses.fields(config_cls), key=lambda field: field.name in shared):
        flag = "--" + field.name.replace("_", "-")
        default = getattr(defaults, field.name)
        help_text = f"{field.metadata.get('help', '')} (default: {default})"
        if isinstance(default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            kind = type(default) if isinstance(default, int | float) else str
            parser.add_argument(flag, type=kind, default=None, metavar=field.name.upper(), help=help_text)


def resolve_config(args: argparse.Namespace, config_cls):
    """The YAML recipe (or the defaults) with every option given on the command line applied."""
    config = config_cls.from_yaml(args.config) if args.config else config_cls()
    names = {field.name for field in dataclasses.fields(config_cls)}
    return config.with_overrides({k: v for k, v in vars(args).items() if k in names}, source="command line")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="fine-tune a LLaDA model with the masked-diffusion SFT loss",
        description="Fine-tune a LLaDA model on prepared data. Every option can also be set in the "
        "--config YAML (same names, with underscores); options given here override it.",
    )
    parser.add_argument("--config", help="YAML recipe, e.g. configs/llada8b-lora.yaml")
    parser.add_argument(
        "--resume", action="store_true", help="continue the run in --out from its last checkpoint"
    )
    add_config_options(parser, TrainConfig)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from difusi.tuning.train import train

    out = train(resolve_config(args, TrainConfig), resume=args.resume)
    print(f"run written to {out}")
