"""`difusi lm-eval ARGS`: lm-evaluation-harness's command line with the "difusi" model registered.

ARGS are lm-eval's own, e.g. `--model difusi --model_args pretrained=DIR,adapter=A,mc_num=128
--tasks xcopa_id --output_path runs/lm-eval --log_samples` or `--config configs/lm-eval-indonesian.yaml`.
"""

from __future__ import annotations

import argparse
import sys

from difusi.errors import DifusiError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "lm-eval",
        add_help=False,  # --help goes to lm-eval, like every other argument
        help="run lm-evaluation-harness with --model difusi (lm-eval's own arguments)",
    )
    parser.set_defaults(func=run, passes_through=True)


def run(args: argparse.Namespace) -> None:
    try:
        from lm_eval.__main__ import cli_evaluate

        import difusi.evaluation.lm_eval_model  # noqa: F401 (registers the "difusi" model)
    except ImportError as error:
        raise DifusiError(
            f"lm-evaluation-harness is not installed ({error}); pip install 'difusi[lmeval]'"
        ) from error
    argv = sys.argv
    sys.argv = ["lm-eval", *args.passed_through]  # lm-eval's entry point reads sys.argv
    try:
        cli_evaluate()
    finally:
        sys.argv = argv
