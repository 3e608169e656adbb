"""`difusi` command line: each subcommand lives in its own module with `register(subparsers)`.

The CLI only parses options and calls library functions; nothing here a Python user cannot call.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings

from difusi import __version__
from difusi.errors import DifusiError, first_line

# Explicit list: one module of difusi.cli per subcommand, in the order the pipeline runs.
COMMANDS = [
    "info",
    "synth_cendol",
    "prepare",
    "pretrain",
    "train",
    "merge",
    "generate",
    "chat",
    "evaluate",
    "compare",
    "demo",
    "bench",
    "serve",
    "harness",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="difusi", description="Adapt LLaDA masked-diffusion models to Bahasa Indonesia."
    )
    parser.add_argument("--version", action="version", version=f"difusi {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"difusi.cli.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    # peft still calls a transformers property deprecated in 5.x; the warning is not the user's to act on.
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
    parser = build_parser()
    # A subcommand that sets `passes_through` (lm-eval) hands the arguments it does not know onwards.
    args, rest = parser.parse_known_args(argv)
    if rest and not getattr(args, "passes_through", False):
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    args.passed_through = rest
    try:
        args.func(args)
    except (DifusiError, FileNotFoundError, ValueError, OSError) as error:
        message = first_line(error)
        print(f"difusi {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"difusi {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        end_process_group()
    return 0


def end_process_group() -> None:
    """End the torch.distributed process group a launched command started: left to interpreter
    exit, gloo's threads can abort the process ("terminate called without an active exception")."""
    distributed = sys.modules.get("torch.distributed")  # never started if torch was never imported
    if distributed is not None and distributed.is_available() and distributed.is_initialized():
        distributed.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
