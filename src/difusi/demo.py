"""The offline end-to-end demo: a small-scale replica of the seed's experiment on a 2-core CPU.

offline Indonesian corpus -> project tokenizer -> `demo` base pretrained (causally, then with the
diffusion loss) on plain text and general instruction tasks -> learnable Cendol-shaped tasks
(difusi.synthetic.tasks) -> prepare (TF-IDF embedder, demo-sized counts) -> full fine-tuning, LoRA, LoRA+
and PiSSA at equal steps and tokens -> evaluation of the base and each run (test set, held-out
general text) -> comparison report with paired tests. `run_speed_quality` adds the AR twin and the
sampler sweep.

It is a replica in miniature (a 1.4M-parameter LLaDA, not LLaDA-8B), so its numbers show the
pipeline learning and compare methods at this scale only. Like the seed's experiment, which adapts
a downloaded LLaDA, the demo starts from a pretrained base: difusi ships the run of
configs/demo-pretrain.yaml (src/difusi/assets/, 16 CPU minutes to rebuild) and its AR twin's, and
`pretrain=True` (`difusi demo --pretrain`) trains them here instead. Every stage writes its own
directory under OUT and is skipped when that output already exists, so a rerun (or a run after an
interruption) only does what is missing. A training stage cut short starts afresh (the demo writes
no mid-run checkpoints: each stage takes minutes).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from difusi.errors import DifusiError
from difusi.io import write_json, write_text

METHODS = ("full", "lora", "loraplus", "pissa")
# Every linear layer, the output head included ("ff_out" names the blocks' and the head's): with
# the head frozen, adapters on this small base learn about as slowly as the blocks alone do
# (experiments/README.md), so the head's low-rank update is what lets them learn the answers.
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


QUICK_DEMO = DemoConfig(
    task_rows=3_000, per_cluster=120, test_size=60, train_steps=120, general_rows=60, probe_per_kind=8,
)  # fmt: skip
SHIPPED_BASES = Path(__file__).parent / "assets"


@dataclass
class Stage:
    name: str
    output: Path  # the stage is done when this exists
    run: Callable[[], object]


def fine_tuning_runs(out: Path, config: DemoConfig) -> list[tuple[str, int, Path]]:
    """(method, seed, run directory) of every fine-tuning run, seeds seed, seed + 1, ..."""
    seeds = range(config.seed, config.seed + config.seeds)
    return [(method, seed, out / "runs" / f"{method}-seed{seed}") for method in METHODS for seed in seeds]


def run_dirs(out: Path, config: DemoConfig) -> list[Path]:
    """The base's evaluation directory, then each fine-tuning run's."""
    return [out / "runs" / "base", *(run for _, _, run in fine_tuning_runs(out, config))]


def pretraining_config(config: DemoConfig, out: Path, objective: str = "diffusion"):
    """The base's PretrainConfig (configs/demo-pretrain.yaml); `objective="ar"` gives the AR twin's."""
    from difusi.synthetic.corpus import HELD_OUT_SENTENCES
    from difusi.tuning.config import PretrainConfig

    return PretrainConfig(
        out=str(out), preset=config.preset, max_steps=config.pretrain_steps, batch_size=config.pretrain_batch_size,
        seq_len=config.pretrain_seq_len, learning_rate=config.pretrain_learning_rate,
        general_tasks=config.general_tasks, held_out=HELD_OUT_SENTENCES, objective=objective, seed=config.seed,
        ar_steps=config.pretrain_ar_steps if objective == "diffusion" else 0,
        logging_steps=max(1, config.pretrain_steps // 200), save_steps=100_000,
    )  # fmt: skip


def shipped_base(objective: str = "diffusion") -> Path:
    """The pretraining run shipped with difusi for the demo's base (`objective="ar"`: its AR twin):
    model/, config.yaml, run_info.json, metrics.jsonl. scripts/pretrain-demo-bases.sh rebuilds both."""
    return SHIPPED_BASES / ("demo-ar-base" if objective == "ar" else "demo-base")


def copy_shipped_base(pretraining) -> None:
    """Copy the shipped run of `pretraining`'s objective to `pretraining.out`, refusing one that was
    pretrained with other settings (the seed's experiment starts from a pretrained model too)."""
    from difusi.io import atomic_directory
    from difusi.tuning.config import PretrainConfig
    from difusi.tuning.run_directory import differing_setting

    source = shipped_base(pretraining.objective)
    shipped = PretrainConfig.from_yaml(source / "config.yaml")
    if differing_setting(shipped, pretraining) is not None:  # bookkeeping (out, logging) aside
        raise DifusiError(
            f"the shipped base {source.name} was pretrained with other settings than this demo's; "
            "pass --pretrain to pretrain one here"
        )
    with atomic_directory(pretraining.out) as staging:
        shutil.copytree(source, staging, dirs_exist_ok=True)


def base_stage(config: DemoConfig, out: Path, objective: str = "diffusion") -> Stage:
    """The stage that puts the base (or the AR twin's base) in `out`: pretrained here with
    `config.pretrain`, copied from the shipped run otherwise."""
    from difusi.tuning.pretrain import pretrain

    pretraining = pretraining_config(config, out, objective)
    what = "AR twin" if objective == "ar" else f"{config.preset} base"
    if config.pretrain:
        return Stage(f"pretrain the {what}", out / "model", lambda: pretrain(afresh(pretraining)))
    return Stage(f"copy the shipped {what}", out / "model", lambda: copy_shipped_base(pretraining))


def training_config(
    config: DemoConfig,
    out: Path,
    base: Path,
    data: Path,
    method: str,
    seed: int,
    objective: str = "diffusion",
):
    """One fine-tuning run's TrainConfig (configs/demo-METHOD.yaml): every method gets the same steps,
    batches, learning rate and, for the adapters, the same rank and targets."""
    from difusi.tuning.config import TrainConfig

    return TrainConfig(
        out=str(out), base=str(base), data=str(data), method=method, objective=objective,
        max_steps=config.train_steps, batch_size=config.train_batch_size, grad_accumulation=1,
        max_length=config.max_length, learning_rate=config.learning_rate, loss_normalization="token",
        target_modules=list(ADAPTER_TARGETS), dropout=0.0, warmup_ratio=0.05, eval_steps=0,
        eval_mc_num=config.eval_mc_num, eval_rows=config.test_size, seed=seed,
        logging_steps=max(1, config.train_steps // 50), save_steps=100_000,
    )  # fmt: skip


def evaluation_config(config: DemoConfig, out: Path):
    """The EvaluationConfig every demo run is evaluated with (its test set, held-out general text)."""
    from difusi.diffusion.sampler import SamplerSettings
    from difusi.evaluation.evaluate import EvaluationConfig

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


def evaluating(label: str, run: Path, base: Path, data: Path, evaluation) -> Stage:
    """Evaluate a run into run/eval: a label ending in "full" its model/, "base" the base, any other
    base + the run's adapter/."""
    from difusi.evaluation.evaluate import evaluate

    full = label.endswith("full")
    model = run / "model" if full else base
    adapter = run / "adapter" if not full and label != "base" else None
    return Stage(
        f"evaluate {run.name}",
        run / "eval" / "metrics.json",
        lambda: evaluate(
            str(model), data / "test.parquet", run / "eval", str(adapter) if adapter else None,
            label=label, config=evaluation, progress=False,
        ),
    )  # fmt: skip


def demo_stages(out: Path, config: DemoConfig) -> list[Stage]:
    """The pipeline as an ordered list of stages, each writing under `out`."""
    from difusi.data.prepare import PrepareConfig
    from difusi.evaluation.evaluate import evaluate
    from difusi.synthetic.corpus import held_out_sentences
    from difusi.synthetic.tasks import synth_tasks
    from difusi.tuning.train import train

    base = out / "base" / "model"
    data = out / "data"
    general_text = out / "general-held-out.txt"
    probe = out / "general-probe.parquet"
    evaluation = evaluation_config(config, out)
    probing = dataclasses.replace(evaluation, general_text=None)  # the probe's rows are the measure
    preparation = PrepareConfig(
        embedder="tfidf", clusters=config.clusters, per_cluster=config.per_cluster,
        strat_fraction=config.strat_fraction, test_fraction=config.test_fraction, test_size=config.test_size,
        plot_umap=False, seed=config.seed,  # UMAP's compile alone takes most of a CPU minute
    )  # fmt: skip

    def fine_tune(run: Path, method: str, seed: int) -> Stage:
        trained = run / ("model" if method == "full" else "adapter")
        training = training_config(config, run, base, data, method, seed)
        return Stage(f"fine-tune with {method} (seed {seed})", trained, lambda: train(afresh(training)))

    runs = fine_tuning_runs(out, config)
    held_out = "\n".join(held_out_sentences()[: config.general_rows]) + "\n"
    return [
        base_stage(config, out / "base"),
        Stage("generate Cendol-shaped tasks", out / "cendol", lambda: synth_tasks(out / "cendol", config.task_rows, config.seed)),
        Stage("prepare train and test sets", data, lambda: prepare_demo_data(out / "cendol", data, preparation)),
        Stage("write held-out general text", general_text, lambda: write_text(general_text, held_out)),
        Stage("write the base's probe", probe, lambda: write_probe(probe, config)),
        Stage(
            "probe the base on its general tasks", out / "base" / "probe" / "metrics.json",
            lambda: evaluate(str(base), probe, out / "base" / "probe", label="base", config=probing, progress=False),
        ),
        *(fine_tune(run, method, seed) for method, seed, run in runs),
        evaluating("base", out / "runs" / "base", base, data, evaluation),
        *(evaluating(method, run, base, data, evaluation) for method, _, run in runs),
        Stage("write the comparison report", out / "report" / "report.md", lambda: write_demo_report(out, config)),
    ]  # fmt: skip


DEMO_SPLIT_NOTE = """
## Departures from the seed's split (this demo only)

The source is `difusi synth-cendol --tasks` data: the six subsets in equal shares (the real
collection is 93% wikipedia_id), so the seed's stratified test draw on `template_name` leaves
every subset in the test set. Sizes are CPU-sized: {train} training rows ({clusters} clusters of
{per_cluster}), a {test}-row test set (the seed: 10,000 and 100), drawn from rows outside training
by the seed's procedure (stratified undersampling, fraction {test_fraction}, then a random draw).
"""


def prepare_demo_data(source: Path, data: Path, preparation) -> None:
    """`difusi prepare` on the task rows, with the demo's departures from the seed noted in the data card."""
    from difusi.data.prepare import prepare

    prepare(source, data, preparation)
    note = DEMO_SPLIT_NOTE.format(
        train=preparation.clusters * preparation.per_cluster, clusters=preparation.clusters,
        per_cluster=preparation.per_cluster, test=preparation.test_size, test_fraction=preparation.test_fraction,
    )  # fmt: skip
    card = data / "data_card.md"
    write_text(card, card.read_text(encoding="utf-8") + note)


def write_probe(path: Path, config: DemoConfig) -> None:
    """The base's probe: every general task of its pretraining, on held-out sentences it never saw."""
    import pyarrow.parquet as pq

    from difusi.io import atomic_path
    from difusi.synthetic.general import general_probe

    with atomic_path(path) as tmp:
        pq.write_table(general_probe(config.probe_per_kind, config.seed), tmp)


def probe_section(metrics: dict) -> str:
    """The report's section on the base's probe (`evaluate`'s metrics on the probe rows)."""
    from difusi.evaluation.report import markdown_table

    def cells(name: str, n: int, scores: dict) -> list[str]:
        return [name, str(n), f"{scores['exact_match']:.1f}", f"{scores['chrf_pp']:.2f}"]

    rows = [cells(kind, scores["n"], scores) for kind, scores in metrics["per_subset"].items()]
    rows.append(cells("all", metrics["n"], metrics["overall"]))
    intro = (
        "The base's own pretraining tasks (difusi.synthetic.general.GENERAL_TASKS: copy a sentence, its first "
        "or last word, the word after a given word, ...), asked about held-out sentences that neither "
        "its tokenizer nor its pretraining saw: does the base follow the chat format and copy from "
        "its prompt before any fine-tuning?"
    )
    table = markdown_table(["Task", "Rows", "Exact match %", "chrF++"], rows)
    return f"## The base on its general tasks\n\n{intro}\n\n{table}"


def write_demo_report(out: Path, config: DemoConfig) -> Path:
    """The comparison report over every run, with the base's probe appended."""
    from difusi.evaluation.report import load_groups, write_report

    report = write_report(load_groups(run_dirs(out, config)), out / "report")
    probe = json.loads((out / "base" / "probe" / "metrics.json").read_text())
    write_text(report, report.read_text(encoding="utf-8") + "\n" + probe_section(probe) + "\n")
    return report


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


def afresh(run_config):
    """`run_config`, its output directory emptied first: what is there is a run cut short."""
    shutil.rmtree(run_config.out, ignore_errors=True)
    return run_config


def run_stages(stages: list[Stage], console: Console) -> None:
    """Run each stage whose output is missing, printing its time."""
    for number, stage in enumerate(stages, 1):
        label = f"[{number}/{len(stages)}] {stage.name}"
        if stage.output.exists():
            console.print(f"{label}: done earlier, reused", style="dim")
            continue
        stage_started = time.perf_counter()
        with console.status(label):
            stage.run()
        console.print(f"{label}: {time.perf_counter() - stage_started:.0f} s")


def run_demo(out: str | Path, config: DemoConfig = DemoConfig(), console: Console | None = None) -> Path:
    """Run (or finish) the demo in `out`; print each stage's time and the headline table; return the report."""
    from difusi.evaluation.report import headline_table, load_groups

    console = console or Console()
    out = Path(out)
    check_settings(out, config)
    started = time.perf_counter()
    run_stages(demo_stages(out, config), console)
    report = out / "report" / "report.md"
    console.print(f"\nDemo finished in {time.perf_counter() - started:.0f} s. Report: {report}\n")
    console.print(headline_table(load_groups(run_dirs(out, config))), soft_wrap=True, markup=False)
    return report


def sweep_against_ar_twin(
    out: Path,
    config: DemoConfig,
    diffusion: Path | None,
    result: Path,
    limit: int | None,
    batch_sizes: tuple[int, ...],
    described: str = "Demo's fully fine-tuned diffusion model",
    block_models: dict[str, tuple[Path, Path | None]] | None = None,
    repeats: int = 1,
) -> str:
    """The sampler sweep of the diffusion model in `diffusion` (None: none) and the block-diffusion
    models in `block_models` (name -> checkpoint and adapter or None) against the demo's fine-tuned AR twin on the first `limit` test
    rows (None: all); writes speed_quality.json, .md and .png in `result`, returns the .md."""
    from difusi.evaluation.evaluate import load_test_rows
    from difusi.evaluation.speed_quality import speed_quality, write_speed_quality
    from difusi.model.loading import load_model

    rows = load_test_rows(out / "data" / "test.parquet", limit)
    ar_model, tokenizer = load_model(out / "runs" / f"ar-full-seed{config.seed}" / "model", device="cpu")
    model = load_model(diffusion, device="cpu")[0] if diffusion is not None else None
    blocks = {name: load_model(c, a, device="cpu")[0] for name, (c, a) in (block_models or {}).items()}
    gen_length = config.sweep_gen_length
    results = speed_quality(
        model, tokenizer, rows, ar_model, gen_length, config.block_length, batch_sizes,
        block_models=blocks, repeats=repeats,
    )  # fmt: skip
    header = (
        f"{described} against its AR twin: {len(rows)} test rows, "
        f"{gen_length} generated tokens, block {config.block_length}, CPU"
        if model is not None
        else f"Block diffusion against the AR twin: {len(rows)} test rows, {gen_length} generated tokens, CPU"
    )
    header += f", best of {repeats} interleaved timings." if repeats > 1 else "."
    if blocks:
        header += (
            f" Block diffusion: {', '.join(blocks)}, each fine-tuned with the block objective "
            f"(blocks of {config.block_size}) for the AR twin's {config.train_steps} steps on the same data."
        )
    return write_speed_quality(results, len(rows), result, header)


def speed_quality_stages(
    out: Path, config: DemoConfig, limit: int | None, batch_sizes: tuple[int, ...]
) -> list[Stage]:
    """The AR twin (the base's architecture made causal; pretrained, then fully fine-tuned, on the
    same data, steps and tokens as the diffusion runs), block-diffusion conversions of the AR twin's
    base and of the diffusion base (the same fine-tuning, with the block objective), and the sampler
    sweep against the AR twin."""
    from difusi.tuning.train import train

    diffusion = out / "runs" / f"full-seed{config.seed}" / "model"
    ar_base, ar_run = out / "ar-base", out / "runs" / f"ar-full-seed{config.seed}"
    result = out / "speed-quality"

    def fine_tune(label: str, run: Path, base: Path, objective: str, token_shift: bool = False) -> Stage:
        training = training_config(config, run, base, out / "data", "full", config.seed, objective=objective)
        training = dataclasses.replace(training, block_size=config.block_size, token_shift=token_shift)
        return Stage(label, run / "model", lambda: train(afresh(training)))

    block_runs = {
        "block from AR twin": out / "runs" / f"block-ar-full-seed{config.seed}",
        "block from diffusion base": out / "runs" / f"block-diffusion-full-seed{config.seed}",
    }
    block_bases = [ar_base / "model", out / "base" / "model"]
    blocks = {name: (run / "model", None) for name, run in block_runs.items()}
    return [
        base_stage(config, ar_base, objective="ar"),
        fine_tune("fine-tune the AR twin (full)", ar_run, ar_base / "model", "ar"),
        *(  # the AR twin keeps its next-token head (token shift); the diffusion base predicts in place
            fine_tune(f"fine-tune {name} (full)", run, base, "block", token_shift=base == ar_base / "model")
            for (name, run), base in zip(block_runs.items(), block_bases, strict=True)
        ),
        Stage(
            "sweep samplers against the AR twin",
            result / "speed_quality.md",
            lambda: sweep_against_ar_twin(
                out, config, diffusion, result, limit, batch_sizes, block_models=blocks
            ),
        ),
        # The block models are fast enough to meet the AR twin on every test row: intervals that decide.
        Stage(
            "block diffusion against the AR twin on every test row",
            out / "speed-quality-block" / "speed_quality.md",
            lambda: sweep_against_ar_twin(
                out,
                config,
                None,
                out / "speed-quality-block",
                None,
                batch_sizes,
                block_models=blocks,
                repeats=BLOCK_TIMING_REPEATS,
            ),
        ),
    ]


def block_method_runs(out: Path, config: DemoConfig) -> list[tuple[str, Path]]:
    """(method, run directory) of the seed's methods converting the diffusion base to block diffusion
    (the full one is also the speed-quality sweep's "block from diffusion base")."""
    return [(method, out / "runs" / f"block-diffusion-{method}-seed{config.seed}") for method in METHODS]


def block_method_stages(out: Path, config: DemoConfig) -> list[Stage]:
    """Full fine-tuning, LoRA, LoRA+ and PiSSA each convert the demo's diffusion base to block
    diffusion (the D2F question: can an adapter teach a bidirectional model block decoding?) with
    the demo's fine-tuning settings, are evaluated on its test set with the block sampler
    (threshold 0.9, `sweep_gen_length` tokens: an answer ends at its end of text), and compared in
    a report with paired verdicts; then each against the AR twin (fine-tuned here if the
    speed-quality stages have not) on every test row, speed and quality."""
    from difusi.diffusion.sampler import SamplerSettings
    from difusi.evaluation.report import load_groups, write_report
    from difusi.tuning.train import train

    base, data = out / "base" / "model", out / "data"
    gen_length = config.sweep_gen_length
    evaluation = dataclasses.replace(
        evaluation_config(config, out),
        sampler=SamplerSettings(steps=gen_length, gen_length=gen_length, block_length=gen_length, threshold=0.9),
        max_length=config.max_length + gen_length,
    )  # fmt: skip
    runs = block_method_runs(out, config)
    ar_twin = speed_quality_stages(out, config, None, (1, 8))[:2]  # its base and fine-tuning (reused)
    stages = list(ar_twin)
    for method, run in runs:
        training = training_config(config, run, base, data, method, config.seed, objective="block")
        training = dataclasses.replace(training, block_size=config.block_size)
        trained = run / ("model" if method == "full" else "adapter")
        stages.append(Stage(f"fine-tune block {method}", trained, lambda t=training: train(afresh(t))))
    stages += [evaluating(f"block {method}", run, base, data, evaluation) for method, run in runs]
    report = out / "block-report"
    stages.append(
        Stage(
            "write the block-objective report",
            report / "report.md",
            lambda: write_report(load_groups([run for _, run in runs]), report),
        )
    )
    blocks = {
        f"block {method}": (run / "model", None) if method == "full" else (base, run / "adapter")
        for method, run in runs
    }
    stages.append(
        Stage(
            "block methods against the AR twin on every test row",
            report / "against-ar-twin" / "speed_quality.md",
            lambda: sweep_against_ar_twin(
                out,
                config,
                None,
                report / "against-ar-twin",
                None,
                (1, 8),
                block_models=blocks,
                repeats=BLOCK_TIMING_REPEATS,
            ),
        )
    )
    return stages


def run_block_methods(
    out: str | Path, config: DemoConfig = DemoConfig(), console: Console | None = None
) -> Path:
    """After `run_demo` in `out`: the seed's methods on the block objective; returns the report."""
    console = console or Console()
    out = Path(out)
    if not (out / "base" / "model").exists() or not (out / "data").exists():
        raise DifusiError(f"{out} holds no finished demo; run `difusi demo --out {out}` (same options) first")
    check_settings(out, config)
    run_stages(block_method_stages(out, config), console)
    report = out / "block-report" / "report.md"
    against = out / "block-report" / "against-ar-twin" / "speed_quality.md"
    console.print(against.read_text(encoding="utf-8"), soft_wrap=True, markup=False)
    console.print(f"Block-objective report: {report}")
    return report


def run_speed_quality(
    out: str | Path,
    config: DemoConfig = DemoConfig(),
    console: Console | None = None,
    limit: int = 16,
    batch_sizes: tuple[int, ...] = (1, 8),
) -> Path:
    """After `run_demo` in `out`: the AR twin, the block conversions, the speed-quality sweep on
    `limit` test rows and the block models against the AR twin on every row; returns the last table."""
    console = console or Console()
    out = Path(out)
    if not (out / "runs" / f"full-seed{config.seed}" / "model").exists():
        raise DifusiError(f"{out} holds no finished demo; run `difusi demo --out {out}` (same options) first")
    check_settings(out, config)
    run_stages(speed_quality_stages(out, config, limit, batch_sizes), console)
    for table in (
        out / "speed-quality" / "speed_quality.md",
        out / "speed-quality-block" / "speed_quality.md",
    ):
        console.print(table.read_text(encoding="utf-8"), soft_wrap=True, markup=False)
    return table
