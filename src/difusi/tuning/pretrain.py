"""Masked-diffusion pretraining from scratch of a preset model on plain text (the demo's base).

The preset's project tokenizer encodes the corpus; documents are packed into fixed-length
sequences with EOS between them, and the model learns with LLaDA's pretraining loss (with
`objective: ar`, the same architecture made causal learns next-token prediction: the AR baseline).
With `general_tasks: N`, N instruction-formatted general examples (difusi.synthetic.tasks, disjoint from
the fine-tuning task families) join the blocks and every batch takes the SFT loss: a block is an SFT
example with an empty prompt, for which the SFT loss (answer-length normalisation) equals the
pretraining loss (batches mix both kinds; a general example is EOS-padded to the batch's length).
`held_out: N` keeps the corpus's last N lines out of training. `ar_steps: N` trains the first N
steps causally with the next-token loss before the diffusion loss takes over: copying from the
prompt, which a small diffusion model learns slowly, transfers from the AR start.
Run directory: model/ (official-layout checkpoint + tokenizer, usable as `difusi train --base`),
metrics.jsonl, run_info.json, config.yaml, tensorboard/, checkpoints/.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from transformers import GenerationConfig, PreTrainedTokenizerBase, default_data_collator, set_seed

from difusi.data.chat_format import build_sft_example
from difusi.errors import DifusiError
from difusi.model.loading import load_model
from difusi.model.presets import build_checkpoint, get_preset
from difusi.model.tokenizer import special_token_ids
from difusi.synthetic.corpus import indonesian_sentences
from difusi.tuning.config import PretrainConfig
from difusi.tuning.data import sft_collator
from difusi.tuning.run_directory import claim_run
from difusi.tuning.train import run_trainer, save_run, trainer_callbacks, training_arguments
from difusi.tuning.trainer import DiffusionTrainer


def read_corpus(corpus: str | Path | None) -> list[str]:
    """Non-empty lines of a text file or of every .txt file under a directory (sorted by path).

    None or "" gives the built-in offline Indonesian news corpus.
    """
    if not corpus:
        return list(indonesian_sentences())
    path = Path(corpus)
    if path.is_dir():
        files = sorted(path.rglob("*.txt"))
    elif path.is_file():
        files = [path]
    else:
        raise DifusiError(f"corpus {path} does not exist; pass a text file or a directory of .txt files")
    lines = [line.strip() for file in files for line in file.read_text(encoding="utf-8").splitlines()]
    lines = [line for line in lines if line]
    if not lines:
        raise DifusiError(f"corpus {path} holds no text; pass a non-empty text file or directory")
    return lines


def pack_corpus(
    texts: list[str], tokenizer: PreTrainedTokenizerBase, seq_len: int, eos_id: int
) -> list[dict]:
    """Encode `texts`, join them with EOS after each, and cut the stream into `seq_len` blocks.

    The final partial block is dropped, so every batch is full length and needs no padding.
    """
    stream: list[int] = []
    for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]:
        stream.extend(ids)
        stream.append(eos_id)
    blocks = [{"input_ids": stream[i : i + seq_len]} for i in range(0, len(stream) - seq_len + 1, seq_len)]
    if not blocks:
        raise DifusiError(
            f"the corpus gives {len(stream)} tokens, fewer than one sequence of {seq_len}; "
            "use more text or a smaller --seq-len"
        )
    return blocks


def general_sft_examples(
    tokenizer: PreTrainedTokenizerBase, count: int, seq_len: int, seed: int
) -> list[dict]:
    """`count` general instruction examples (difusi.synthetic.general.general_examples) as SFT examples of at
    most `seq_len` tokens; those whose prompt leaves no room for an answer are skipped."""
    from difusi.synthetic.general import general_examples

    examples = []
    for prompt, answer in general_examples(count, seed):
        try:
            examples.append(build_sft_example(tokenizer, prompt, answer, seq_len))
        except DifusiError:  # the prompt alone fills seq_len
            continue
    return examples


def pretrain(config: PretrainConfig, resume: bool = False) -> Path:
    """Build `config.preset` at random, pretrain it on the corpus, write OUT/model; returns OUT."""
    config.validate()
    preset = get_preset(config.preset)
    if config.seq_len > preset.max_sequence_length:
        raise DifusiError(
            f"seq_len {config.seq_len} exceeds preset {config.preset!r}'s maximum {preset.max_sequence_length}"
        )
    out = Path(config.out)
    args = training_arguments(config, out)
    lock, start = claim_run(out, resume, "model", config, args)
    if start.complete:
        return out
    try:
        _pretrain(config, out, args, start.checkpoint)
    except BaseException:
        if lock is not None:
            lock.release(discard=True)
        raise
    if lock is not None:
        lock.release()
    return out


def _pretrain(config: PretrainConfig, out: Path, args, checkpoint: str | None) -> None:
    texts = read_corpus(config.corpus)
    if config.held_out:
        if config.held_out >= len(texts):
            raise DifusiError(f"held_out {config.held_out} leaves none of the corpus's {len(texts)} lines")
        texts = texts[: -config.held_out]
    with tempfile.TemporaryDirectory() as scratch:
        # The same preset and seed give the same initial weights, so a resumed run starts alike.
        initial = build_checkpoint(config.preset, Path(scratch) / "init", config.seed)
        model, tokenizer = load_model(initial, device="cpu", dtype=torch.float32)
        generation_config = GenerationConfig.from_pretrained(initial)
    ids = special_token_ids(tokenizer, model.config)
    blocks = pack_corpus(texts, tokenizer, config.seq_len, ids.eos)
    collator = default_data_collator
    if config.general_tasks:
        blocks = [{"input_ids": block["input_ids"], "prompt_length": 0} for block in blocks]
        blocks += general_sft_examples(tokenizer, config.general_tasks, config.seq_len, config.seed)
        collator = sft_collator(ids.pad)

    out.mkdir(parents=True, exist_ok=True)
    if args.process_index == 0:  # under accelerate every process runs this
        config.to_yaml(out / "config.yaml")
    set_seed(config.seed)
    trainer = DiffusionTrainer(
        model=model,
        args=args,
        train_dataset=blocks,
        data_collator=collator,
        processing_class=tokenizer,
        callbacks=trainer_callbacks(out),
        mask_id=ids.mask,
        objective=config.objective,
        ar_steps=config.ar_steps,
        block_size=config.block_size,
        complementary_mask=config.complementary_mask,
        token_shift=config.token_shift,
    )
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    train_metrics = run_trainer(trainer, checkpoint)

    def save(model, staging: Path, state_dict: dict | None) -> None:
        model.save_pretrained(staging, state_dict=state_dict)
        tokenizer.save_pretrained(staging)
        generation_config.save_pretrained(staging)

    details = {
        "preset": config.preset,
        "objective": config.objective,
        "corpus_texts": len(texts),
        "sequences": len(blocks),
        "general_tasks": config.general_tasks,
        "held_out": config.held_out,
        "ar_steps": config.ar_steps,
        "block_size": model.config.block_size,
    }
    save_run(trainer, train_metrics, checkpoint, out / "model", save, {}, details)
