"""The official LLaDA `generate()` algorithm, written out literally: the baseline for speed comparisons
(`difusi bench sampler`) and the oracle the tests check `difusi.diffusion.sampler.generate` against.

Deliberately naive, as officially: full-vocabulary softmax and float64 Gumbel noise over the whole
[B, T, V] logits at every step, a Python loop over rows for the schedule and the top-k commit, and the
official EOS/EoT confidence switch with its chained-assignment bug (above temperature 0 it
suppresses only EoT). Do not optimise this module: its value is that it follows the official code
step by step. Use `generate`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from difusi.diffusion.losses import uniform


def add_gumbel_noise(logits: torch.Tensor, temperature: float, generator=None) -> torch.Tensor:
    """exp(logits) / (-log u)^temperature in float64; the logits unchanged at temperature 0."""
    if temperature == 0:
        return logits
    logits = logits.to(torch.float64)
    noise = uniform(logits.shape, generator, logits.device, torch.float64)
    gumbel_noise = (-torch.log(noise)) ** temperature
    return logits.exp() / gumbel_noise


def get_num_transfer_tokens(mask_index: torch.Tensor, steps: int) -> torch.Tensor:
    """[B, steps]: masked count // steps per step, the remainder added to the first steps, row by row."""
    mask_num = mask_index.sum(dim=1, keepdim=True)
    base = mask_num // steps
    remainder = mask_num % steps
    num_transfer_tokens = (
        torch.zeros(mask_num.size(0), steps, device=mask_index.device, dtype=torch.int64) + base
    )
    for i in range(mask_num.size(0)):
        num_transfer_tokens[i, : remainder[i]] += 1
    return num_transfer_tokens


@torch.no_grad()
def reference_generate(
    model,
    prompt: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    steps: int = 128,
    gen_length: int = 128,
    block_length: int = 128,
    temperature: float = 0.0,
    cfg_scale: float = 0.0,
    remasking: str = "low_confidence",
    mask_id: int | None = None,
    logits_eos_inf: bool = False,
    confidence_eos_eot_inf: bool = False,
    eos_id: int | None = None,
    eot_id: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The official algorithm; token ids come from the arguments or the model config, random draws
    from `generator` (the official code uses the global RNG, as None does here)."""
    mask_id = model.config.mask_token_id if mask_id is None else mask_id
    eos_id = model.config.eos_token_id if eos_id is None else eos_id
    device = next(model.parameters()).device
    x = torch.full((prompt.shape[0], prompt.shape[1] + gen_length), mask_id, dtype=torch.long).to(device)
    x[:, : prompt.shape[1]] = prompt.clone()

    if attention_mask is not None:
        attention_mask = torch.cat(
            [
                attention_mask.to(device),
                torch.ones((prompt.shape[0], gen_length), dtype=attention_mask.dtype, device=device),
            ],
            dim=-1,
        )

    prompt_index = x != mask_id

    assert gen_length % block_length == 0
    num_blocks = gen_length // block_length

    assert steps % num_blocks == 0
    steps = steps // num_blocks

    for num_block in range(num_blocks):
        block_mask_index = (
            x[
                :,
                prompt.shape[1] + num_block * block_length : prompt.shape[1] + (num_block + 1) * block_length,
            ]
            == mask_id
        )
        num_transfer_tokens = get_num_transfer_tokens(block_mask_index, steps)
        for i in range(steps):
            mask_index = x == mask_id
            if cfg_scale > 0.0:
                un_x = x.clone()
                un_x[prompt_index] = mask_id
                x_ = torch.cat([x, un_x], dim=0)
                attention_mask_ = None
                if attention_mask is not None:
                    attention_mask_ = torch.cat([attention_mask, attention_mask], dim=0)
                logits = model(x_, attention_mask=attention_mask_).logits
                logits, un_logits = torch.chunk(logits, 2, dim=0)
                logits = un_logits + (cfg_scale + 1) * (logits - un_logits)
            else:
                logits = model(x, attention_mask=attention_mask).logits

            if logits_eos_inf:
                logits[:, :, eos_id] = -torch.inf

            logits_with_noise = add_gumbel_noise(logits, temperature, generator)
            x0 = torch.argmax(logits_with_noise, dim=-1)  # b, l

            if confidence_eos_eot_inf:
                # The official chained assignment, kept as is: EOS is set in the noisy logits, which
                # are the logits themselves only at temperature 0; above it only EoT is suppressed.
                logits_with_noise[:, :, eos_id] = logits[:, :, eot_id] = -torch.inf

            if remasking == "low_confidence":
                p = F.softmax(logits, dim=-1)
                x0_p = torch.squeeze(torch.gather(p, dim=-1, index=torch.unsqueeze(x0, -1)), -1)  # b, l
            elif remasking == "random":
                x0_p = uniform((x0.shape[0], x0.shape[1]), generator, x0.device)
            else:
                raise NotImplementedError(remasking)

            x0_p[:, prompt.shape[1] + (num_block + 1) * block_length :] = -torch.inf

            x0 = torch.where(mask_index, x0, x)
            confidence = torch.where(mask_index, x0_p, -torch.inf)

            transfer_index = torch.zeros_like(x0, dtype=torch.bool, device=x0.device)
            for j in range(confidence.shape[0]):
                _, select_index = torch.topk(confidence[j], k=num_transfer_tokens[j, i])
                transfer_index[j, select_index] = True
            x[transfer_index] = x0[transfer_index]

    return x
