"""Command-line options shared by several subcommands, all made from config dataclass fields."""

from __future__ import annotations

import argparse
import dataclasses
import typing

from difusi.config import Flat, flat_fields, optional_part
from difusi.diffusion.sampler import SamplerSettings


def add_field_option(parser, flat: Flat, default, given_only: bool) -> None:
    """One --flag for config key `flat`: its type, choices or list form from the field's type hint.

    With `given_only` the parsed default is None, so a flag not on the command line overrides nothing.
    """
    flag = "--" + flat.name.replace("_", "-")
    shown = " ".join(map(str, default)) if isinstance(default, tuple | list) else default
    help_text = f"{flat.field.metadata.get('help', '')} (default: {shown})"
    value = None if given_only else default
    kind = optional_part(flat.kind)
    if kind is bool:
        parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=value, help=help_text)
        return
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin is typing.Literal:
        parser.add_argument(flag, choices=args, default=value, help=help_text)
    elif origin in (tuple, list):  # tuple[str, ...] / list[str]: space-separated values
        parser.add_argument(
            flag, nargs="+", type=args[0], default=value, metavar=flat.name.upper(), help=help_text
        )
    else:  # int, float, str; a union such as `list[str] | str` is given as one string
        kind = kind if kind in (int, float) else str
        parser.add_argument(flag, type=kind, default=value, metavar=flat.name.upper(), help=help_text)


def add_sampler_arguments(parser: argparse.ArgumentParser) -> None:
    """The sampler options of `generate` and `chat` (one per SamplerSettings field, its defaults)."""
    group = parser.add_argument_group("sampler")
    defaults = SamplerSettings()
    for flat in flat_fields(SamplerSettings):
        add_field_option(group, flat, getattr(defaults, flat.name), given_only=False)


def sampler_settings(args: argparse.Namespace) -> SamplerSettings:
    """The SamplerSettings given by `add_sampler_arguments` options, checked before any model loads."""
    settings = SamplerSettings(**{f.name: getattr(args, f.name) for f in dataclasses.fields(SamplerSettings)})
    settings.check()
    return settings


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default=None, help="torch device (default: cuda when present, else cpu)")


def add_config_options(
    parser: argparse.ArgumentParser, config_cls, example_yaml: str, resume: bool = False
) -> None:
    """--config (and --resume for training runs), then one --option per key of a config dataclass
    (difusi.config), default None so only the options given override the YAML. A nested config's
    keys (the sampler's) get an argument group of their own."""
    parser.add_argument(
        "--config", help=f"YAML recipe of option: value (flags given here override it), e.g. {example_yaml}"
    )
    if resume:
        parser.add_argument(
            "--resume", action="store_true", help="continue the run in --out from its last checkpoint"
        )
    defaults = config_cls()
    inherited = {
        field.name
        for base in config_cls.__mro__[1:]
        if dataclasses.is_dataclass(base)
        for field in dataclasses.fields(base)
    }
    groups: dict[str, argparse._ArgumentGroup] = {}
    # The command's own options (base, data, method ...) first, then the inherited shared ones.
    for flat in sorted(flat_fields(config_cls), key=lambda flat: flat.name in inherited):
        target = parser
        if flat.parent is not None:
            target = groups.setdefault(flat.parent, parser.add_argument_group(flat.parent))
        default = getattr(getattr(defaults, flat.parent) if flat.parent else defaults, flat.name)
        add_field_option(target, flat, default, given_only=True)


def resolve_config(args: argparse.Namespace, config_cls):
    """The YAML recipe (or the defaults) with every option given on the command line applied."""
    config = config_cls.from_yaml(args.config) if args.config else config_cls()
    names = {flat.name for flat in flat_fields(config_cls)}
    return config.with_overrides({k: v for k, v in vars(args).items() if k in names}, source="command line")
