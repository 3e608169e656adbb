"""Command-line options shared by several subcommands."""

from __future__ import annotations

import argparse
import dataclasses

from difusi.diffusion.sampler import CACHES, REMASKING, SamplerSettings, check_sampler_settings


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
    check_sampler_settings(**dataclasses.asdict(settings))
    return settings


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default=None, help="torch device (default: cuda when present, else cpu)")
