"""Native LLaDA: a bidirectional Llama-style mask predictor whose module tree matches the official
checkpoints name for name, so `from_pretrained` loads them with no remote code."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import MaskedLMOutput

from difusi.model.configuration_llada import LLaDAConfig


class LLaDARMSNorm(nn.Module):
    def __init__(self, size: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Normalise in float32, cast back, then scale: the reference order, which matters in bf16.
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * xf.to(x.dtype)


def rotary_cos_sin(
    seq_len: int, head_dim: int, theta: float, device: torch.device
) -> tuple[torch.Tensor, ...]:
    """float32 cos and sin tables [T, head_dim] for positions 0..T-1 (half-split layout)."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=device, dtype=torch.float) / head_dim))
    freqs = torch.outer(torch.arange(seq_len, device=device, dtype=torch.float), inv_freq)
    angles = torch.cat((freqs, freqs), dim=-1)
    return angles.cos(), angles.sin()


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary_pos_emb(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, full_precision: bool):
    """Rotate queries or keys [B, nh, T, hd]; in float32 when full_precision, as the reference does."""
    dtype = x.dtype
    if full_precision:
        x = x.float()
    return (x * cos.to(x.dtype) + rotate_half(x) * sin.to(x.dtype)).to(dtype)


class LLaDABlock(GradientCheckpointingLayer):
    """Pre-norm block: bidirectional attention then a SwiGLU MLP, each added to the residual."""

    def __init__(self, config: LLaDAConfig):
        super().__init__()
        self.config = config
        d, kv = config.d_model, config.num_key_value_heads * config.head_dim
        self.attn_norm = LLaDARMSNorm(d, config.rms_norm_eps)
        self.q_proj = nn.Linear(d, d, bias=False)
        self.k_proj = nn.Linear(d, kv, bias=False)
        self.v_proj = nn.Linear(d, kv, bias=False)
        self.attn_out = nn.Linear(d, d, bias=False)
        self.ff_norm = LLaDARMSNorm(d, config.rms_norm_eps)
        self.ff_proj = nn.Linear(d, config.ffn_size, bias=False)  # gate: SiLU applies here
        self.up_proj = nn.Linear(d, config.ffn_size, bias=False)
        self.ff_out = nn.Linear(config.ffn_size, d, bias=False)

    def attention(self, x, cos, sin, attn_bias, kv_cache=None, layer=0, cache_start=0):
        cfg = self.config
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, cfg.n_heads, cfg.head_dim).transpose(1, 2)  # (B, nh, T, hd)
        k = self.k_proj(x).view(B, T, cfg.num_key_value_heads, cfg.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(B, T, cfg.num_key_value_heads, cfg.head_dim).transpose(1, 2)
        q = apply_rotary_pos_emb(q, cos, sin, cfg.rope_full_precision)
        k = apply_rotary_pos_emb(k, cos, sin, cfg.rope_full_precision)
        if kv_cache is not None:
            k, v = kv_cache.update(layer, cache_start, k, v)  # (B, nkv, T_keys, hd)
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=attn_bias,
            is_causal=cfg.causal and attn_bias is None,  # bias is None only for plain causal passes
            scale=1.0 / math.sqrt(cfg.head_dim),
            enable_gqa=cfg.num_key_value_heads != cfg.n_heads,
        )
        return self.attn_out(y.transpose(1, 2).reshape(B, T, cfg.d_model))

    def forward(self, x, cos, sin, attn_bias=None, kv_cache=None, layer=0, cache_start=0):
        x = x + self.attention(self.attn_norm(x), cos, sin, attn_bias, kv_cache, layer, cache_start)
        h = self.ff_norm(x)
        return x + self.ff_out(F.silu(self.ff_proj(h)) * self.up_proj(h))


class KVCache:
    """Rotated keys and values of every layer for a whole sequence, [B, nkv, T, hd] each.

    A forward pass given the cache and `cache_start=s` on n tokens writes their keys and values at
    positions [s, s + n) and attends to every cached position. Positions it does not recompute keep
    the keys of an earlier pass: exact for autoregressive decoding, the approximation Fast-dLLM makes
    for diffusion (the tokens outside the current block barely change within a block).
    """

    def __init__(self, n_layers: int):
        self.keys: list[torch.Tensor | None] = [None] * n_layers
        self.values: list[torch.Tensor | None] = [None] * n_layers

    def __len__(self) -> int:
        return 0 if self.keys[0] is None else self.keys[0].shape[2]

    def update(self, layer: int, start: int, k: torch.Tensor, v: torch.Tensor):
        cached_k, cached_v = self.keys[layer], self.values[layer]
        end = start + k.shape[2]
        if cached_k is None or start == 0 and end >= cached_k.shape[2]:
            cached_k, cached_v = k, v
        elif end > cached_k.shape[2]:  # growing, as in autoregressive decoding
            cached_k = torch.cat([cached_k[:, :, :start], k], dim=2)
            cached_v = torch.cat([cached_v[:, :, :start], v], dim=2)
        else:
            cached_k[:, :, start:end] = k
            cached_v[:, :, start:end] = v
        self.keys[layer], self.values[layer] = cached_k, cached_v
        return cached_k, cached_v


class LLaDAModel(nn.Module):
    """The official `model.transformer` tree: wte, blocks, ln_f and the (untied) ff_out head."""

    def __init__(self, config: LLaDAConfig):
        super().__init__()
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(config.padded_vocab_size, config.d_model),
                blocks=nn.ModuleList(LLaDABlock(config) for _ in range(config.n_layers)),
                ln_f=LLaDARMSNorm(config.d_model, config.rms_norm_eps),
                ff_out=nn.Linear(config.d_model, config.padded_vocab_size, bias=False),
            )
        )


def attention_bias(
    attention_mask: torch.Tensor | None,
    dtype: torch.dtype,
    causal: bool,
    query_start: int,
    query_len: int,
    key_len: int,
) -> torch.Tensor | None:
    """Additive SDPA mask hiding padded keys (and later keys when causal); None when nothing is hidden.

    Queries sit at positions [query_start, query_start + query_len); keys at [0, key_len).
    """
    plain_causal = causal and query_start == 0 and query_len == key_len
    if (attention_mask is None or bool(attention_mask[:, :key_len].all())) and (not causal or plain_causal):
        return None  # SDPA's own is_causal flag (or nothing) does the job, on its fastest path
    device = attention_mask.device if attention_mask is not None else None
    keep = torch.ones(1, 1, 1, key_len, dtype=torch.bool, device=device)
    if attention_mask is not None:
        keep = attention_mask[:, :key_len].bool()[:, None, None, :]
    if causal:
        q_pos = torch.arange(query_start, query_start + query_len, device=device)
        keep = keep & (torch.arange(key_len, device=device)[None, :] <= q_pos[:, None])
    # A large finite negative (not -inf) keeps all-padding rows finite, as the reference does.
    bias = torch.zeros(keep.shape, dtype=dtype, device=device)
    return bias.masked_fill(~keep, torch.finfo(dtype).min)


class LLaDAModelLM(PreTrainedModel):
    """LLaDA mask predictor: `forward(input_ids, attention_mask=None).logits` is [B, T, V]."""

    config_class = LLaDAConfig
    base_model_prefix = "model"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _no_split_modules = ["LLaDABlock"]
    _supports_sdpa = True

    def __init__(self, config: LLaDAConfig):
        config.validate_supported()
        super().__init__(config)
        self.model = LLaDAModel(config)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.init_std
        if isinstance(module, nn.Linear | nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=std)
        elif isinstance(module, LLaDARMSNorm):
            nn.init.ones_(module.weight)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.transformer.wte

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.model.transformer.wte = value

    def get_output_embeddings(self) -> nn.Linear:
        return self.model.transformer.ff_out

    def set_output_embeddings(self, value: nn.Linear) -> None:
        self.model.transformer.ff_out = value

    def forward(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        kv_cache: KVCache | None = None,
        cache_start: int = 0,
        logits_positions: torch.Tensor | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
        use_cache: bool | None = None,
        **kwargs,
    ) -> MaskedLMOutput:
        """Logits for `input_ids` [B, T], which sit at positions [cache_start, cache_start + T).

        `attention_mask` [B, T_keys] marks real (1) and padded (0) keys. With `kv_cache`, the pass
        writes its keys and values into the cache and attends to all cached positions.
        `logits_positions` computes the output head only there, the widest layer: 1-D indices into T
        give [B, P, V] (a sampler needs logits only where it can commit); a [B, T] bool mask gives
        [N, V] for its N true positions, row by row (a loss needs them only at masked tokens).

        Why not transformers' names: `past_key_values` is an append-only `Cache` that `generate()`
        manages, whereas `kv_cache` is overwritten in place at `cache_start` (Fast-dLLM refreshes a
        block's keys in the middle of the sequence), so sharing the name would promise the wrong
        semantics. `logits_to_keep` also means "the last N" when an int; `logits_positions` takes
        only indices, and the samplers' exactness tests pin that name on their stand-in models.

        `output_attentions`, `return_dict` and `use_cache` are accepted for the transformers and peft
        code paths that pass them (attention weights are never computed, the output is always a
        `MaskedLMOutput`, caching is the explicit `kv_cache`); any other keyword is a TypeError.
        """
        if kwargs:
            name = sorted(kwargs)[0]
            hint = " (compute the loss with difusi.diffusion.losses)" if name == "labels" else ""
            raise TypeError(f"LLaDAModelLM.forward() got an unexpected keyword argument {name!r}{hint}")
        if output_attentions:
            raise TypeError("LLaDAModelLM does not return attention weights (it runs fused SDPA)")
        transformer = self.model.transformer
        T = input_ids.shape[1]
        x = transformer.wte(input_ids)  # (B, T, d)
        key_len = max(len(kv_cache), cache_start + T) if kv_cache is not None else T
        cos, sin = rotary_cos_sin(cache_start + T, self.config.head_dim, self.config.rope_theta, x.device)
        cos, sin = cos[cache_start:], sin[cache_start:]
        bias = attention_bias(attention_mask, x.dtype, self.config.causal, cache_start, T, key_len)
        hidden_states = [x] if output_hidden_states else None
        for layer, block in enumerate(transformer.blocks):
            x = block(x, cos, sin, bias, kv_cache, layer, cache_start)
            if output_hidden_states:
                hidden_states.append(x)
        if logits_positions is not None:
            x = x[logits_positions] if logits_positions.dtype == torch.bool else x[:, logits_positions]
        logits = transformer.ff_out(transformer.ln_f(x))  # (B, T, V), (B, P, V) or (N, V)
        if self.config.scale_logits:
            logits = logits * (1.0 / math.sqrt(self.config.d_model))
        return MaskedLMOutput(logits=logits, hidden_states=tuple(hidden_states) if hidden_states else None)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """Load an official-layout checkpoint (local directory or hub id); refuses incomplete ones.

        Unlike the transformers default, a missing, unexpected or mis-shaped tensor is an error
        naming the tensor, found from the safetensors headers before any weight is read. The model
        keeps the name it was asked for (a hub id stays a hub id, not the cache folder it resolved
        to), so adapters trained on it record a base a colleague can load too.
        """
        # Imported here because model.loading imports this module.
        from difusi.model.loading import check_checkpoint_dir, resolve_checkpoint_dir

        path = resolve_checkpoint_dir(pretrained_model_name_or_path, kwargs.get("revision"))
        check_checkpoint_dir(path)
        model = super().from_pretrained(path, *args, **kwargs)
        model.name_or_path = model.config.name_or_path = str(pretrained_model_name_or_path)
        return model
