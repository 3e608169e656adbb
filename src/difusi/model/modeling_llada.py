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

from difusi.model.checkpoint import HUB_DOWNLOAD_KWARGS, check_checkpoint_dir, resolve_checkpoint_dir
from difusi.model.configuration_llada import LLaDAConfig


class LLaDARMSNorm(nn.Module):
    def __init__(self, size: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Normalise in float32, cast back, then scale: the reference order, which matters in bf16.
        return self.weight * F.rms_norm(x.float(), x.shape[-1:], eps=self.eps).to(x.dtype)


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


def eager_attention(q, k, v, bias, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(q k^T * scale + bias) v, spelled out: the reference SDPA must equal, and the only path
    that can return the attention weights [B, nh, T_q, T_keys]."""
    groups = q.shape[1] // k.shape[1]  # grouped-query attention: each key head serves `groups` heads
    k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
    scores = torch.matmul(q, k.transpose(2, 3)) * scale
    if bias is not None:
        scores = scores + bias
    weights = torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
    return torch.matmul(weights, v), weights


class LLaDABlock(GradientCheckpointingLayer):
    """Pre-norm block: self-attention then a SwiGLU MLP, each added to the residual."""

    def __init__(self, config: LLaDAConfig):
        super().__init__()
        # Plain attributes, read on every pass: a transformers config's attribute lookup is slow
        # enough to cost a quarter of a small model's decoding step.
        self.n_heads, self.n_kv_heads, self.head_dim = (
            config.n_heads,
            config.num_key_value_heads,
            config.head_dim,
        )
        self.scale = 1.0 / math.sqrt(config.head_dim)
        self.rope_full_precision = config.rope_full_precision
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

    def attention(self, x, cos, sin, attn_bias, kv_cache, layer, cache_start, eager, is_causal):
        B, T, d = x.shape
        q = self.q_proj(x).view(B, T, self.n_heads, self.head_dim).transpose(1, 2)  # (B, nh, T, hd)
        k = self.k_proj(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)
        q = apply_rotary_pos_emb(q, cos, sin, self.rope_full_precision)
        k = apply_rotary_pos_emb(k, cos, sin, self.rope_full_precision)
        if kv_cache is not None:
            k, v = kv_cache.update(layer, cache_start, k, v)  # (B, nkv, T_keys, hd)
        if eager:
            y, weights = eager_attention(q, k, v, attn_bias, self.scale)
        else:
            y, weights = (
                F.scaled_dot_product_attention(
                    q,
                    k,
                    v,
                    attn_mask=attn_bias,
                    is_causal=is_causal,
                    scale=self.scale,
                    enable_gqa=self.n_kv_heads != self.n_heads,
                ),
                None,
            )
        return self.attn_out(y.transpose(1, 2).reshape(B, T, d)), weights

    def forward(
        self, x, cos, sin, attn_bias=None, kv_cache=None, layer=0, cache_start=0, eager=False, is_causal=False
    ):
        """(x + attention + MLP, attention weights or None); the weights only when `eager`.
        `is_causal` asks SDPA for its own causal mask (queries and keys the same positions, no bias)."""
        attended, weights = self.attention(
            self.attn_norm(x), cos, sin, attn_bias, kv_cache, layer, cache_start, eager, is_causal
        )
        x = x + attended
        h = self.ff_norm(x)
        return x + self.ff_out(F.silu(self.ff_proj(h)) * self.up_proj(h)), weights


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
    block_size: int | None,
    query_start: int,
    query_len: int,
    key_len: int,
    materialize: bool = False,
) -> torch.Tensor | None:
    """Additive SDPA mask [B | 1, 1, T_q, T_keys]; None when nothing is hidden (a decoding step's
    queries see every key) or SDPA's own causal flag does the job (unless `materialize`: the eager
    path has no such flag).

    `attention_mask` is [B, T_keys] (1 real, 0 padded key) or, as in transformers, a 4-D
    [B, 1, T_q, T_keys] mask used as given (bool: True attends; float: added to the scores).
    Queries sit at positions [query_start, query_start + query_len), keys at [0, key_len). Causal
    hides later keys; `block_size` hides keys of later blocks (blocks of that many positions from
    position 0): bidirectional inside a block, causal across blocks.
    """
    if attention_mask is not None and attention_mask.dim() == 4:
        if attention_mask.dtype != torch.bool:
            return attention_mask.to(dtype)
        keep = attention_mask
    else:
        # Causal or block-causal structure hides a key only beyond the first query's position or block.
        last_visible = query_start if causal else math.inf
        if block_size is not None:
            last_visible = min(last_visible, (query_start // block_size + 1) * block_size - 1)
        structured = key_len - 1 > last_visible
        plain_causal = causal and query_start == 0 and query_len == key_len
        unpadded = attention_mask is None or bool(attention_mask[:, :key_len].all())
        if unpadded and (not structured or (plain_causal and not materialize)):
            return None  # nothing hidden, or SDPA's own is_causal flag does the job on its fastest path
        device = attention_mask.device if attention_mask is not None else None
        keep = torch.ones(1, 1, 1, key_len, dtype=torch.bool, device=device)
        if attention_mask is not None:
            keep = attention_mask[:, :key_len].bool()[:, None, None, :]
        if structured:
            q_pos = torch.arange(query_start, query_start + query_len, device=device)[:, None]
            k_pos = torch.arange(key_len, device=device)[None, :]
            if causal:
                keep = keep & (k_pos <= q_pos)
            if block_size is not None and not causal:  # causal already hides every later block
                keep = keep & (k_pos // block_size <= q_pos // block_size)
    # A large finite negative (not -inf) keeps all-padding rows finite, as the reference does.
    bias = torch.zeros(keep.shape, dtype=dtype, device=keep.device)
    return bias.masked_fill(~keep, torch.finfo(dtype).min)


class LLaDAModelLM(PreTrainedModel):
    """LLaDA mask predictor: `forward(input_ids, attention_mask=None).logits` is [B, T, V]."""

    config_class = LLaDAConfig
    base_model_prefix = "model"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _no_split_modules = ["LLaDABlock"]
    _supports_sdpa = True
    accepts_loss_kwargs = True  # `num_items_in_batch`: a plain Trainer's loss stays right under accumulation
    # Tied only when the config says so (weight_tying / tie_word_embeddings); LLaDA-8B is untied.
    _tied_weights_keys = {"model.transformer.ff_out.weight": "model.transformer.wte.weight"}

    def __init__(self, config: LLaDAConfig):
        config.validate_supported()
        super().__init__(config)
        self.model = LLaDAModel(config)
        self.loss_type = "ForMaskedLM"  # transformers' own masked-LM loss for `labels`
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

    def resize_token_embeddings(self, *args, **kwargs) -> nn.Embedding:
        """transformers' resize, keeping the official `embedding_size` (the row count LLaDA builds
        from) equal to the new size, so the resized model saves and loads."""
        embeddings = super().resize_token_embeddings(*args, **kwargs)
        self.config.embedding_size = self.config.vocab_size = embeddings.weight.shape[0]
        return embeddings

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        kv_cache: KVCache | None = None,
        cache_start: int = 0,
        block_size: int | None = None,
        logits_positions: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
        use_cache: bool | None = None,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> MaskedLMOutput | tuple:
        """Logits for `input_ids` [B, T] (or `inputs_embeds` [B, T, d]) at positions
        [cache_start, cache_start + T), or at `position_ids` ([T] or [B, T]) when given.

        `attention_mask` is [B, T_keys] (1 real, 0 padded) or a 4-D [B, 1, T, T_keys] mask used as
        given. With `kv_cache`, the pass writes its keys and values into the cache and attends to
        all cached positions. `block_size` (default: the config's) makes attention block-causal.
        `logits_positions` computes the output head only there, the widest layer: 1-D indices into T
        give [B, P, V] (a sampler needs logits only where it can commit); a [B, T] bool mask gives
        [N, V] for its N true positions, row by row (a loss needs them only at masked tokens).
        `labels` [B, T] give `.loss`: transformers' masked-LM cross-entropy over positions whose
        label is not -100 (the masked-diffusion losses in difusi.diffusion.losses add the 1 / p_mask
        weights). `output_hidden_states`, `output_attentions` and `return_dict` default to the
        config's; attention weights come from the eager path, which a call asking for them takes.
        One function, as transformers' own models' forward: masks, cache, layers and head in order.

        Why not transformers' names for the cache: `past_key_values` is an append-only `Cache` that
        `generate()` manages, whereas `kv_cache` is overwritten in place at `cache_start` (Fast-dLLM
        refreshes a block's keys in the middle of the sequence), so sharing the name would promise
        the wrong semantics. `logits_to_keep` also means "the last N" when an int; `logits_positions`
        takes only indices. `use_cache` is accepted and ignored: caching is the explicit `kv_cache`.
        """
        config = self.config
        output_hidden_states = (
            config.output_hidden_states if output_hidden_states is None else output_hidden_states
        )
        output_attentions = config.output_attentions if output_attentions is None else output_attentions
        return_dict = config.return_dict if return_dict is None else return_dict
        block_size = config.block_size if block_size is None else block_size
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("LLaDAModelLM.forward() takes exactly one of input_ids and inputs_embeds")
        transformer = self.model.transformer
        x = transformer.wte(input_ids) if inputs_embeds is None else inputs_embeds  # (B, T, d)
        T = x.shape[1]
        key_len = max(len(kv_cache), cache_start + T) if kv_cache is not None else T
        if position_ids is None:  # the common case: a table up to the last position, no host sync
            cos, sin = rotary_cos_sin(cache_start + T, config.head_dim, config.rope_theta, x.device)
            cos, sin = cos[cache_start:], sin[cache_start:]  # (T, hd)
        else:
            cos, sin = rotary_cos_sin(
                int(position_ids.max()) + 1, config.head_dim, config.rope_theta, x.device
            )
            cos, sin = cos[position_ids], sin[position_ids]  # (T, hd) or (B, T, hd)
            if cos.dim() == 3:
                cos, sin = cos[:, None], sin[:, None]  # broadcast over heads
        eager = config._attn_implementation == "eager" or bool(output_attentions)
        bias = attention_bias(
            attention_mask, x.dtype, config.causal, block_size, cache_start, T, key_len, eager
        )
        hidden_states = [x] if output_hidden_states else None
        attentions = [] if output_attentions else None
        # With no bias, SDPA's causal flag is needed only where the causal structure hides keys.
        is_causal = config.causal and bias is None and key_len > cache_start + 1
        for layer, block in enumerate(transformer.blocks):
            x, weights = block(x, cos, sin, bias, kv_cache, layer, cache_start, eager, is_causal)
            if output_hidden_states:
                hidden_states.append(x)
            if output_attentions:
                attentions.append(weights)
        if logits_positions is not None:  # the same positions of the hidden states and the labels
            index = (
                logits_positions if logits_positions.dtype == torch.bool else (slice(None), logits_positions)
            )
            x = x[index]
            labels = labels[index] if labels is not None else None
        logits = transformer.ff_out(transformer.ln_f(x))  # (B, T, V), (B, P, V) or (N, V)
        if config.scale_logits:
            logits = logits * (1.0 / math.sqrt(config.d_model))
        loss = None
        if labels is not None:
            loss = self.loss_function(logits, labels, logits.shape[-1], num_items_in_batch=num_items_in_batch)
        output = MaskedLMOutput(
            loss=loss,
            logits=logits,
            hidden_states=tuple(hidden_states) if output_hidden_states else None,
            attentions=tuple(attentions) if output_attentions else None,
        )
        return output if return_dict else output.to_tuple()

    def generate(self, *args, **kwargs):
        """Not transformers' left-to-right loop: a mask predictor fills its answer by denoising."""
        raise NotImplementedError(
            "LLaDAModelLM does not decode left to right, so transformers' generate() does not apply; "
            "call difusi.generate(model, prompt_ids, ...) or difusi.generate_text(model, tokenizer, text)"
        )

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """transformers' `from_pretrained`, with one clear line for a damaged checkpoint.

        A missing config.json, a malformed one, a config of another model type, a missing or
        truncated shard: each is an error naming the file, found before any weight is read. The
        rest is transformers' own behaviour, every argument included: missing tensors are reported
        and initialised, unexpected ones reported and dropped (`output_loading_info=True` returns
        them), mis-shaped ones refused unless `ignore_mismatched_sizes=True`. (`difusi.load_model`,
        which the command line uses, refuses an incomplete checkpoint instead.) The model keeps the
        name it was asked for (a hub id stays a hub id, not the cache folder it resolved to), so
        adapters trained on it record a base a colleague can load too.
        """
        if pretrained_model_name_or_path is None:  # a config and a state_dict, nothing on disk
            return super().from_pretrained(None, *args, **kwargs)
        hub = {key: kwargs[key] for key in HUB_DOWNLOAD_KWARGS if key in kwargs}
        path = resolve_checkpoint_dir(pretrained_model_name_or_path, **hub)
        check_checkpoint_dir(path / kwargs.get("subfolder", ""))
        loaded = super().from_pretrained(path, *args, **kwargs)
        model = loaded[0] if kwargs.get("output_loading_info") else loaded
        model.name_or_path = model.config.name_or_path = str(pretrained_model_name_or_path)
        return loaded
