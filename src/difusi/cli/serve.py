"""`difusi serve --model M [--adapter A] [--host 127.0.0.1] [--port 8000]`: an OpenAI-compatible
HTTP server (chat and text completions, streaming, batched requests) for a LLaDA checkpoint."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os

from difusi.cli.options import add_device_argument, add_field_option, add_sampler_arguments, sampler_settings
from difusi.config import flat_fields
from difusi.errors import DifusiError
from difusi.serving import ServeConfig

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("serve", help="serve a model over an OpenAI-compatible HTTP API")
    parser.add_argument("--model", required=True, help="checkpoint directory or hub id (model and tokenizer)")
    parser.add_argument("--adapter", help="PEFT adapter directory (a `difusi train` run's adapter/)")
    defaults = ServeConfig()
    for flat in flat_fields(ServeConfig):
        add_field_option(parser, flat, getattr(defaults, flat.name), given_only=False)
    add_device_argument(parser)
    add_sampler_arguments(parser)  # the defaults of requests; a request's extra body fields override them
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    settings = sampler_settings(args)  # fail before a long model load
    config = ServeConfig(
        **{field.name: getattr(args, field.name) for field in dataclasses.fields(ServeConfig)}
    )
    config = dataclasses.replace(
        config,
        name=config.name or args.adapter or args.model,
        api_key=config.api_key or os.environ.get("DIFUSI_API_KEY") or None,
    )
    try:
        from difusi.serving.app import serve
    except ImportError as error:
        raise DifusiError(
            f"the server needs FastAPI and uvicorn ({error}); pip install 'difusi[serve]'"
        ) from error
    from difusi.model.loading import load_model

    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(name)s: %(message)s")
    if config.host not in LOOPBACK and not config.api_key:
        logging.getLogger("difusi.serve").warning(
            "serving on %s with no API key: anyone who reaches the port can use the model; "
            "pass --api-key or set DIFUSI_API_KEY",
            config.host,
        )
    model, tokenizer = load_model(args.model, args.adapter, args.device)
    serve(model, tokenizer, settings, config)
