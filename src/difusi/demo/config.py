"""The demo's settings: sizes of every stage, the runs they imply, and the configs each stage's
training and evaluation get (the demo-* YAML files under configs/ are the same recipes)."""

from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from difusi.diffusion.sampler import SamplerSettings
from difusi.errors import DifusiError
from difusi.evaluation.evaluate import EvaluationConfig
from difusi.io import write_json
from difusi.synthetic.corpus import HELD_OUT_SENTENCES
from difusi.tuning.config import PretrainConfig, TrainConfig

METHODS = ("full", "lora", "loraplus", "pissa")
# Every linear layer, the output head included ("ff_out" names the blocks' and the head's): with
# the head frozen, adapters on this small base learn about as slowly as the blocks alone do
# (docs/research-log.md), so the head's low-rank update is what lets them learn the answers.
ADAPTER_TARGETS = ["q_proj", "k_proj", "v_proj", "attn_out", "ff_proj", "up_proj", "ff_out"]
# Block models against the AR twin on every test row take seconds a run, so their speed is the best
# of a few interleaved timings: one run's tokens/s moves by 10-20% on a shared machine.
BLOCK_TIMING_REPEATS = 5


@dataclass(frozen=True)
class DemoConfig:
    """Sizes of every demo stage (the defaults are the full demo; see QUICK_DEMO)."""

    preset: str = "demo"
    pretrain: bool = False  # pretrain the base (and AR twin) here instead of copying the shipped ones
    pretrain_steps: int = 8000
    pretrain_batch_size: int = 32
    pretrain_seq_len: int = 64
    pretrain_learning_rate: float = 1e-3
    pretrain_ar_steps: int = 4000  # the base's AR warm start: copying transfers to the diffusion steps
    general_tasks: int = 120_000  # instruction examples in the base's pretraining mix
    task_rows: int = 6_000  # Cendol-shaped task rows written before `prepare`
    strat_fraction: float = 0.5  # leaves every subset rows outside training for the test draw
    clusters: int = 10
    per_cluster: int = 300
    test_fraction: float = 0.2
    test_size: int = 120
    train_steps: int = 600
    train_batch_size: int = 16
    max_length: int = 160
    learning_rate: float = 3e-3  # the same for every method: equal steps, tokens and learning rate
    gen_length: int = 32
    block_length: int = 32
    eval_mc_num: int = 4
    general_rows: int = 200  # held-out general sentences scored before and after (forgetting)
    probe_per_kind: int = 20  # rows per general task in the base's probe (held-out sentences)
    seed: int = 42
    seeds: int = 1  # fine-tuning runs per method (seeds seed, seed + 1, ...)
    sweep_gen_length: int = 256  # answer area of the speed-quality sweep (`run_speed_quality`)
    block_size: int = 4  # block diffusion: both bases converted with blocks of this size (4 measured best)


FULL_DEMO = DemoConfig()
QUICK_DEMO = DemoConfig(
    task_rows=3_000, per_cluster=120, test_size=60, train_steps=120, general_rows=60, probe_per_kind=8,
)  # fmt: skip
SHIPPED_BASES = Path(__file__).parent.parent / "assets"


def fine_tuning_runs(out: Path, config: DemoConfig) -> list[tuple[str, int, Path]]:
    """(method, seed, run directory) of every fine-tuning run, seeds seed, seed + 1, ..."""
    seeds = range(config.seed, config.seed + config.seeds)
    return [(method, seed, out / "runs" / f"{method}-seed{seed}") for method in METHODS for seed in seeds]


def run_dirs(out: Path, config: DemoConfig) -> list[Path]:
    """The base's evaluation directory, then each fine-tuning run's."""
    return [out / "runs" / "base", *(run for _, _, run in fine_tuning_runs(out, config))]


def pretraining_config(config: DemoConfig, out: Path, objective: str = "diffusion") -> PretrainConfig:
    """The base's PretrainConfig (configs/demo-pretrain.yaml); `objective="ar"` gives the AR twin's."""
    return PretrainConfig(
        out=str(out), preset=config.preset, max_steps=config.pretrain_steps, batch_size=config.pretrain_batch_size,
        seq_len=config.pretrain_seq_len, learning_rate=config.pretrain_learning_rate,
        general_tasks=config.general_tasks, held_out=HELD_OUT_SENTENCES, objective=objective, seed=config.seed,
        ar_steps=config.pretrain_ar_steps if objective == "diffusion" else 0,
        logging_steps=max(1, config.pretrain_steps // 200), save_steps=100_000,
    )  # fmt: skip


def training_config(
    config: DemoConfig,
    out: Path,
    base: Path,
    data: Path,
    method: str,
    seed: int,
    objective: str = "diffusion",
) -> TrainConfig:
    """One fine-tuning run's TrainConfig (configs/demo-METHOD.yaml): every method gets the same steps,
    batches, learning rate and, for the adapters, the same rank and targets."""
    return TrainConfig(
        out=str(out), base=str(base), data=str(data), method=method, objective=objective,
        max_steps=config.train_steps, batch_size=config.train_batch_size, grad_accumulation=1,
        max_length=config.max_length, learning_rate=config.learning_rate, loss_normalization="token",
        target_modules=list(ADAPTER_TARGETS), dropout=0.0, warmup_ratio=0.05, eval_steps=0,
        eval_mc_num=config.eval_mc_num, eval_rows=config.test_size, seed=seed,
        logging_steps=max(1, config.train_steps // 50), save_steps=100_000,
    )  # fmt: skip


def evaluation_config(config: DemoConfig, out: Path) -> EvaluationConfig:
    """The EvaluationConfig every demo run is evaluated with (its test set, held-out general text)."""
    return EvaluationConfig(
        sampler=SamplerSettings(
            steps=config.gen_length, gen_length=config.gen_length, block_length=config.block_length
        ),
        batch_size=16,
        mc_num=config.eval_mc_num,
        max_length=config.max_length + config.gen_length,
        general_text=str(out / "general-held-out.txt"),
        seed=config.seed,
    )


def check_settings(out: Path, config: DemoConfig) -> None:
    """Refuse to mix two demo configurations in one directory (stages would be reused wrongly).

    Only the number of seeds may grow: a rerun with more seeds adds runs beside the finished ones.
    A setting the earlier run's stamp lacks (one added to difusi since) counts as its default.
    """
    stamp = out / "demo-settings.json"
    settings = dataclasses.asdict(config)
    if stamp.is_file():
        earlier = dataclasses.asdict(DemoConfig()) | json.loads(stamp.read_text())
        if {**earlier, "seeds": 0} != {**settings, "seeds": 0}:
            raise DifusiError(
                f"{out} holds a demo run with other settings; pass another --out or delete {out}"
            )
        if earlier.get("seeds") != config.seeds and (out / "report").exists():
            shutil.rmtree(out / "report")  # the report is rewritten over every seed's runs
    out.mkdir(parents=True, exist_ok=True)
    write_json(stamp, settings)


def shipped_base(objective: str = "diffusion") -> Path:
    """The pretraining run shipped with difusi for the demo's base (`objective="ar"`: its AR twin):
    model/, config.yaml, run_info.json, metrics.jsonl. scripts/pretrain-demo-bases.sh rebuilds both."""
    return SHIPPED_BASES / ("demo-ar-base" if objective == "ar" else "demo-base")
