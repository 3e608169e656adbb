"""LLaDA configuration: reads and writes the official `config.json` unchanged (unknown keys kept)."""

from __future__ import annotations

from transformers import PretrainedConfig


class LLaDAConfig(PretrainedConfig):
    """Configuration of a LLaDA mask predictor, with the official key names.

    Defaults are LLaDA-8B's. Keys the official config carries but this implementation does not
    need (init_fn, block_group_size, precision, ...) are kept as attributes and written back.
    """

    model_type = "llada"
    # Standard transformers names, so peft, accelerate and friends find the sizes they look for.
    attribute_map = {
        "hidden_size": "d_model",
        "num_attention_heads": "n_heads",
        "num_hidden_layers": "n_layers",
        "intermediate_size": "mlp_hidden_size",
        "max_position_embeddings": "max_sequence_length",
    }

    def __init__(
        self,
        d_model: int = 4096,
        n_heads: int = 32,
        n_kv_heads: int | None = None,
        n_layers: int = 32,
        mlp_hidden_size: int | None = 12288,
        mlp_ratio: int = 4,
        activation_type: str = "silu",
        block_type: str = "llama",
        layer_norm_type: str = "rms",
        rms_norm_eps: float = 1e-5,
        include_bias: bool = False,
        rope: bool = True,
        rope_theta: float = 500000.0,
        rope_full_precision: bool = True,
        alibi: bool = False,
        scale_logits: bool = False,
        input_emb_norm: bool = False,
        weight_tying: bool = False,
        vocab_size: int = 126464,
        embedding_size: int | None = 126464,
        max_sequence_length: int = 4096,
        init_std: float = 0.02,
        mask_token_id: int = 126336,
        eos_token_id: int = 126081,
        pad_token_id: int = 126081,
        use_cache: bool = False,
        causal: bool = False,
        block_size: int | None = None,
        token_shift: bool = False,
        **kwargs,
    ):
        self.d_model = d_model
        self.n_heads = n_heads
        self.n_kv_heads = n_kv_heads
        self.n_layers = n_layers
        self.mlp_hidden_size = mlp_hidden_size
        self.mlp_ratio = mlp_ratio
        self.activation_type = activation_type
        self.block_type = block_type
        self.layer_norm_type = layer_norm_type
        self.rms_norm_eps = rms_norm_eps
        self.include_bias = include_bias
        self.rope = rope
        self.rope_theta = rope_theta
        self.rope_full_precision = rope_full_precision
        self.alibi = alibi
        self.scale_logits = scale_logits
        self.input_emb_norm = input_emb_norm
        self.vocab_size = vocab_size
        self.embedding_size = embedding_size
        self.max_sequence_length = max_sequence_length
        self.init_std = init_std
        self.mask_token_id = mask_token_id
        self.use_cache = use_cache
        # Not official keys: causal=True turns the same architecture into an autoregressive baseline;
        # block_size=B into a block-diffusion model (bidirectional inside blocks of B, causal across),
        # token_shift=True one whose logits at a position predict the next token (converted from AR).
        self.causal = causal
        self.block_size = block_size
        self.token_shift = token_shift
        # One switch under both names: the official weight_tying and transformers' tie_word_embeddings.
        self.weight_tying = kwargs.pop("tie_word_embeddings", weight_tying)
        super().__init__(
            eos_token_id=eos_token_id,
            pad_token_id=pad_token_id,
            tie_word_embeddings=self.weight_tying,
            **kwargs,
        )

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def num_key_value_heads(self) -> int:
        """The official rule: n_kv_heads, else 1 for multi-query attention, else n_heads."""
        if self.n_kv_heads is not None:
            return self.n_kv_heads
        return 1 if getattr(self, "multi_query_attention", None) else self.n_heads

    @property
    def ffn_size(self) -> int:
        """Hidden size of the MLP: mlp_hidden_size, else mlp_ratio * d_model (the official fallback)."""
        return self.mlp_hidden_size if self.mlp_hidden_size is not None else self.mlp_ratio * self.d_model

    @property
    def padded_vocab_size(self) -> int:
        """Rows of the embedding and output head (the official `embedding_size`, else `vocab_size`)."""
        return self.embedding_size or self.vocab_size

    def validate_supported(self) -> None:
        """Raise ValueError for official options this native implementation does not implement."""
        # Accepted values per key; an absent key means the official default, which is accepted.
        supported = {
            "block_type": ("llama",),
            "layer_norm_type": ("rms",),
            "activation_type": ("silu",),
            "rope": (True,),
            "alibi": (False,),
            "include_bias": (False,),
            "input_emb_norm": (False,),
            "layer_norm_with_affine": (True,),
            "bias_for_layer_norm": (None, False),
            "include_qkv_bias": (None, False),
            "attention_layer_norm": (False,),
            "block_group_size": (1,),
        }
        for key, accepted in supported.items():
            value = getattr(self, key, accepted[0])
            if value not in accepted:
                raise ValueError(
                    f"LLaDA config has {key}={value!r}; difusi implements only {key}={accepted[0]!r}"
                )
        if self.block_size is not None and self.block_size < 1:
            raise ValueError(
                f"LLaDA config has block_size={self.block_size}; use a positive block size or None"
            )
        if self.d_model % self.n_heads or self.n_heads % self.num_key_value_heads:
            raise ValueError(
                f"LLaDA config: d_model {self.d_model}, n_heads {self.n_heads} and n_kv_heads "
                f"{self.n_kv_heads} must divide evenly"
            )


def padding_id(config) -> int:
    """The id that pads batches: the config's pad_token_id, or EOS when it names none (LLaDA pads with EOS)."""
    return config.pad_token_id if config.pad_token_id is not None else config.eos_token_id
