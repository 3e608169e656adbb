"""Run configurations: typed dataclasses, their YAML form, and command-line overrides.

Every option exists once, as a field here; the CLI options and the YAML keys are derived from the
fields (difusi.config), so the two can never drift apart. TrainConfig defaults are the seed's
settings (max length 512, LoRA rank 8, LoRA+ ratio 16, random state 42).
"""

from __future__ import annotations

from dataclasses import dataclass

from difusi.config import Config, option
from difusi.errors import DifusiError

METHODS = ("lora", "loraplus", "pissa", "full")
OBJECTIVES = ("diffusion", "ar", "block")
PRECISIONS = ("auto", "bf16", "fp32")


@dataclass
class RunConfig(Config):
    """What every training loop shares: optimisation, precision, logging and checkpoints."""

    out: str = option("", "run directory (metrics.jsonl, run_info.json, config.yaml, checkpoints/)")
    learning_rate: float = option(1e-4, "peak learning rate")
    batch_size: int = option(4, "micro-batch size per device")
    grad_accumulation: int = option(4, "gradient accumulation steps")
    epochs: float = option(3.0, "training epochs (ignored when max_steps > 0)")
    max_steps: int = option(-1, "optimizer steps to run; -1: use epochs")
    warmup_ratio: float = option(0.03, "share of the steps spent warming the learning rate up")
    scheduler: str = option("cosine", "learning-rate schedule (a transformers SchedulerType name)")
    weight_decay: float = option(0.0, "AdamW weight decay")
    max_grad_norm: float = option(1.0, "gradient clipping norm (0: none)")
    gradient_checkpointing: bool = option(False, "recompute block activations in the backward pass")
    precision: str = option("auto", "'auto' (bf16 on GPU, fp32 on CPU), 'bf16' or 'fp32'")
    seed: int = option(42, "seed of the data order, initialisation and masking noise")
    objective: str = option(
        "diffusion",
        "'diffusion' (masked-diffusion loss), 'ar' (causal model, next-token loss: the AR baseline) or "
        "'block' (block diffusion: bidirectional inside blocks of --block-size, causal across them)",
    )
    block_size: int = option(
        4, "block size of --objective block, saved in the model's config (4 measured best on the demo)"
    )
    complementary_mask: bool = option(
        True, "--objective block: train each row with its mask and the complementary one"
    )
    token_shift: bool = option(
        False,
        "--objective block: predict each token at the position before it, as an AR model does "
        "(for a base converted from an AR checkpoint, as Fast-dLLM v2 does; saved in the config)",
    )
    logging_steps: int = option(10, "write metrics.jsonl every N steps")
    save_steps: int = option(100, "write a resumable checkpoint every N steps")

    def validate(self) -> None:
        """Reject bad settings up front, before any model or data is loaded."""
        if self.objective not in OBJECTIVES:
            raise DifusiError(f"unknown objective {self.objective!r}; choose one of {', '.join(OBJECTIVES)}")
        if self.token_shift and self.objective != "block":
            raise DifusiError("token_shift applies to --objective block only; drop --token-shift")
        if self.objective == "block" and self.block_size < 1:
            raise DifusiError(f"block size {self.block_size} must be at least 1 (the field uses 4 to 32)")
        if self.precision not in PRECISIONS:
            raise DifusiError(f"unknown precision {self.precision!r}; choose one of {', '.join(PRECISIONS)}")
        if not self.out:
            raise DifusiError("no run directory given; pass --out DIR")


@dataclass
class TrainConfig(RunConfig):
    """Everything one `difusi train` run needs; see configs/*.yaml for complete recipes."""

    base: str = option("GSAI-ML/LLaDA-8B-Instruct", "base model: checkpoint directory or hub id")
    data: str = option("", "directory holding train.parquet (and test.parquet for the eval ELBO)")
    method: str = option("lora", f"fine-tuning method: {', '.join(METHODS)}")
    loss_normalization: str = option("answer_length", "SFT loss: 'answer_length' (official) or 'token'")
    max_length: int = option(512, "longest tokenized example; longer answers are cut and counted")
    answer_area: int = option(
        0,
        "EOS-pad every answer to at least this many tokens (the sampler's gen_length, so the model "
        "learns to end an answer anywhere it will be asked to fill); 0: to the batch's longest only",
    )
    # Adapter
    rank: int = option(8, "LoRA / PiSSA rank r")
    alpha: float = option(16.0, "LoRA alpha (scale alpha / r)")
    dropout: float = option(0.05, "LoRA dropout")
    # "all-linear" (peft) takes q/k/v_proj, attn_out, ff_proj, up_proj and the block ff_out and skips
    # the output head (found through get_output_embeddings); a plain "ff_out" entry would catch it too.
    target_modules: list[str] | str = option(
        "all-linear", "modules to adapt: 'all-linear' (every block linear, not the head) or a list of names"
    )
    loraplus_ratio: float = option(16.0, "LoRA+ learning-rate ratio lr_B / lr_A (>= 1)")
    pissa_niter: int = option(16, "PiSSA randomized-SVD iterations (0: exact SVD)")
    # Evaluation
    eval_steps: int = option(50, "compute the test-set ELBO every N steps (0: only before and after)")
    eval_mc_num: int = option(8, "Monte Carlo draws per example for the eval ELBO")
    eval_rows: int = option(100, "test rows used for the eval ELBO (0: all)")

    def __post_init__(self) -> None:
        if isinstance(self.target_modules, str) and self.target_modules != "all-linear":
            self.target_modules = [name.strip() for name in self.target_modules.split(",") if name.strip()]

    def validate(self) -> None:
        if self.method not in METHODS:
            raise DifusiError(f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}")
        if self.loraplus_ratio < 1:
            raise DifusiError(
                f"LoRA+ ratio {self.loraplus_ratio} is below 1; lora_B must learn at least as fast as lora_A "
                "(use --loraplus-ratio 16, the recommended value)"
            )
        if self.rank < 1:
            raise DifusiError(f"rank {self.rank} must be at least 1")
        if not self.data:
            raise DifusiError("no training data given; pass --data DIR (a directory holding train.parquet)")
        super().validate()


@dataclass
class PretrainConfig(RunConfig):
    """Masked-diffusion pretraining from scratch of a preset model (the offline demo's base)."""

    corpus: str = option(
        "", "text file, or directory of .txt files, one document per line (default: built-in)"
    )
    preset: str = option("small", "model preset to build and train (tiny, small, demo)")
    seq_len: int = option(128, "tokens per training sequence (documents are packed, EOS between them)")
    learning_rate: float = option(1e-3, "peak learning rate")
    batch_size: int = option(32, "micro-batch size per device")
    grad_accumulation: int = option(1, "gradient accumulation steps")
    epochs: float = option(1.0, "passes over the corpus (ignored when max_steps > 0)")
    warmup_ratio: float = option(0.02, "share of the steps spent warming the learning rate up")
    weight_decay: float = option(0.1, "AdamW weight decay")
    save_steps: int = option(200, "write a resumable checkpoint every N steps")
    general_tasks: int = option(
        0,
        "instruction-formatted general tasks (copy a sentence, first/last word, ...; difusi.synthetic.general) "
        "mixed into the corpus blocks and trained with the SFT loss, so the base follows the chat "
        "format and copies from its prompt (0: plain text only)",
    )
    held_out: int = option(
        0, "leave the corpus's last N lines out of pretraining (held-out text for a forgetting measure)"
    )
    ar_steps: int = option(
        0,
        "train the first N steps causally with the next-token loss, then bidirectionally with the "
        "masked-diffusion loss: an AR warm start, as DiffuLLaMA and Dream adapt AR models (0: none)",
    )

    def validate(self) -> None:
        if self.general_tasks < 0 or self.held_out < 0 or self.ar_steps < 0:
            raise DifusiError(
                f"general_tasks ({self.general_tasks}), held_out ({self.held_out}) and ar_steps "
                f"({self.ar_steps}) must not be negative"
            )
        if self.ar_steps and self.objective == "ar":
            raise DifusiError(
                "ar_steps is a warm start for diffusion or block pretraining; drop it with --objective ar"
            )
        if self.ar_steps and 0 < self.max_steps <= self.ar_steps:
            raise DifusiError(
                f"ar_steps {self.ar_steps} leaves no step of max_steps {self.max_steps} for the diffusion "
                "loss; lower ar_steps"
            )
        super().validate()
