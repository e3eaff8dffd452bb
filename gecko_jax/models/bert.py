"""The BERT encoder family (BERT, MiniLM, ...) in Flax linen.

Post-LayerNorm blocks, absolute position embeddings, token types and exact-erf GELU,
as in Hugging Face's ``BertModel``; every weight carries logical axis names.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from gecko_jax import partitioning as P
from gecko_jax.models import layers
from gecko_jax.models.dropout import Dropout
from gecko_jax.models.hf_checkpoint import (
    ParamMapping,
    TensorRule,
    torch_linear,
    torch_linear_from_heads,
    torch_linear_to_heads,
)

HF_PREFIXES = ("", "bert.", "model.")


@dataclasses.dataclass(frozen=True)
class BertConfig:
    """Sizes of a BERT-family encoder (field names follow Hugging Face)."""

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    hidden_act: str = "gelu"
    dropout_rate: float = 0.0
    dtype: str = "float32"

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not divisible by "
                f"num_attention_heads {self.num_attention_heads}"
            )
        if self.hidden_act not in layers.ACTIVATIONS:
            raise ValueError(
                f"Unsupported hidden_act {self.hidden_act!r}; known: {sorted(layers.ACTIVATIONS)}"
            )

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @classmethod
    def from_hf(cls, cfg: dict[str, Any]) -> BertConfig:
        """Reads a Hugging Face BERT ``config.json`` dict."""
        embedding = cfg.get("position_embedding_type", "absolute")
        if embedding != "absolute":
            raise ValueError(f"position_embedding_type {embedding!r} is not supported")
        return cls(
            vocab_size=int(cfg["vocab_size"]),
            hidden_size=int(cfg["hidden_size"]),
            num_hidden_layers=int(cfg["num_hidden_layers"]),
            num_attention_heads=int(cfg["num_attention_heads"]),
            intermediate_size=int(cfg["intermediate_size"]),
            max_position_embeddings=int(cfg.get("max_position_embeddings", 512)),
            type_vocab_size=int(cfg.get("type_vocab_size", 2)),
            layer_norm_eps=float(cfg.get("layer_norm_eps", 1e-12)),
            hidden_act=str(cfg.get("hidden_act", "gelu")),
            dropout_rate=float(cfg.get("hidden_dropout_prob", 0.0)),
        )


def _embed(num: int, features: int, axes: tuple[str, str], name: str) -> nn.Embed:
    return nn.Embed(
        num_embeddings=num,
        features=features,
        param_dtype=jnp.float32,
        embedding_init=nn.with_logical_partitioning(nn.initializers.normal(0.02), axes),
        name=name,
    )


class BertLayer(nn.Module):
    """One post-LayerNorm transformer block."""

    config: BertConfig

    @nn.compact
    def __call__(
        self,
        x: jax.Array,
        mask: jax.Array,
        deterministic: bool,
        dropout_rows: jax.Array | None = None,
    ) -> jax.Array:
        cfg = self.config
        dtype = layers.dtype_from_name(cfg.dtype)
        dropout = Dropout(cfg.dropout_rate)
        attended = layers.MultiHeadAttention(
            num_heads=cfg.num_attention_heads,
            head_dim=cfg.head_dim,
            dropout_rate=cfg.dropout_rate,
            dtype=dtype,
            name="attention",
        )(x, mask, deterministic=deterministic, dropout_rows=dropout_rows)
        x = layers.layer_norm(cfg.layer_norm_eps, dtype, "attention_norm")(
            x + dropout(attended, deterministic, dropout_rows)
        )
        h = layers.DenseGeneral(
            cfg.intermediate_size, (P.EMBED, P.MLP), dtype=dtype, name="intermediate"
        )(x)
        h = layers.ACTIVATIONS[cfg.hidden_act](h)
        h = layers.DenseGeneral(cfg.hidden_size, (P.MLP, P.EMBED), dtype=dtype, name="output")(h)
        return layers.layer_norm(cfg.layer_norm_eps, dtype, "output_norm")(
            x + dropout(h, deterministic, dropout_rows)
        )


class BertEncoder(nn.Module):
    """BERT encoder returning the last hidden states ``[B, L, hidden_size]``."""

    config: BertConfig

    @nn.compact
    def __call__(
        self,
        input_ids: jax.Array,
        attention_mask: jax.Array,
        token_type_ids: jax.Array | None = None,
        *,
        deterministic: bool = True,
        dropout_rows: jax.Array | None = None,
        segment_ids: jax.Array | None = None,
        positions: jax.Array | None = None,
    ) -> jax.Array:
        """Encodes token ids.

        Args:
          input_ids: ``[B, L]`` int token ids.
          attention_mask: ``[B, L]``, nonzero on real tokens.
          token_type_ids: optional ``[B, L]`` segment ids (zeros by default).
          deterministic: disables dropout when True (needs rng 'dropout' otherwise).
          dropout_rows: ``[B]`` row identities keying the dropout masks
            (:mod:`gecko_jax.models.dropout`); None uses batch positions.
          segment_ids: ``[B, L]`` segment numbers of packed rows (see
            :func:`gecko_jax.models.layers.attention_mask`); None: one text a row.
          positions: ``[B, L]`` position ids (each packed text restarts at 0); None:
            ``0..L-1``.

        Returns:
          ``[B, L, hidden_size]`` hidden states in the config's dtype.
        """
        cfg = self.config
        dtype = layers.dtype_from_name(cfg.dtype)
        length = input_ids.shape[1]
        if length > cfg.max_position_embeddings:
            raise ValueError(
                f"Sequence length {length} exceeds max_position_embeddings "
                f"{cfg.max_position_embeddings}"
            )
        if token_type_ids is None:
            token_type_ids = jnp.zeros_like(input_ids)
        if positions is None:
            positions = jnp.arange(length)[None, :]
        x = (
            _embed(cfg.vocab_size, cfg.hidden_size, (P.VOCAB, P.EMBED), "word_embeddings")(
                input_ids
            )
            + _embed(
                cfg.max_position_embeddings, cfg.hidden_size, (None, P.EMBED), "position_embeddings"
            )(positions)
            + _embed(
                cfg.type_vocab_size, cfg.hidden_size, (None, P.EMBED), "token_type_embeddings"
            )(token_type_ids)
        )
        x = layers.layer_norm(cfg.layer_norm_eps, dtype, "embeddings_norm")(x)
        x = Dropout(cfg.dropout_rate)(x, deterministic, dropout_rows)
        x = nn.with_logical_constraint(x, (P.BATCH, P.LENGTH, P.EMBED))
        mask = layers.attention_mask(attention_mask, segment_ids)
        for i in range(cfg.num_hidden_layers):
            x = BertLayer(cfg, name=f"layer_{i}")(x, mask, deterministic, dropout_rows)
            x = nn.with_logical_constraint(x, (P.BATCH, P.LENGTH, P.EMBED))
        return x


def _norm_rules(flax_name: str, hf_name: str) -> ParamMapping:
    return {
        (flax_name, "scale"): TensorRule(f"{hf_name}.weight"),
        (flax_name, "bias"): TensorRule(f"{hf_name}.bias"),
    }


def _dense_rules(
    path: tuple[str, ...], hf_name: str, kernel: Any, bias: Any = None
) -> ParamMapping:
    return {
        path + ("dense", "kernel"): TensorRule(f"{hf_name}.weight", kernel),
        path + ("dense", "bias"): TensorRule(f"{hf_name}.bias", bias or (lambda b: b)),
    }


def hf_param_mapping(config: BertConfig) -> ParamMapping:
    """Flax parameter path -> Hugging Face ``BertModel`` tensor, for ``config``."""
    heads = config.num_attention_heads
    mapping: ParamMapping = {
        ("word_embeddings", "embedding"): TensorRule("embeddings.word_embeddings.weight"),
        ("position_embeddings", "embedding"): TensorRule("embeddings.position_embeddings.weight"),
        ("token_type_embeddings", "embedding"): TensorRule(
            "embeddings.token_type_embeddings.weight"
        ),
        **_norm_rules("embeddings_norm", "embeddings.LayerNorm"),
    }
    for i in range(config.num_hidden_layers):
        hf = f"encoder.layer.{i}"
        layer = (f"layer_{i}",)
        for proj in ("query", "key", "value"):
            mapping.update(
                _dense_rules(
                    layer + ("attention", proj),
                    f"{hf}.attention.self.{proj}",
                    torch_linear_to_heads(heads),
                    lambda b: b.reshape(heads, -1),
                )
            )
        mapping.update(
            _dense_rules(
                layer + ("attention", "out"),
                f"{hf}.attention.output.dense",
                torch_linear_from_heads(heads),
            )
        )
        mapping.update(
            _dense_rules(layer + ("intermediate",), f"{hf}.intermediate.dense", torch_linear)
        )
        mapping.update(_dense_rules(layer + ("output",), f"{hf}.output.dense", torch_linear))
        for flax_name, hf_name in (
            ("attention_norm", f"{hf}.attention.output.LayerNorm"),
            ("output_norm", f"{hf}.output.LayerNorm"),
        ):
            mapping.update({layer + k: v for k, v in _norm_rules(flax_name, hf_name).items()})
    return mapping
