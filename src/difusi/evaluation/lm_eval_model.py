"""The lm-evaluation-harness model "difusi": a LLaDA checkpoint (optionally with an adapter) scored
by LLaDA's evaluation protocol.

- `loglikelihood`: the Monte Carlo estimate of `difusi.log_likelihood` (`mc_num` draws, `mc_batch_size`
  per forward pass, `cfg_scale`); exact for a one-token continuation. The greedy check (does the
  sampler, one token per step, reproduce the continuation?) runs only with `check_greedy`.
- `loglikelihood_rolling`: the same estimate summed over lm-eval's rolling windows of the text.
- `generate_until`: the sampler through `generate_answers`, each answer cut at its first stop
  sequence. The sampler options (steps, gen_length, block_length, cache, threshold ...) are model
  args; a task's generation kwargs of the same names override them.

Each request's draws are seeded from the request itself, so under `accelerate launch` (lm-eval
shares the requests out by rank and gathers the results) the scores are one process's.

Importing this module registers the model with lm-eval; `difusi lm-eval` imports it before running
lm-eval's own command line. The harness needs the `lmeval` extra (`pip install difusi[lmeval]`).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import numpy as np
import torch
from lm_eval.api.model import TemplateLM
from lm_eval.api.registry import register_model
from lm_eval.utils import get_rolling_token_windows, make_disjoint_window
from tqdm.auto import tqdm

from difusi.diffusion.block_sampler import block_generate
from difusi.diffusion.likelihood import log_likelihood
from difusi.diffusion.sampler import SamplerSettings, generate
from difusi.distributed import Processes
from difusi.errors import DifusiError
from difusi.generation import SAMPLER_FIELDS, cut_at_stop, generate_answers
from difusi.model.loading import default_device, load_model
from difusi.model.tokenizer import render_chat

log = logging.getLogger(__name__)


@register_model("difusi")
class DifusiLM(TemplateLM):
    """A LLaDA model for lm-eval. Model args: `pretrained` (checkpoint directory or hub id),
    `adapter`, `dtype`, `mc_num` (128), `mc_batch_size` (32), `check_greedy` (false), `max_length`
    (the model's), `seed` (0) and every `SamplerSettings` field (`cfg_scale` also guides the
    likelihood). lm-eval's `--batch_size` is the number of prompts per sampler call."""

    backend = "causal"  # lm-eval's pair encoding: context and continuation tokenised together

    def __init__(
        self,
        pretrained: str,
        adapter: str | None = None,
        device: str | None = None,
        dtype: str | None = None,
        mc_num: int = 128,
        mc_batch_size: int = 32,
        check_greedy: bool = False,
        max_length: int | None = None,
        batch_size: int | str = 1,
        seed: int = 0,
        **sampler: Any,
    ) -> None:
        super().__init__()
        unknown = sorted(set(sampler) - SAMPLER_FIELDS)
        if unknown:
            raise DifusiError(
                f"unknown difusi model_args {', '.join(unknown)}; use pretrained, adapter, dtype, mc_num, "
                f"mc_batch_size, check_greedy, max_length, seed or a sampler setting ({', '.join(sorted(SAMPLER_FIELDS))})"
            )
        self.sampler = SamplerSettings(**sampler)
        self.sampler.check()
        if mc_num % mc_batch_size:
            raise DifusiError(f"mc_num {mc_num} is not a multiple of mc_batch_size {mc_batch_size}")
        if not str(batch_size).isdigit() or int(batch_size) < 1:
            raise DifusiError(f"batch_size {batch_size!r} is not supported; give a positive number, e.g. 8")
        # Under `accelerate launch` each process scores its share of the requests (lm-eval splits
        # them by rank and gathers the results through the methods below).
        self.processes = Processes.launched()
        self._rank, self._world_size = self.processes.rank, self.processes.world
        if self._world_size > 1:
            device = str(self.processes.device)  # lm-eval's --device names one device for all
        self.model, self.tokenizer = load_model(pretrained, adapter, resolve_device(device), dtype)
        self._device = next(self.model.parameters()).device
        self.mc_num, self.mc_batch_size, self.check_greedy = mc_num, mc_batch_size, check_greedy
        self.max_length = max_length or self.model.config.max_sequence_length
        self.batch_size, self.seed = int(batch_size), seed

    def all_gather(self, tensor: torch.Tensor) -> torch.Tensor:
        """Every process's `tensor`, concatenated in rank order (a scalar becomes one entry each)."""
        return torch.cat(
            [part.reshape(-1, *part.shape[1:]) for part in self.processes.everyone(tensor.cpu())]
        )

    def gather_object(self, obj, dst: int = 0):
        """Every process's `obj` as a list on process `dst`, None on the others."""
        objects = self.processes.everyone(obj)
        return objects if self.rank == dst else None

    def barrier(self) -> None:
        self.processes.everyone(None)

    @property
    def eot_token_id(self) -> int:
        return self.tokenizer.eos_token_id

    @property
    def prefix_token_id(self) -> int:
        """What an empty context and the first rolling window condition on: BOS (EOS without one)."""
        return self.tokenizer.bos_token_id if self.tokenizer.bos_token_id is not None else self.eot_token_id

    @property
    def tokenizer_name(self) -> str:
        return self.tokenizer.name_or_path.replace("/", "__")

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs) -> list[int]:
        """Token ids of `string`; by default with the tokenizer's special tokens unless it already
        starts with BOS (a chat-templated prompt)."""
        if add_special_tokens is None:
            bos = self.tokenizer.bos_token
            add_special_tokens = not (bos and string.startswith(bos))
        return self.tokenizer.encode(string, add_special_tokens=add_special_tokens)

    def apply_chat_template(
        self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True
    ) -> str:
        return render_chat(chat_history, self.tokenizer, add_generation_prompt)

    def _score(self, context: list[int], continuation: list[int]) -> tuple[float, bool]:
        """Log-likelihood estimate of `continuation` after `context` (cut from the left to fit
        max_length) and whether greedy decoding gives it (False unless check_greedy)."""
        if not continuation:
            return 0.0, True
        room = self.max_length - len(continuation)
        if room < 1:
            raise DifusiError(
                f"a continuation of {len(continuation)} tokens leaves no room for its context in "
                f"max_length {self.max_length}; raise max_length"
            )
        context = context[-room:]
        value = log_likelihood(
            self.model, context, continuation, self.mc_num, self.mc_batch_size,
            self.sampler.cfg_scale, generator=request_generator(self.seed, context, continuation),
        )  # fmt: skip
        return value, self.check_greedy and self._is_greedy(context, continuation)

    def _is_greedy(self, context: list[int], continuation: list[int]) -> bool:
        """LLaDA's greedy check: the sampler at temperature 0, committing one token per step over a
        single block of the continuation's length, reproduces it."""
        length = len(continuation)
        prompt = torch.tensor([context], device=self._device)
        if self.model.config.block_size:  # block by block, one token per pass
            output = block_generate(self.model, prompt, gen_length=length, threshold=None)
        else:
            output = generate(
                self.model, prompt, steps=length, gen_length=length, block_length=length,
                temperature=0.0, cfg_scale=self.sampler.cfg_scale,
            )  # fmt: skip
        return output[0, len(context) :].tolist() == continuation

    def _loglikelihood_tokens(
        self, requests, disable_tqdm: bool = False, **kwargs
    ) -> list[tuple[float, bool]]:
        results = []
        for pair, context, continuation in tqdm(requests, desc="loglikelihood", disable=disable_tqdm):
            result = self._score(context, continuation)
            self.cache_hook.add_partial("loglikelihood", pair, result)
            results.append(result)
        return results

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        """Each text's log-likelihood: the sum over lm-eval's disjoint rolling windows of at most
        max_length tokens, the first conditioned on BOS, each later one on the token before it."""
        results = []
        for request in tqdm(requests, desc="loglikelihood_rolling", disable=disable_tqdm):
            (text,) = request.args
            windows = get_rolling_token_windows(
                self.tok_encode(text, add_special_tokens=False), self.prefix_token_id,
                max_seq_len=self.max_length - 1, context_len=1,
            )  # fmt: skip
            total = sum(self._score(*make_disjoint_window(window))[0] for window in windows)
            self.cache_hook.add_partial("loglikelihood_rolling", (text,), total)
            results.append(total)
        return results

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        """One sampler answer per request, cut at the first of its `until` sequences. Requests that
        share sampler settings are generated together, `batch_size` prompts per sampler call."""
        groups: dict[SamplerSettings, list[int]] = {}
        plans = []
        for index, request in enumerate(requests):
            context, gen_kwargs = request.args
            settings = dataclasses.replace(
                self.sampler, **{key: value for key, value in gen_kwargs.items() if key in SAMPLER_FIELDS}
            )
            settings.check()
            until = gen_kwargs.get("until") or []
            plans.append((self._fit_prompt(self.tok_encode(context), settings.gen_length), until))
            groups.setdefault(settings, []).append(index)
        results = [""] * len(requests)
        for settings, indices in groups.items():
            answers = generate_answers(
                self.model, self.tokenizer, [plans[i][0] for i in indices], settings, self.batch_size,
                self.seed, progress=not disable_tqdm,
            )  # fmt: skip
            for index, (answer, _) in zip(indices, answers, strict=True):
                until = plans[index][1]
                results[index], _ = cut_at_stop(answer, [until] if isinstance(until, str) else until)
                self.cache_hook.add_partial("generate_until", requests[index].args, results[index])
        return results

    def _fit_prompt(self, prompt: list[int], gen_length: int) -> list[int]:
        """The prompt's last tokens that leave room for a `gen_length`-token answer in max_length."""
        room = self.max_length - gen_length
        if room < 1:
            raise DifusiError(
                f"gen_length {gen_length} leaves no room for a prompt in max_length {self.max_length}"
            )
        return prompt[-room:]


def request_generator(seed: int, context: list[int], continuation: list[int]) -> torch.Generator:
    """The Monte Carlo draws of one scored request, seeded by the request itself: its estimate then
    depends neither on the requests scored before it nor on which process scores it."""
    key = [seed, len(context), *context, *continuation]
    return torch.Generator().manual_seed(
        int(np.random.SeedSequence(key).generate_state(1, np.uint64)[0]) >> 1
    )


def resolve_device(device: str | None) -> torch.device:
    """The requested device, or the default one when none is named or a named GPU is absent (lm-eval's
    command line asks for cuda:0 unless told otherwise)."""
    if device is None:
        return default_device()
    if device.startswith("cuda") and not torch.cuda.is_available():
        log.warning("device %s is not available; using %s", device, default_device())
        return default_device()
    return torch.device(device)
