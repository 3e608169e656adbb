"""Recipe: supervised fine-tuning of a LLaDA base on prepared data; `train(config) -> Path`.

Launch (one GPU or CPU; YAML sets the values, flags given override them):
    difusi train --config configs/llada8b-lora.yaml --data data/cendol --out runs/lora
Several GPUs (data parallel; FSDP and DeepSpeed ZeRO-2 configs sit beside ddp.yaml):
    accelerate launch --config_file configs/accelerate/ddp.yaml --num_processes 4 \
        -m difusi train --config configs/llada8b-lora.yaml --data data/cendol --out runs/lora

Features:
  - Methods: LoRA, LoRA+ (lr_B = ratio x lr_A optimizer groups), PiSSA (top-r singular triplets,
    saved converted so the adapter applies to the original base) and full fine-tuning (`method`).
  - Objective: the masked-diffusion SFT loss (prompt never masked; normalised per answer length, as
    the official recipe, or per token), or `objective: ar`, the causal next-token baseline.
  - Precision: `auto` is bf16 autocast on GPU and fp32 on CPU; a frozen base is stored in bf16,
    trained weights stay fp32. Optional gradient checkpointing of the transformer blocks.
  - Checkpointing: a resumable Trainer checkpoint every `save_steps` in OUT/checkpoints; the final
    adapter (or model) is written atomically.
  - Resume: `--resume` is safe to pass always (a scheduler's relaunch): it continues the run in OUT
    from its last whole checkpoint (optimizer, scheduler, data order and masking noise included),
    starts from the beginning when there is none, and does nothing on a finished run; a killed run
    ends, after one relaunch, with the uninterrupted run's adapter. A run directory is never
    overwritten without it, and a live run's directory is locked against a second run
    (difusi.tuning.run_directory).
  - Distributed: through accelerate (DDP and FSDP2 tested on CPU processes; DeepSpeed untested); the
    same global batch trains the same model on any number of processes (the masking noise follows
    a micro-batch's place in it); only the main process writes files.
  - Logging: OUT/metrics.jsonl (loss, learning rate per group, tokens/s, wall time, test-set ELBO
    every `eval_steps`, before the first and after the last step), TensorBoard, run_info.json.

Run directory (what evaluation reads):
  adapter/         PEFT adapter for the ORIGINAL base (full fine-tuning: model/, a whole checkpoint)
  metrics.jsonl    one line per logged step: step, epoch, loss, lr per group, tokens/s, wall time, eval ELBO
  run_info.json    method, base, seed, parameter counts, peak memory, time per step, tokens/s, rows, tokens,
                   adapter set-up time
  config.yaml      the resolved TrainConfig
  tensorboard/     TensorBoard event files
  checkpoints/     resumable Trainer checkpoints (each marked whole once written)
  .lock            the lock a live run holds (the kernel frees it when the run ends or dies)
"""

from __future__ import annotations

import logging
import os
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import PreTrainedTokenizerBase, TrainingArguments, set_seed
from transformers.integrations import TensorBoardCallback
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_callback import TrainerState

from difusi.distributed import Processes
from difusi.errors import DifusiError
from difusi.io import atomic_directory, write_json
from difusi.model.loading import load_model, save_attention
from difusi.model.tokenizer import special_token_ids
from difusi.scoring import score_references
from difusi.tuning.adapters import attach_adapter, check_adapter_fits, save_adapter
from difusi.tuning.config import RunConfig, TrainConfig
from difusi.tuning.data import SFTData, load_sft_data, sft_collator, split_path
from difusi.tuning.run_directory import CheckpointMarker, RunLock, claim_run, training_finished
from difusi.tuning.trainer import DiffusionTrainer, MetricsCallback, evaluated_at

PISSA_INITIAL_DIR = "pissa_initial_adapter"
logger = logging.getLogger(__name__)


def use_bf16(precision: str) -> bool:
    """'auto' means bf16 on a GPU and fp32 on CPU."""
    return precision == "bf16" or (precision == "auto" and torch.cuda.is_available())


def training_arguments(config: RunConfig, out: Path, eval_steps: int = 0) -> TrainingArguments:
    """transformers TrainingArguments of a run; `eval_steps` > 0 evaluates every that many steps."""
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
        eval_strategy="steps" if eval_steps > 0 else "no",
        eval_steps=eval_steps or None,
        save_strategy="steps",
        save_steps=config.save_steps,
        report_to="none",  # TensorBoard comes from trainer_callbacks, writing where we say
        remove_unused_columns=False,  # our batches carry prompt_lengths, which forward() does not take
        include_num_input_tokens_seen="all",
        ddp_find_unused_parameters=False,
        dataloader_num_workers=0,
    )


def trainer_callbacks(out: Path) -> list:
    """TensorBoard logs in OUT/tensorboard, metrics lines in OUT/metrics.jsonl, and the marker that
    makes a checkpoint count for --resume."""
    tensorboard = TensorBoardCallback()
    tensorboard.logging_dir = str(out / "tensorboard")
    return [tensorboard, MetricsCallback(out / "metrics.jsonl"), CheckpointMarker()]


def run_trainer(trainer: DiffusionTrainer, checkpoint: str | None) -> dict:
    """Train from `checkpoint` (None: the start) and return transformers' train metrics.

    A checkpoint of the last step (the run was killed before its final save) is loaded, not trained
    on: transformers would take one step past max_steps."""
    if checkpoint is None or not training_finished(checkpoint):
        return trainer.train(resume_from_checkpoint=checkpoint).metrics
    trainer._load_from_checkpoint(checkpoint)  # transformers' own loader: weights, adapters, sharding
    trainer.state = TrainerState.load_from_json(str(Path(checkpoint) / TRAINER_STATE_NAME))
    trainer.callback_handler.on_train_begin(trainer.args, trainer.state, trainer.control)
    return {"train_runtime": 0.0}


def run_summary(trainer: DiffusionTrainer, train_metrics: dict, checkpoint: str | None) -> dict:
    """Sizes, memory and speed of a finished run (this session's speed when it was resumed)."""
    model = trainer.accelerator.unwrap_model(trainer.model)
    if torch.cuda.is_available():
        peak = torch.cuda.max_memory_allocated()
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB
    state = trainer.state
    resumed_step = int(Path(checkpoint).name.rsplit("-", 1)[1]) if checkpoint else 0
    seconds, steps, tokens = train_metrics["train_runtime"], state.global_step - resumed_step, None
    if steps == 0:  # a relaunch that only saved: the speed of the run so far, from its logs
        seconds = max((entry.get("wall_time_s", 0.0) for entry in state.log_history), default=0.0)
        steps, tokens = state.global_step, state.num_input_tokens_seen
    tokens = trainer.clock.session_tokens(state) if tokens is None else tokens
    return {
        "seed": trainer.args.seed,
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "total_params": sum(p.numel() for p in model.parameters()),
        "peak_memory_bytes": peak,
        "time_per_step_s": seconds / max(steps, 1),
        "tokens_per_s": tokens / max(seconds, 1e-9),
        "steps": trainer.state.global_step,
        "tokens_seen": trainer.state.num_input_tokens_seen,
        "world_size": trainer.args.world_size,
    }


def save_run(
    trainer: DiffusionTrainer,
    train_metrics: dict,
    checkpoint: str | None,
    directory: Path,
    save: Callable[[object, Path, dict | None], None],
    info_first: dict,
    info_last: dict,
) -> None:
    """The tail every run shares: on the main process, `save(model, staging, state_dict)` fills
    `directory` atomically and run_info.json gets `info_first`, the `run_summary`, then `info_last`;
    every process then waits for it. `state_dict` is the model's whole state dict under FSDP (each
    process holds a shard, and all take part in gathering it), else None: the model's own."""
    state_dict = trainer.accelerator.get_state_dict(trainer.model) if trainer.is_fsdp_enabled else None
    if trainer.is_world_process_zero():
        model = trainer.accelerator.unwrap_model(trainer.model)
        with atomic_directory(directory) as staging:
            save(model, staging, state_dict)
        info = info_first | run_summary(trainer, train_metrics, checkpoint) | info_last
        write_json(directory.parent / "run_info.json", info)
    trainer.accelerator.wait_for_everyone()


@dataclass
class TrainingRun:
    """A training run set up by `prepare_run`; `fit()` trains it and writes the run directory."""

    config: TrainConfig
    out: Path
    trainer: DiffusionTrainer
    tokenizer: PreTrainedTokenizerBase
    train_data: SFTData
    checkpoint: str | None = None  # the checkpoint a resumed run continues from
    adapter_init_s: float = 0.0  # time to attach (and for PiSSA, initialise) the adapter
    lock: RunLock | None = None  # held by the main process until the run is written

    @property
    def model(self):
        return self.trainer.model

    def fit(self) -> Path:
        """Train (from `checkpoint` when resuming), evaluate, save; returns the run directory."""
        try:
            return self._fit()
        finally:
            if self.lock is not None:
                self.lock.release()

    def _fit(self) -> Path:
        trainer, config = self.trainer, self.config
        if self.checkpoint is None and trainer.eval_fn is not None:
            trainer.evaluate()  # the base model's ELBO, logged at step 0
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        train_metrics = run_trainer(trainer, self.checkpoint)
        if trainer.eval_fn is not None and not evaluated_at(trainer.state, trainer.state.global_step):
            trainer.evaluate()

        def save(model, staging: Path, state_dict: dict | None) -> None:
            if config.method == "full":
                model.save_pretrained(staging, state_dict=state_dict)
            else:
                save_adapter(model, config, staging, self.out / PISSA_INITIAL_DIR, state_dict)
                save_attention(model.config, staging)
            self.tokenizer.save_pretrained(staging)

        save_run(
            trainer,
            train_metrics,
            self.checkpoint,
            self.out / ("model" if config.method == "full" else "adapter"),
            save,
            {"method": config.method, "objective": config.objective, "base": config.base},
            {
                "train_rows": self.train_data.rows,
                "truncated_rows": self.train_data.truncated,
                "adapter_init_s": self.adapter_init_s,
            },
        )
        return self.out


def prepare_run(config: TrainConfig, resume: bool = False) -> TrainingRun | None:
    """Check everything that can be wrong, load base and data, and build the Trainer; None when
    `resume` finds the run complete (it says so: nothing is left to do).

    Every bad input fails here, before the run directory is touched.
    """
    config.validate()
    out = Path(config.out)
    if not split_path(config.data, "train").is_file():
        raise DifusiError(
            f"no train.parquet in {config.data}; run `difusi prepare` or pass the prepared data directory"
        )
    test_file = split_path(config.data, "test").is_file()
    args = training_arguments(config, out, eval_steps=config.eval_steps if test_file else 0)
    final = "model" if config.method == "full" else "adapter"
    lock, start = claim_run(out, resume, final, config, args)
    if start.complete:
        return None
    try:
        return _build_run(config, out, args, start.checkpoint, lock, test_file)
    except BaseException:
        if lock is not None:
            lock.release(discard=True)
        raise


def _build_run(config: TrainConfig, out: Path, args, checkpoint, lock, test_file: bool) -> TrainingRun:
    # Frozen bases are stored in bf16 to halve their memory; weights that train stay float32
    # (bf16 then means autocast), since bf16 weights would round small updates away. The base goes
    # straight to this process's device: PiSSA's SVDs then run there, and no host copy is kept.
    frozen_bf16 = use_bf16(config.precision) and config.method != "full"
    base, tokenizer = load_model(
        config.base, device=args.device, dtype=torch.bfloat16 if frozen_bf16 else torch.float32
    )
    ids = special_token_ids(tokenizer, base.config)
    train_data = load_sft_data(config.data, "train", tokenizer, config.max_length)
    if train_data.truncated:
        logger.warning(
            "%d of %d training rows exceed max_length %d: their answers were cut (no <|eot_id|>)",
            train_data.truncated,
            train_data.rows,
            config.max_length,
        )
    test_data = None
    if test_file:
        test_data = load_sft_data(config.data, "test", tokenizer, config.max_length, limit=config.eval_rows)
    if config.method != "full":
        check_adapter_fits(base, config)

    # Under accelerate every process runs this; only the main one writes files.
    main_process = args.process_index == 0
    out.mkdir(parents=True, exist_ok=True)
    if main_process:
        config.to_yaml(out / "config.yaml")
    set_seed(config.seed)  # adapter init (and PiSSA's randomized SVD) draw from the global RNG
    initial_dir = out / PISSA_INITIAL_DIR if main_process else None
    started = time.perf_counter()
    model = base if config.method == "full" else attach_adapter(base, config, initial_dir)
    adapter_init_s = time.perf_counter() - started  # PiSSA's SVDs of every targeted layer
    trainer = DiffusionTrainer(
        model=model,
        args=args,
        train_dataset=train_data.examples,
        eval_dataset=test_data.examples if test_data else None,
        data_collator=sft_collator(ids.pad, config.answer_area),
        processing_class=tokenizer,
        callbacks=trainer_callbacks(out),
        mask_id=ids.mask,
        objective=config.objective,
        block_size=config.block_size,
        complementary_mask=config.complementary_mask,
        token_shift=config.token_shift,
        loss_normalization=config.loss_normalization,
        loraplus_ratio=config.loraplus_ratio if config.method == "loraplus" else None,
        eval_fn=elbo_eval(test_data, config) if test_data else None,
    )
    if os.environ.get("ACCELERATE_USE_FSDP", "").lower() == "true" and not trainer.is_fsdp_enabled:
        logger.warning(
            "accelerate shards with FSDP only on GPUs: these CPU processes train data-parallel (DDP) "
            "instead, to the same result without the sharding"
        )
    return TrainingRun(config, out, trainer, tokenizer, train_data, checkpoint, adapter_init_s, lock)


def elbo_eval(test_data: SFTData, config: TrainConfig):
    """Test-set negative ELBO per answer token (a causal model's exact negative log-likelihood), with
    a fixed seed so every eval is comparable; the rows are shared out over the launch's processes
    (the figure is the one a single process computes)."""

    def evaluate(model) -> dict[str, float]:
        with torch.no_grad():
            scores = score_references(
                model, test_data.examples, config.eval_mc_num, config.batch_size, config.seed, progress=False,
                processes=Processes.launched(),
            )  # fmt: skip
        return {"elbo": sum(nats for nats, _ in scores) / sum(tokens for _, tokens in scores)}

    return evaluate


def train(config: TrainConfig, resume: bool = False) -> Path:
    """Run `config` end to end and return the run directory (see the module docstring)."""
    run = prepare_run(config, resume)
    return Path(config.out) if run is None else run.fit()
