"""`difusi chat --base MODEL [--adapter DIR]`: talk to a model, watching each answer denoise."""

from __future__ import annotations

import argparse

from difusi.cli.generate import add_sampler_arguments, sampler_kwargs


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("chat", help="interactive multi-turn chat with live denoising")
    parser.add_argument("--base", required=True, help="checkpoint directory or hub id (model and tokenizer)")
    parser.add_argument("--adapter", help="PEFT adapter directory (a `difusi train` run's adapter/)")
    parser.add_argument("--seed", type=int, default=0, help="random seed for sampling (default 0)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda when present, else cpu)")
    add_sampler_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from difusi.chat import ChatSession, run_chat
    from difusi.diffusion.sampler import check_sampler_settings
    from difusi.evaluation.evaluate import SamplerSettings
    from difusi.model.loading import load_model

    settings = SamplerSettings(**sampler_kwargs(args))
    check_sampler_settings(**sampler_kwargs(args))
    model, tokenizer = load_model(args.base, args.adapter, args.device)
    run_chat(ChatSession(model, tokenizer, settings, seed=args.seed))
