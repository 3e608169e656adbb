"""`difusi info MODEL`: print a checkpoint's architecture, size and special token ids."""

from __future__ import annotations

import argparse

import torch


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("info", help="show a LLaDA checkpoint's size and token ids")
    parser.add_argument("model", help="checkpoint directory or hub id")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from difusi.model import LLaDAModelLM

    model = LLaDAModelLM.from_pretrained(args.model, dtype=torch.float32)
    cfg = model.config
    print(f"{args.model}: {sum(p.numel() for p in model.parameters()):,} parameters")
    print(f"  d_model {cfg.d_model}  layers {cfg.n_layers}  heads {cfg.n_heads}  mlp {cfg.mlp_hidden_size}")
    print(
        f"  vocab {cfg.vocab_size}  mask {cfg.mask_token_id}  eos {cfg.eos_token_id}  pad {cfg.pad_token_id}"
    )
