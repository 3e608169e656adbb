"""Command-line options shared by several subcommands."""

from __future__ import annotations

import argparse
import dataclasses

from difusi.diffusion.sampler import CACHES, REMASKING, SamplerSettings
from difusi.tuning.config import RunConfig


def add_sampler_arguments(parser: argparse.ArgumentParser) -> None:
    """The sampler options of `generate`, `evaluate` and `chat` (defaults: SamplerSettings)."""
    d = SamplerSettings()
    group = parser.add_argument_group("sampler")
    group.add_argument(
        "--steps", type=int, default=d.steps, help=f"denoising steps in all (default {d.steps})"
    )
    group.add_argument(
        "--gen-length", type=int, default=d.gen_length, help=f"tokens to generate (default {d.gen_length})"
    )
    group.add_argument(
        "--block-length",
        type=int,
        default=d.block_length,
        help=f"semi-autoregressive block (default {d.block_length})",
    )
    group.add_argument("--temperature", type=float, default=d.temperature, help="0 is greedy (default)")
    group.add_argument(
        "--cfg-scale", type=float, default=d.cfg_scale, help="classifier-free guidance (default 0: off)"
    )
    group.add_argument("--remasking", choices=REMASKING, default=d.remasking)
    group.add_argument(
        "--cache",
        choices=CACHES,
        default=d.cache,
        help="approximate key/value cache: prefix or dual (default none: exact)",
    )
    group.add_argument(
        "--threshold", type=float, default=d.threshold,
        help="commit every token of the block with confidence >= this per step, e.g. 0.9 (default: the fixed schedule)",
    )  # fmt: skip


def sampler_settings(args: argparse.Namespace) -> SamplerSettings:
    """The SamplerSettings given by `add_sampler_arguments` options, checked before any model loads."""
    settings = SamplerSettings(**{f.name: getattr(args, f.name) for f in dataclasses.fields(SamplerSettings)})
    settings.check()
    return settings


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default=None, help="torch device (default: cuda when present, else cpu)")


def add_config_options(parser: argparse.ArgumentParser, config_cls, example_yaml: str) -> None:
    """--config, --resume, then one --option per field of a run config dataclass, default None (so
    only the options given override the YAML)."""
    parser.add_argument("--config", help=f"YAML recipe, e.g. {example_yaml}")
    parser.add_argument(
        "--resume", action="store_true", help="continue the run in --out from its last checkpoint"
    )
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
