"""Evaluate a base model, or a base plus a PEFT adapter, on the prepared test set.

For each test row: render the user prompt with the LLaDA chat template, generate an answer with
the masked-diffusion sampler (batched, left-padded), decode it up to EOS / end of turn, and
estimate the negative ELBO of the reference answer. A causal checkpoint (the `--objective ar`
baseline) decodes with key/value-cached autoregressive decoding instead, and its reference score is
the exact negative log-likelihood (which the diffusion ELBO bounds from above). Metrics are reported overall and per
`subset_name`; `OUT/generations.jsonl` keeps every row, `OUT/metrics.json` the scores.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyarrow.parquet as pq
import torch
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from difusi.data.chat_format import build_sft_example, render_chat
from difusi.diffusion.sampler import SamplerSettings
from difusi.errors import DifusiError
from difusi.evaluation.metrics import score_rows
from difusi.generation import generate_answers
from difusi.io import read_json, write_json, write_jsonl
from difusi.model.loading import load_model

TEST_COLUMNS = ("subset_name", "template_name", "input", "output")


@dataclass(frozen=True)
class EvaluationConfig:
    """How a model is evaluated: sampler, batching, Monte Carlo draws and length limit."""

    sampler: SamplerSettings = field(default_factory=SamplerSettings)
    batch_size: int = 8
    # Monte Carlo draws per reference answer for the ELBO (the official estimator's default).
    mc_num: int = 128
    # The seed's maximum sequence length: prompt plus answer, longer prompts are truncated.
    max_length: int = 512
    limit: int | None = None
    # Seeds the sampler's draws and the Monte Carlo ELBO draws.
    seed: int = 0


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


@dataclass(frozen=True)
class FittedPrompt:
    """A user message as the model sees it (possibly cut) and its rendered one-turn prompt's token ids."""

    content: str
    ids: list[int]
    truncated: bool


def fit_prompt(tokenizer: PreTrainedTokenizerBase, content: str, max_tokens: int) -> FittedPrompt:
    """Render a one-turn prompt, cutting the user message from its end until it fits `max_tokens`.

    The chat markup is kept whole, so the model still sees a well-formed turn.
    """
    truncated = False
    while True:
        ids = tokenizer.encode(
            render_chat([{"role": "user", "content": content}], tokenizer), add_special_tokens=False
        )
        if len(ids) <= max_tokens:
            return FittedPrompt(content, ids, truncated)
        content_ids = tokenizer.encode(content.strip(), add_special_tokens=False)
        overflow = len(ids) - max_tokens
        if overflow >= len(content_ids):
            raise DifusiError(
                f"the chat markup alone exceeds {max_tokens} prompt tokens; raise --max-length or lower --gen-length"
            )
        # Re-tokenising the cut text can merge differently at the cut, hence the loop.
        content = tokenizer.decode(content_ids[: len(content_ids) - overflow])
        truncated = True


def score_references(
    model, examples: list[dict], mc_num: int, batch_size: int, seed: int = 0, progress: bool = True
) -> list[tuple[float, int]]:
    """Per SFT example: (summed negative ELBO of its answer in nats, answer tokens scored).

    Examples are scored `batch_size` at a time (for the progress bar) from one seeded generator.
    A causal model's score is its exact negative log-likelihood of the answer instead.
    """
    from difusi.diffusion.likelihood import dataset_elbo

    if model.config.causal:
        return [
            answer_nll(model, example)
            for example in tqdm(examples, desc="scoring references", unit="row", disable=not progress)
        ]

    generator = torch.Generator().manual_seed(seed)
    scores = []
    chunks = [examples[start : start + batch_size] for start in range(0, len(examples), batch_size)]
    for chunk in tqdm(chunks, desc="scoring references", unit="batch", disable=not progress):
        result = dataset_elbo(model, chunk, mc_num, batch_size, generator)
        scores += [(example.nelbo, example.answer_tokens) for example in result.per_example]
    return scores


@torch.inference_mode()
def answer_nll(model, example: dict) -> tuple[float, int]:
    """A causal model's summed next-token negative log-likelihood of an SFT example's answer, in nats,
    and the number of answer tokens."""
    input_ids = torch.tensor([example["input_ids"]], device=next(model.parameters()).device)
    start = example["prompt_length"]
    logits = model(input_ids[:, :-1], logits_positions=torch.arange(start - 1, input_ids.shape[1] - 1)).logits
    nll = torch.nn.functional.cross_entropy(logits[0].float(), input_ids[0, start:], reduction="sum")
    return float(nll), input_ids.shape[1] - start


def summarize(rows: list[dict]) -> tuple[dict, dict]:
    """Metrics over all rows and per subset_name (each with its row count `n`)."""
    by_subset: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_subset[row["subset_name"]].append(row)
    per_subset = {name: {"n": len(group), **score_rows(group)} for name, group in sorted(by_subset.items())}
    return score_rows(rows), per_subset


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
    """Evaluate `base` (+ `adapter`) on `data`; write OUT/generations.jsonl and OUT/metrics.json; return the metrics."""
    config = config or EvaluationConfig()
    started = time.perf_counter()
    max_prompt = config.max_length - config.sampler.gen_length
    if max_prompt < 1:
        raise DifusiError(
            f"--gen-length {config.sampler.gen_length} leaves no room for a prompt in --max-length "
            f"{config.max_length}; raise --max-length"
        )
    rows = load_test_rows(data, config.limit)
    model, tokenizer = load_model(base, adapter)
    fitted = [fit_prompt(tokenizer, row["input"], max_prompt) for row in rows]
    generation_started = time.perf_counter()
    answers = generate_answers(
        model,
        tokenizer,
        [prompt.ids for prompt in fitted],
        config.sampler,
        config.batch_size,
        config.seed,
        progress,
    )
    generated = time.perf_counter()

    # The reference is scored after the same (possibly truncated) prompt the model answered.
    examples = [
        build_sft_example(tokenizer, prompt.content, row["output"], config.max_length)
        for row, prompt in zip(rows, fitted, strict=True)
    ]
    scores = score_references(model, examples, config.mc_num, config.batch_size, config.seed, progress)
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
    }
    out = Path(out)
    write_jsonl(out / "generations.jsonl", records)
    write_json(out / "metrics.json", metrics)
    return metrics
