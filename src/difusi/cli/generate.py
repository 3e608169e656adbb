"""`difusi generate --model DIR --prompt TEXT`: answer one prompt with a LLaDA checkpoint."""

from __future__ import annotations

import argparse

import torch

from difusi.diffusion.sampler import CACHES, REMASKING, check_sampler_settings, generate


def add_sampler_arguments(parser: argparse.ArgumentParser) -> None:
    """Sampler options shared by the commands that generate (defaults: LLaDA's chat recommendation)."""
    group = parser.add_argument_group("sampler")
    group.add_argument("--steps", type=int, default=128, help="denoising steps in all (default 128)")
    group.add_argument("--gen-length", type=int, default=128, help="tokens to generate (default 128)")
    group.add_argument("--block-length", type=int, default=32, help="semi-autoregressive block (default 32)")
    group.add_argument("--temperature", type=float, default=0.0, help="0 is greedy (default)")
    group.add_argument(
        "--cfg-scale", type=float, default=0.0, help="classifier-free guidance (default 0: off)"
    )
    group.add_argument("--remasking", choices=REMASKING, default="low_confidence")
    add_fast_sampler_arguments(group)


def add_fast_sampler_arguments(group) -> None:
    """The Fast-dLLM options (key/value cache, confidence threshold); off by default (exact sampling)."""
    group.add_argument(
        "--cache",
        choices=CACHES,
        default="none",
        help="approximate key/value cache: prefix or dual (default none: exact)",
    )
    group.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="commit every token of the block with confidence >= this per step, e.g. 0.9 (default: "
        "the fixed schedule)",
    )


def sampler_kwargs(args: argparse.Namespace) -> dict:
    """The `generate` keyword arguments given by `add_sampler_arguments` options."""
    return dict(
        steps=args.steps,
        gen_length=args.gen_length,
        block_length=args.block_length,
        temperature=args.temperature,
        cfg_scale=args.cfg_scale,
        remasking=args.remasking,
        cache=args.cache,
        threshold=args.threshold,
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("generate", help="answer a prompt with a LLaDA checkpoint")
    parser.add_argument("--model", required=True, help="checkpoint directory (model and tokenizer)")
    parser.add_argument("--prompt", required=True, help="the user's message")
    add_sampler_arguments(parser)
    parser.add_argument("--seed", type=int, default=0, help="random seed for sampling (default 0)")
    parser.add_argument(
        "--no-chat-template", action="store_true", help="encode the prompt as plain text (base models)"
    )
    parser.add_argument("--device", default=None, help="torch device (default: cuda when present, else cpu)")
    parser.set_defaults(func=run)


def generate_text(
    model, tokenizer, prompt: str, chat_template: bool = True, generator=None, **sampler
) -> str:
    """The model's answer to `prompt`, decoded up to its first EOS or end of turn (by masked
    diffusion, or autoregressively for a causal `--objective ar` model).

    The LLaDA-Instruct chat format is applied when `chat_template` is set and the tokenizer has a
    template; otherwise the prompt is encoded as plain text.
    """
    from difusi.data.chat_format import render_chat
    from difusi.errors import DifusiError
    from difusi.model.tokenizer import EOT_TOKEN, token_id

    if chat_template and tokenizer.chat_template:
        # The rendered text already starts with BOS.
        ids = tokenizer.encode(
            render_chat([{"role": "user", "content": prompt}], tokenizer), add_special_tokens=False
        )
    else:
        ids = tokenizer.encode(prompt)
    try:
        stop_ids = {model.config.eos_token_id, token_id(tokenizer, EOT_TOKEN)}
    except DifusiError:  # a base tokenizer may have no end-of-turn token
        stop_ids = {model.config.eos_token_id}
    prompt_ids = torch.tensor([ids], device=next(model.parameters()).device)
    if model.config.causal:  # the AR baseline decodes left to right; diffusion settings do not apply
        from difusi.autoregressive import ar_generate

        output = ar_generate(
            model, prompt_ids, None, sampler["gen_length"], sampler["temperature"], tuple(stop_ids), generator
        )
    else:
        output = generate(model, prompt_ids, generator=generator, **sampler)
    answer = output[0, len(ids) :].tolist()
    end = next((i for i, token in enumerate(answer) if token in stop_ids), len(answer))
    return tokenizer.decode(answer[:end], skip_special_tokens=True).strip()


def run(args: argparse.Namespace) -> None:
    from difusi.model import LLaDAModelLM
    from difusi.model.tokenizer import load_tokenizer

    check_sampler_settings(**sampler_kwargs(args))  # fail before a long model load
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    tokenizer = load_tokenizer(args.model)
    model = LLaDAModelLM.from_pretrained(args.model, dtype=dtype).to(device).eval()
    torch.manual_seed(args.seed)
    generator = torch.Generator(device).manual_seed(args.seed)
    print(
        generate_text(
            model,
            tokenizer,
            args.prompt,
            not args.no_chat_template,
            generator=generator,
            **sampler_kwargs(args),
        )
    )
