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


def generate_text(model, tokenizer, prompt: str, settings, chat_template: bool = True, seed: int = 0) -> str:
    """The model's answer to `prompt`, decoded up to its first EOS or end of turn (by masked
    diffusion, or autoregressively for a causal `--objective ar` model).

    The LLaDA-Instruct chat format is applied when `chat_template` is set and the tokenizer has a
    template; otherwise the prompt is encoded as plain text.
    """
    from difusi.data.chat_format import render_chat
    from difusi.generation import generate_answers

    if chat_template and tokenizer.chat_template:
        # The rendered text already starts with BOS.
        text = render_chat([{"role": "user", "content": prompt}], tokenizer)
        ids = tokenizer.encode(text, add_special_tokens=False)
    else:
        ids = tokenizer.encode(prompt)
    [(answer, _)] = generate_answers(
        model, tokenizer, [ids], settings, batch_size=1, seed=seed, progress=False
    )
    return answer


def run(args: argparse.Namespace) -> None:
    from difusi.model.loading import load_model

    settings = sampler_settings(args)  # fail before a long model load
    model, tokenizer = load_model(args.model, args.adapter, args.device)
    print(generate_text(model, tokenizer, args.prompt, settings, not args.no_chat_template, args.seed))
