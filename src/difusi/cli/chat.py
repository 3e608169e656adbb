"""`difusi chat --base MODEL [--adapter DIR]`: talk to a model, watching each answer denoise."""

from __future__ import annotations

import argparse

from difusi.cli.options import add_device_argument, add_sampler_arguments, sampler_settings


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("chat", help="interactive multi-turn chat with live denoising")
    parser.add_argument("--base", required=True, help="checkpoint directory or hub id (model and tokenizer)")
    parser.add_argument("--adapter", help="PEFT adapter directory (a `difusi train` run's adapter/)")
    parser.add_argument("--seed", type=int, default=0, help="random seed for sampling (default 0)")
    add_device_argument(parser)
    add_sampler_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from difusi.chat import ChatSession, run_chat
    from difusi.model.loading import load_model

    settings = sampler_settings(args)  # fail before a long model load
    model, tokenizer = load_model(args.base, args.adapter, args.device)
    run_chat(ChatSession(model, tokenizer, settings, seed=args.seed))
