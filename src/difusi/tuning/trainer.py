"""A small transformers.Trainer subclass: the masked-diffusion (or AR baseline) loss, LoRA+ groups, and
metrics.jsonl.

Everything else (data order, checkpoints and resume, gradient accumulation, mixed precision,
distributed training through accelerate) is the library's.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from transformers import Trainer, TrainerCallback

from difusi.autoregressive import next_token_loss
from difusi.diffusion.block import block_diffusion_loss
from difusi.diffusion.losses import pretraining_loss, sft_loss
from difusi.errors import DifusiError
from difusi.io import write_text

# Optimizer parameter groups, in the order each builder creates them, named for metrics.jsonl.
TRAINER_GROUPS = ("decay", "no_decay")
LORAPLUS_GROUPS = ("lora_A", "embedding", "lora_B", "lora_B_no_decay")


def noise_generator(seed: int, global_step: int, micro_batch: int) -> torch.Generator:
    """The masking-noise generator of one micro-batch, a pure function of where training stands.

    Keyed on the optimizer step rather than a running stream, so a resumed run draws exactly the
    noise the uninterrupted run drew; keyed on the micro-batch's place in the step's global batch
    (accumulation index x processes + rank), so the same global batch draws the same noise however
    it is split over processes and accumulation: 2 processes with accumulation 1 train as 1 process
    with accumulation 2 (the same rows in the same micro-batches, in the data order accelerate deals).
    """
    # The trailing 0 keeps the streams of one-process runs made before the key was the place.
    key = [seed, global_step, micro_batch, 0]
    state = np.random.SeedSequence(key).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state) >> 1)


class DiffusionTrainer(Trainer):
    """Trainer whose loss is LLaDA's: `sft_loss` for batches with `prompt_lengths`, else `pretraining_loss`.

    `objective="ar"` trains the autoregressive baseline instead: the model's config turns causal (so
    it is saved as a causal checkpoint) and the loss is `next_token_loss`, on the answer in SFT
    batches and on every token otherwise. `ar_steps=N` does that for the first N optimizer steps
    only, then turns the model bidirectional for the diffusion loss (an AR warm start).
    `objective="block"` trains block diffusion (`block_diffusion_loss`, blocks of `block_size`,
    `complementary_mask`); the model's config records the block size.

    `loraplus_ratio` (set for LoRA+) makes create_optimizer build peft's LoRA+ groups, so the
    optimizer is created inside the Trainer as FSDP requires. `eval_fn(model) -> dict` replaces
    the default evaluation loop (the test-set ELBO). Its `TrainingClock` callback adds wall_time_s,
    tokens_per_s and "lr/<group>" for every parameter group to the logs.
    """

    def __init__(
        self,
        *args,
        mask_id: int,
        objective: str = "diffusion",
        ar_steps: int = 0,
        block_size: int = 4,
        complementary_mask: bool = True,
        token_shift: bool = False,
        loss_normalization: str = "answer_length",
        loraplus_ratio: float | None = None,
        eval_fn=None,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.mask_id = mask_id
        self.objective = objective
        self.ar_steps = ar_steps
        if objective == "ar" and not self.model.config.causal:
            if hasattr(self.model, "peft_config"):
                # The adapter would be reloaded onto the bidirectional base it was not trained for.
                raise DifusiError(
                    "--objective ar with an adapter needs a causal base; pretrain one with "
                    "`difusi pretrain --objective ar` or use --method full"
                )
            self.model.config.causal = True  # saved with the model: a causal checkpoint
        if objective == "block":  # saved with the model (or the adapter): a block-diffusion checkpoint
            config = self.model.config
            config.causal, config.block_size, config.token_shift = False, block_size, token_shift
        self.block_size = block_size
        self.complementary_mask = complementary_mask
        self.token_shift = token_shift
        self.loss_normalization = loss_normalization
        self.loraplus_ratio = loraplus_ratio
        self.eval_fn = eval_fn
        # Our loss is a mean per micro-batch: the Trainer must divide it by the accumulation steps.
        self.model_accepts_loss_kwargs = False
        self._micro = (-1, 0)  # (global step, micro-batches seen within it)
        self.clock = TrainingClock()
        self.add_callback(self.clock)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        input_ids = inputs["input_ids"]
        generator = self._next_noise_generator()
        causal = self.objective == "ar" or self.state.global_step < self.ar_steps
        if self.ar_steps:  # a function of the step, so a resumed run switches where the first did
            self.model.config.causal = causal
        if causal:
            loss = next_token_loss(model, input_ids, inputs.get("prompt_lengths"))
        elif self.objective == "block":
            loss = block_diffusion_loss(
                model, input_ids, self.mask_id, self.block_size, inputs.get("prompt_lengths"), generator,
                self.complementary_mask, self.loss_normalization, self.token_shift,
            )  # fmt: skip
        elif "prompt_lengths" in inputs:
            loss = sft_loss(
                model, input_ids, inputs["prompt_lengths"], self.mask_id, generator, self.loss_normalization
            )
        else:
            loss = pretraining_loss(model, input_ids, self.mask_id, generator)
        return (loss, None) if return_outputs else loss

    def _next_noise_generator(self) -> torch.Generator:
        """Advance the micro-batch position and return its noise generator."""
        step = self.state.global_step
        micro = self._micro[1] + 1 if self._micro[0] == step else 0
        self._micro = (step, micro)
        return noise_generator(self.args.seed, step, micro * self.args.world_size + self.args.process_index)

    def create_optimizer(self, model=None):
        if self.optimizer is None and self.loraplus_ratio is not None:
            from peft.optimizers import create_loraplus_optimizer

            optimizer_cls, kwargs = self.get_optimizer_cls_and_kwargs(self.args, self.model)
            kwargs.pop("lr", None)
            self.optimizer = create_loraplus_optimizer(
                self.model,
                optimizer_cls,
                lr=self.args.learning_rate,
                loraplus_lr_ratio=self.loraplus_ratio,
                loraplus_weight_decay=self.args.weight_decay,
                **kwargs,
            )
            names = LORAPLUS_GROUPS
        else:
            names = TRAINER_GROUPS
        optimizer = super().create_optimizer(model)
        for name, group in zip(names, optimizer.param_groups, strict=False):
            group.setdefault("name", name)
        return optimizer

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix="eval"):
        if self.eval_fn is None:
            return {}
        was_training = self.model.training
        self.model.eval()
        metrics = {f"{metric_key_prefix}_{k}": v for k, v in self.eval_fn(self.model).items()}
        self.model.train(was_training)
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics

    def log(self, logs, start_time=None):
        super().log(self.clock.annotate(logs, self.state), start_time)


class TrainingClock(TrainerCallback):
    """A run's bookkeeping for its logs: wall time (continued across a resume), tokens per second
    between logs, and the learning rate of every parameter group at the logged step."""

    def __init__(self):
        self.start: float | None = None  # None until training starts (the base model's eval logs 0)
        self.last_log = (0.0, 0)  # (time, tokens seen) at the previous training log
        self.session_start_tokens = 0
        self.step_lrs: dict[str, float] = {}

    def on_train_begin(self, args, state, control, **kwargs):
        # A resumed run continues the wall clock of the run it resumes.
        offset = max((entry.get("wall_time_s", 0.0) for entry in state.log_history), default=0.0)
        now = time.perf_counter()
        self.start = now - offset
        self.last_log = (now, state.num_input_tokens_seen)
        self.session_start_tokens = state.num_input_tokens_seen

    def on_step_begin(self, args, state, control, optimizer=None, **kwargs):
        # The rates this optimizer step uses (the scheduler has moved on by the time it is logged).
        groups = [(g.get("name", str(i)), g) for i, g in enumerate(optimizer.param_groups)]
        self.step_lrs = {f"lr/{name}": g["lr"] for name, g in groups if g["params"]}

    def session_tokens(self, state) -> int:
        """Tokens (all processes) trained on since this process started training."""
        return state.num_input_tokens_seen - self.session_start_tokens

    def annotate(self, logs: dict, state) -> dict:
        """`logs` with wall_time_s and, on a training log, tokens_per_s and flat "lr/<group>" keys
        (TensorBoard takes them as scalars)."""
        if self.start is None:
            logs["wall_time_s"] = 0.0
            return logs
        now = time.perf_counter()
        logs["wall_time_s"] = now - self.start
        if "loss" in logs:
            last_time, last_tokens = self.last_log
            logs["tokens_per_s"] = (state.num_input_tokens_seen - last_tokens) / max(now - last_time, 1e-9)
            self.last_log = (now, state.num_input_tokens_seen)
            logs |= self.step_lrs
        return logs


def evaluated_at(state, step: int) -> bool:
    """The run's log holds a test-set evaluation at optimizer step `step`."""
    return any(entry.get("step") == step and "eval_elbo" in entry for entry in state.log_history)


class MetricsCallback(TrainerCallback):
    """Appends one JSON line per training or eval log to `path` (main process only).

    On resume, lines past the checkpoint's step are dropped first: the resumed run logs them again.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero or not self.path.exists() or state.global_step == 0:
            return  # a fresh start: the file holds only this run's lines
        # The checkpoint's step keeps its lines, except an eval logged after the checkpoint was saved.
        evals_kept = int(evaluated_at(state, state.global_step))
        kept = []
        for line in self.path.read_text().splitlines():
            record = json.loads(line)
            if record["step"] == state.global_step and "eval_elbo" in record:
                if evals_kept == 0:
                    continue
                evals_kept -= 1
            if record["step"] <= state.global_step:
                kept.append(line)
        write_text(self.path, "".join(line + "\n" for line in kept))

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero:
            return
        record = {"step": state.global_step, "epoch": state.epoch}
        if "loss" in logs:
            record["loss"] = logs["loss"]
            record["lr"] = {k.removeprefix("lr/"): v for k, v in logs.items() if k.startswith("lr/")}
            record["tokens_per_s"] = logs.get("tokens_per_s")
            record["tokens_seen"] = state.num_input_tokens_seen
        if "eval_elbo" in logs:
            record["eval_elbo"] = logs["eval_elbo"]
        if len(record) == 2:  # neither a training nor an eval entry (e.g. the closing summary)
            return
        record["wall_time_s"] = logs.get("wall_time_s")
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
