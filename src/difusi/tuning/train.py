"""`train(config) -> Path`: fine-tune a LLaDA base with LoRA, LoRA+, PiSSA or fully, on prepared data.

Run directory (what evaluation reads):
  adapter/         PEFT adapter for the ORIGINAL base (full fine-tuning: model/, a whole checkpoint)
  metrics.jsonl    one line per logged step: step, epoch, loss, lr per group, tokens/s, wall time, eval ELBO
  run_info.json    method, base, seed, parameter counts, peak memory, time per step, rows, tokens
  config.yaml      the resolved TrainConfig
  tensorboard/     TensorBoard event files
  checkpoints/     resumable Trainer checkpoints
"""

from __future__ import annotations

import json
import resource
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import PreTrainedTokenizerBase, TrainingArguments, set_seed
from transformers.integrations import TensorBoardCallback
from transformers.trainer_utils import get_last_checkpoint

from difusi.errors import DifusiError
from difusi.model import LLaDAModelLM
from difusi.model.tokenizer import load_tokenizer, special_token_ids
from difusi.tuning.adapters import attach_adapter, check_adapter_fits, save_adapter
from difusi.tuning.config import TrainConfig
from difusi.tuning.data import SFTData, load_sft_data, sft_collator, split_path
from difusi.tuning.trainer import DiffusionTrainer, MetricsCallback

PISSA_INITIAL_DIR = "pissa_initial_adapter"


def load_base(base: str, dtype: torch.dtype = torch.float32) -> tuple[LLaDAModelLM, PreTrainedTokenizerBase]:
    """Load a LLaDA checkpoint and its tokenizer; any failure is one DifusiError naming the base."""
    try:
        model = LLaDAModelLM.from_pretrained(base, dtype=dtype)
    except (OSError, ValueError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DifusiError(f"base model {base!r} does not load ({reason}); pass a LLaDA checkpoint") from error
    return model, load_tokenizer(base)


def use_bf16(precision: str) -> bool:
    """'auto' means bf16 on a GPU and fp32 on CPU."""
    return precision == "bf16" or (precision == "auto" and torch.cuda.is_available())


def atomic_write_json(path: Path, payload: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    tmp.replace(path)


def training_arguments(config: TrainConfig, out: Path, evaluate_during: bool) -> TrainingArguments:
    return TrainingArguments(
        output_dir=str(out / "checkpoints"),
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accumulation,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        learning_rate=config.learning_rate,
        lr_scheduler_type=config.scheduler,
        warmup_steps=config.warmup_ratio,  # a float below 1 is a share of the steps
        weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm,
        activation_checkpointing=config.gradient_checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False},
        bf16=use_bf16(config.precision),
        use_cpu=not torch.cuda.is_available(),
        seed=config.seed,
        data_seed=config.seed,
        logging_steps=config.logging_steps,
        eval_strategy="steps" if evaluate_during else "no",
        eval_steps=config.eval_steps if evaluate_during else None,
        save_strategy="steps",
        save_steps=config.save_steps,
        report_to="none",  # TensorBoard is added as a callback with our directory
        remove_unused_columns=False,  # our batches carry prompt_lengths, which forward() does not take
        include_num_input_tokens_seen="all",
        ddp_find_unused_parameters=False,
        dataloader_num_workers=0,
    )


@dataclass
class Run:
    """A training run set up by `prepare_run`; `fit()` trains it and writes the run directory."""

    config: TrainConfig
    out: Path
    trainer: DiffusionTrainer
    tokenizer: PreTrainedTokenizerBase
    train_data: SFTData
    checkpoint: str | None = None  # the checkpoint a resumed run continues from

    @property
    def model(self):
        return self.trainer.model

    def fit(self) -> Path:
        """Train (from `checkpoint` when resuming), evaluate, save; returns the run directory."""
        trainer, out, checkpoint = self.trainer, self.out, self.checkpoint
        if checkpoint is None and trainer.eval_fn is not None:
            trainer.evaluate()  # the base model's ELBO, logged at step 0
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        result = trainer.train(resume_from_checkpoint=checkpoint)
        if trainer.eval_fn is not None:
            trainer.evaluate()
        if trainer.is_world_process_zero():
            resumed_step = int(Path(checkpoint).name.rsplit("-", 1)[1]) if checkpoint else 0
            self._save_outputs(
                result.metrics["train_runtime"] / max(trainer.state.global_step - resumed_step, 1)
            )
        trainer.accelerator.wait_for_everyone()
        return out

    def _save_outputs(self, time_per_step: float) -> None:
        config, out, trainer = self.config, self.out, self.trainer
        final = out / ("model" if config.method == "full" else "adapter")
        staging = out / f".{final.name}.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        model = trainer.accelerator.unwrap_model(trainer.model)
        if config.method == "full":
            model.save_pretrained(staging)
        else:
            save_adapter(model, config, staging, out / PISSA_INITIAL_DIR)
        self.tokenizer.save_pretrained(staging)
        shutil.rmtree(final, ignore_errors=True)
        staging.rename(final)

        if torch.cuda.is_available():
            peak = torch.cuda.max_memory_allocated()
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB
        atomic_write_json(
            out / "run_info.json",
            {
                "method": config.method,
                "base": config.base,
                "seed": config.seed,
                "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
                "total_params": sum(p.numel() for p in model.parameters()),
                "peak_memory_bytes": peak,
                "time_per_step_s": time_per_step,
                "steps": trainer.state.global_step,
                "train_rows": self.train_data.rows,
                "truncated_rows": self.train_data.truncated,
                "tokens_seen": trainer.state.num_input_tokens_seen,
                "world_size": trainer.args.world_size,
            },
        )


def prepare_run(config: TrainConfig, resume: bool = False) -> Run:
    """Check everything that can be wrong, load base and data, and build the Trainer.

    Every bad input fails here, before the run directory is touched.
    """
    config.validate()
    out = Path(config.out)
    checkpoint = None
    if resume:
        checkpoints = out / "checkpoints"
        checkpoint = get_last_checkpoint(str(checkpoints)) if checkpoints.is_dir() else None
        if checkpoint is None:
            raise DifusiError(f"no checkpoint to resume in {checkpoints}; run again without --resume")
    elif (out / "metrics.jsonl").exists():
        raise DifusiError(f"{out} already holds a run; pass --resume to continue it or choose a new --out")
    if not split_path(config.data, "train").is_file():
        raise DifusiError(
            f"no train.parquet in {config.data}; run `difusi prepare` or pass the prepared data directory"
        )
    bf16 = use_bf16(config.precision)
    base, tokenizer = load_base(config.base, torch.bfloat16 if bf16 else torch.float32)
    ids = special_token_ids(tokenizer, base.config)
    train_data = load_sft_data(config.data, "train", tokenizer, config.max_length)
    test_data = None
    if split_path(config.data, "test").is_file():
        test_data = load_sft_data(config.data, "test", tokenizer, config.max_length, limit=config.eval_rows)
    if config.method != "full":
        check_adapter_fits(base, config)

    out.mkdir(parents=True, exist_ok=True)
    config.to_yaml(out / "config.yaml")
    set_seed(config.seed)  # adapter init (and PiSSA's randomized SVD) draw from the global RNG
    model = base if config.method == "full" else attach_adapter(base, config, out / PISSA_INITIAL_DIR)

    eval_fn = _elbo_eval(test_data, config) if test_data is not None else None
    tensorboard = TensorBoardCallback()
    tensorboard.logging_dir = str(out / "tensorboard")
    trainer = DiffusionTrainer(
        model=model,
        args=training_arguments(config, out, evaluate_during=eval_fn is not None and config.eval_steps > 0),
        train_dataset=train_data.examples,
        eval_dataset=test_data.examples if test_data is not None else None,
        data_collator=sft_collator(ids.pad),
        processing_class=tokenizer,
        callbacks=[tensorboard, MetricsCallback(out / "metrics.jsonl")],
        mask_id=ids.mask,
        loss_normalization=config.loss_normalization,
        loraplus_ratio=config.loraplus_ratio if config.method == "loraplus" else None,
        eval_fn=eval_fn,
    )
    return Run(config, out, trainer, tokenizer, train_data, checkpoint)


def _elbo_eval(test_data: SFTData, config: TrainConfig):
    """Test-set negative ELBO per answer token, with a fixed generator so every eval is comparable."""
    from difusi.diffusion.likelihood import dataset_elbo

    def evaluate(model) -> dict[str, float]:
        with torch.no_grad():
            generator = torch.Generator().manual_seed(config.seed)
            elbo = dataset_elbo(model, test_data.examples, config.eval_mc_num, config.batch_size, generator)
        return {"elbo": float(elbo)}

    return evaluate


def train(config: TrainConfig, resume: bool = False) -> Path:
    """Run `config` end to end and return the run directory (see the module docstring)."""
    return prepare_run(config, resume).fit()
