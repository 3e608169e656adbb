"""Autoregressive baseline on the LLaDA architecture: causal attention (`LLaDAConfig(causal=True)`),
next-token loss, and key/value-cached decoding, so diffusion and AR compare like for like."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from difusi.diffusion.losses import prompt_mask
from difusi.diffusion.sampler import top_p_top_k
from difusi.errors import DifusiError
from difusi.model.modeling_llada import KVCache


def next_token_loss(
    model, input_ids: torch.Tensor, prompt_lengths: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean cross-entropy of each token given those before it; prompt tokens are not scored in SFT.

    As in the diffusion SFT recipe, the answer's EOS padding is scored (the model learns to stop).
    """
    targets = input_ids[:, 1:]
    scored = torch.ones_like(targets, dtype=torch.bool)
    if prompt_lengths is not None:
        scored = ~prompt_mask(prompt_lengths - 1, targets.shape[1])
    # The head runs only where a token is scored: position i predicts token i + 1, the last nothing.
    logits = model(input_ids=input_ids, logits_positions=F.pad(scored, (0, 1))).logits
    return F.cross_entropy(logits.float(), targets[scored])


@torch.inference_mode()
def ar_generate(
    model,
    prompt: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    gen_length: int = 128,
    temperature: float = 0.0,
    stop_ids: tuple[int, ...] = (),
    generator: torch.Generator | None = None,
    top_p: float = 1.0,
    top_k: int = 0,
) -> torch.Tensor:
    """Decode `gen_length` tokens after a left-padded `prompt` [B, L]; returns [B, L + gen_length].

    One prefill pass, then one single-token pass per step over the key/value cache. Rows that have
    produced a token in `stop_ids` are filled with that row's stop token; decoding ends early when
    every row has stopped.
    """
    if not model.config.causal:
        raise DifusiError(
            "ar_generate needs a causal model (LLaDAConfig causal=True); use generate() for diffusion"
        )
    if prompt.shape[1] == 0:
        raise DifusiError("empty prompt: give at least one token")
    B, L = prompt.shape
    if L + gen_length > model.config.max_sequence_length:
        raise DifusiError(
            f"prompt ({L}) + gen_length ({gen_length}) exceeds the model's maximum "
            f"{model.config.max_sequence_length}; shorten one of them"
        )
    mask = torch.ones(B, L + gen_length, dtype=torch.long, device=prompt.device)
    if attention_mask is not None:
        mask[:, :L] = attention_mask
    out = torch.empty(B, L + gen_length, dtype=prompt.dtype, device=prompt.device)
    out[:, :L] = prompt
    cache = KVCache(model.config.n_layers)
    logits = model(prompt, attention_mask=mask[:, :L], kv_cache=cache).logits[:, -1]
    stopped = torch.zeros(B, dtype=torch.bool, device=prompt.device)
    stop_token = torch.zeros(B, dtype=prompt.dtype, device=prompt.device)
    stops = torch.tensor(stop_ids, dtype=prompt.dtype, device=prompt.device)
    for step in range(gen_length):
        token = sample_token(logits, temperature, generator, top_p, top_k)
        token = torch.where(stopped, stop_token, token)
        out[:, L + step] = token
        newly = torch.isin(token, stops) & ~stopped
        stop_token = torch.where(newly, token, stop_token)
        stopped |= newly
        if step + 1 == gen_length:
            break
        if bool(stopped.all()):
            out[:, L + step + 1 :] = stop_token[:, None]
            break
        pos = L + step
        logits = model(out[:, pos : pos + 1], attention_mask=mask, kv_cache=cache, cache_start=pos).logits[
            :, -1
        ]
    return out


def sample_token(
    logits: torch.Tensor,
    temperature: float,
    generator: torch.Generator | None,
    top_p: float = 1.0,
    top_k: int = 0,
) -> torch.Tensor:
    """Greedy at temperature 0, else a draw from softmax(logits / temperature) over the `top_p` /
    `top_k` likeliest tokens."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(top_p_top_k(logits, top_p, top_k).float() / temperature, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


@torch.inference_mode()
def answer_nll(model, example: dict) -> tuple[float, int]:
    """A causal model's summed next-token negative log-likelihood of an SFT example's answer, in nats,
    and the number of answer tokens."""
    input_ids = torch.tensor([example["input_ids"]], device=next(model.parameters()).device)
    start = example["prompt_length"]
    logits = model(input_ids[:, :-1], logits_positions=torch.arange(start - 1, input_ids.shape[1] - 1)).logits
    nll = F.cross_entropy(logits[0].float(), input_ids[0, start:], reduction="sum")
    return float(nll), input_ids.shape[1] - start
