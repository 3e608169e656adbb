"""Reference answers scored by whatever model is given, as `generation` decodes with whatever model is
given: a diffusion model's Monte Carlo negative ELBO (difusi.diffusion.likelihood), a block-diffusion
model's block negative ELBO, a causal model's exact negative log-likelihood."""

from __future__ import annotations

from tqdm.auto import tqdm

from difusi.autoregressive import answer_nll
from difusi.diffusion.block import block_answer_nelbo
from difusi.diffusion.likelihood import dataset_elbo
from difusi.diffusion.losses import batch_generator
from difusi.diffusion.sampler import eval_mode
from difusi.distributed import Processes, unsharded


def score_references(
    model,
    examples: list[dict],
    mc_num: int,
    batch_size: int,
    seed: int = 0,
    progress: bool = True,
    processes: Processes | None = None,
) -> list[tuple[float, int]]:
    """Per SFT example: (summed negative ELBO of its answer in nats, answer tokens scored).

    Examples are scored `batch_size` at a time, each batch from its own generator (`batch_generator`),
    so the scores depend on neither the process count nor the order batches are scored in. With
    `processes` (every process of a launch calls this), each scores its share of the batches, an
    FSDP-sharded model gathered whole for it, and every process gets all scores in order.
    A causal model's score is its exact negative log-likelihood of the answer instead; a
    block-diffusion model's, its block negative ELBO (`block_answer_nelbo`).
    """
    processes = processes or Processes()
    chunks = [
        (number, examples[start : start + batch_size])
        for number, start in enumerate(range(0, len(examples), batch_size))
    ]
    mine = processes.share(chunks)
    with unsharded(model), eval_mode(model):
        scored = [
            _score_chunk(model, chunk, mc_num, batch_size, batch_generator(seed, number))
            for number, chunk in tqdm(
                mine, desc="scoring references", unit="batch", disable=not progress or not processes.main
            )
        ]
    return [score for chunk in processes.gather(scored) for score in chunk]


def _score_chunk(
    model, chunk: list[dict], mc_num: int, batch_size: int, generator
) -> list[tuple[float, int]]:
    if model.config.causal:
        return [answer_nll(model, example) for example in chunk]
    if model.config.block_size:
        return [block_answer_nelbo(model, example, mc_num, generator) for example in chunk]
    result = dataset_elbo(model, chunk, mc_num, batch_size, generator)
    return [(example.nelbo, example.answer_tokens) for example in result.per_example]
