"""`difusi generate --model DIR --prompt TEXT`: answer one prompt with a LLaDA checkpoint."""

from __future__ import annotations

import argparse

from difusi.cli.options import add_device_argument, add_sampler_arguments, sampler_settings


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("generate", help="answer a prompt with a LLaDA checkpoint")
    parser.add_argument("--model", required=True, help="checkpoint directory or hub id (model and tokenizer)")
    parser.add_argument("--adapter", help="PEFT adapter directory (a `difusi train` run's adapter/)")
    parser.add_argument("--prompt", required=True, help="the user's message")
    add_sampler_arguments(parser)
    parser.add_argument("--seed", type=int, default=0, help="random seed for sampling (default 0)")
    parser.add_argument(
        "--no-chat-template", action="store_true", help="encode the prompt as plain text (base models)"
    )
    add_device_argument(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from difusi.generation import generate_text
    from difusi.model.loading import load_model

    settings = sampler_settings(args)  # fail before a long model load
    model, tokenizer = load_model(args.model, args.adapter, args.device)
    print(generate_text(model, tokenizer, args.prompt, settings, not args.no_chat_template, args.seed))
