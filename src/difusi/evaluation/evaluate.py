"""Evaluate a base model, or a base plus a PEFT adapter, on the prepared test set.

For each test row: render the user prompt with the LLaDA chat template, generate an answer with
the masked-diffusion sampler (batched, left-padded), decode it up to EOS / end of turn, and
estimate the negative ELBO of the reference answer. A causal checkpoint (the `--objective ar`
baseline) decodes with key/value-cached autoregressive decoding instead, and its reference score
is the exact negative log-likelihood (which the diffusion ELBO bounds from above). Metrics are
reported overall and per `subset_name`; `OUT/generations.jsonl` keeps every row, `OUT/metrics.json`
the scores.

Answers are kept as they are made (difusi.evaluation.journal): a killed evaluation relaunched with
the same arguments generates only the rows it had left. Under `accelerate launch` the processes
share the batches, answers and scores as one process makes them; the main process writes.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

import pyarrow.parquet as pq
from transformers import PreTrainedTokenizerBase

from difusi.config import Config, nested, option
from difusi.data.chat_format import build_sft_example
from difusi.diffusion.sampler import SamplerSettings
from difusi.distributed import Processes
from difusi.errors import DifusiError
from difusi.evaluation.journal import AnswerJournal, file_identity
from difusi.evaluation.metrics import NELBO_PER_TOKEN, score_rows
from difusi.generation import fit_prompt, generate_answers
from difusi.io import read_json, write_json, write_jsonl
from difusi.model.loading import load_model
from difusi.scoring import score_references

TEST_COLUMNS = ("subset_name", "template_name", "input", "output")


@dataclass(frozen=True)
class EvaluationConfig(Config):
    """How a model is evaluated: sampler, batching, Monte Carlo draws and length limit.

    Its fields are `difusi evaluate`'s options and the keys of its YAML (configs/evaluate-llada8b.yaml);
    the sampler's fields are flattened into the same mapping (`steps: 128`, `--steps 128`).
    """

    sampler: SamplerSettings = nested(SamplerSettings, "the diffusion sampler's settings")
    batch_size: int = option(8, "rows per generation batch")
    # The official estimator's default.
    mc_num: int = option(128, "Monte Carlo draws per reference for the ELBO")
    # The seed's maximum sequence length.
    max_length: int = option(512, "prompt + answer tokens; longer prompts are cut")
    limit: int | None = option(None, "evaluate only the first N test rows (None: all)")
    seed: int = option(0, "seed of the sampler and Monte Carlo ELBO draws")
    general_text: str | None = option(
        None,
        "held-out general text, one document a line: its NELBO before and after fine-tuning shows forgetting",
    )


def load_test_rows(path: str | Path, limit: int | None = None) -> list[dict]:
    """Test rows from a prepared `test.parquet`, each with its row index as `id`."""
    path = Path(path)
    if not path.is_file():
        raise DifusiError(
            f"test data {path} does not exist; pass the test.parquet written by `difusi prepare`"
        )
    table = pq.read_table(path)
    missing = [name for name in TEST_COLUMNS if name not in table.column_names]
    if missing:
        raise DifusiError(
            f"{path} lacks column {missing[0]!r}; pass the test.parquet written by `difusi prepare`"
        )
    rows = table.select(list(TEST_COLUMNS)).to_pylist()
    if limit is not None:
        rows = rows[:limit]
    if not rows:
        raise DifusiError(f"{path} holds no test rows; prepare a non-empty test set")
    return [{"id": index, **row} for index, row in enumerate(rows)]


def summarize(rows: list[dict]) -> tuple[dict, dict]:
    """Metrics over all rows and per subset_name (each with its row count `n`)."""
    by_subset: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_subset[row["subset_name"]].append(row)
    per_subset = {name: {"n": len(group), **score_rows(group)} for name, group in sorted(by_subset.items())}
    return score_rows(rows), per_subset


def score_general_text(
    model, tokenizer: PreTrainedTokenizerBase, config: EvaluationConfig, processes: Processes | None = None
) -> list[dict]:
    """Per document of `config.general_text`: its summed negative ELBO as plain text after BOS (no
    chat template: the text the model was pretrained on), cut to `max_length` tokens; shared over
    `processes` as `score_references` shares."""
    path = Path(config.general_text)
    if not path.is_file():
        raise DifusiError(f"general text {path} does not exist; pass a text file with one document a line")
    documents = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not documents:
        raise DifusiError(f"{path} holds no text; pass a file with one document a line")
    bos = [tokenizer.bos_token_id]
    examples = [
        {
            "input_ids": (bos + tokenizer.encode(text, add_special_tokens=False))[: config.max_length],
            "prompt_length": 1,
        }
        for text in documents
    ]
    scores = score_references(
        model, examples, config.mc_num, config.batch_size, config.seed, progress=False, processes=processes
    )
    return [
        {"id": index, "nelbo": nelbo, "reference_tokens": tokens}
        for index, (nelbo, tokens) in enumerate(scores)
    ]


def default_label(adapter: str | None) -> str:
    """`base` without an adapter; else the training run's method (from run_info.json) or the adapter dir's name."""
    if adapter is None:
        return "base"
    run_info = Path(adapter).parent / "run_info.json"
    if run_info.is_file():
        return str(read_json(run_info).get("method", Path(adapter).parent.name))
    return Path(adapter).name


def evaluate(
    base: str,
    data: str | Path,
    out: str | Path,
    adapter: str | None = None,
    label: str | None = None,
    config: EvaluationConfig | None = None,
    progress: bool = True,
) -> dict:
    """Evaluate `base` (+ `adapter`) on `data`; write OUT/generations.jsonl and OUT/metrics.json; return the metrics.

    One function for the evaluation's steps in order (fit prompts, continue or start the journal,
    answer, score references and general text, write), so a reader sees what a relaunch repeats.
    """
    config = config or EvaluationConfig()
    started = time.perf_counter()
    max_prompt = config.max_length - config.sampler.gen_length
    if max_prompt < 1:
        raise DifusiError(
            f"--gen-length {config.sampler.gen_length} leaves no room for a prompt in --max-length "
            f"{config.max_length}; raise --max-length"
        )
    rows = load_test_rows(data, config.limit)
    processes = Processes.launched()  # more than one under `accelerate launch`: the work is shared
    model, tokenizer = load_model(base, adapter, device=processes.device)
    fitted = [fit_prompt(tokenizer, row["input"], max_prompt) for row in rows]
    out = Path(out)
    # What the answers depend on; a relaunch with all of it the same continues a killed run.
    stamp = {"base": file_identity(base), "adapter": file_identity(adapter), "data": file_identity(data)}
    settings = {f"setting {k}": v for k, v in config.to_dict().items()}
    journal = AnswerJournal(out, stamp | settings) if processes.main else None
    generation_started = time.perf_counter()
    answers = generate_answers(
        model,
        tokenizer,
        [prompt.ids for prompt in fitted],
        config.sampler,
        config.batch_size,
        config.seed,
        progress,
        done=processes.broadcast(journal.done if journal else None),
        on_batch=journal.append if journal else None,
        processes=processes,
    )
    generated = time.perf_counter()

    # The reference is scored after the same (possibly truncated) prompt the model answered.
    examples = [
        build_sft_example(tokenizer, prompt.content, row["output"], config.max_length)
        for row, prompt in zip(rows, fitted, strict=True)
    ]
    scores = score_references(
        model, examples, config.mc_num, config.batch_size, config.seed, progress, processes
    )
    records = [
        {
            "id": row["id"],
            "subset_name": row["subset_name"],
            "template_name": row["template_name"],
            "prompt": prompt.content,
            "reference": row["output"],
            "generation": text,
            "answer_tokens": answer_tokens,
            "nelbo": nelbo,
            "reference_tokens": reference_tokens,
        }
        for row, prompt, (text, answer_tokens), (nelbo, reference_tokens) in zip(
            rows, fitted, answers, scores, strict=True
        )
    ]
    overall, per_subset = summarize(records)
    general = score_general_text(model, tokenizer, config, processes) if config.general_text else []
    if general:
        overall["general_nelbo_per_token"] = NELBO_PER_TOKEN(general)
    finished = time.perf_counter()
    metrics = {
        "label": label or default_label(adapter),
        "base": str(base),
        "adapter": str(adapter) if adapter is not None else None,
        "n": len(records),
        "overall": overall,
        "per_subset": per_subset,
        "sampler": asdict(config.sampler),
        "mc_num": config.mc_num,
        "max_length": config.max_length,
        "truncated_prompts": sum(prompt.truncated for prompt in fitted),
        "truncated_references": sum(example["truncated"] for example in examples),
        "seconds": round(finished - started, 3),
        "generation_seconds": round(generated - generation_started, 3),
        "processes": processes.world,
    }
    if journal is not None:  # the main process writes; the others only shared the work
        write_jsonl(out / "generations.jsonl", records)
        if general:
            write_jsonl(out / "general.jsonl", general)
        write_json(out / "metrics.json", metrics)
        journal.remove()
    return metrics
