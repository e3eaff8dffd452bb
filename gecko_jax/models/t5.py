"""The T5 v1.1 / mT5 / UMT5 encoder stack in Flax, and its Hugging Face import.

The module reproduces ``transformers.T5EncoderModel(...).last_hidden_state``:
pre-norm blocks (RMSNorm -> attention / MLP -> dropout -> residual) with a learned,
bucketed relative position bias and no absolute positions. T5 and mT5 share one
bias table across layers (stored by Hugging Face in block 0); UMT5 gives every layer
its own table.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

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

# ``transformer.`` is the prefix of T5ForTokenClassification/SequenceClassification.
HF_PREFIXES: tuple[str, ...] = ("", "transformer.")


# T5 v1.1 encoder sizes: (d_model, d_kv, num_heads, d_ff, num_layers).
_PRESETS: dict[str, tuple[int, int, int, int, int]] = {
    "small": (512, 64, 6, 1024, 8),
    "base": (768, 64, 12, 2048, 12),
    "large": (1024, 64, 16, 2816, 24),
    "xl": (2048, 64, 32, 5120, 24),
}


@dataclasses.dataclass(frozen=True)
class T5Config:
    """Hyperparameters of a T5-family encoder.

    Attributes:
      vocab_size: rows of the token embedding.
      d_model: width of the residual stream.
      d_kv: size of each attention head.
      num_heads: attention heads.
      d_ff: hidden width of the MLP.
      num_layers: encoder blocks.
      relative_attention_num_buckets: buckets of the relative position bias.
      relative_attention_max_distance: distance beyond which positions share a bucket.
      layer_norm_epsilon: RMSNorm epsilon.
      dropout_rate: dropout on embeddings, attention probabilities, sublayer outputs,
        the MLP hidden layer and the final output (as Hugging Face).
      feed_forward_proj: ``"relu"``, ``"gelu"``, ``"gated-gelu"``, ``"gated-relu"``,
        ... as Hugging Face; ``gated-`` means two input projections ``wi_0``/``wi_1``,
        and ``"gated-gelu"`` uses the tanh approximation (HF's ``gelu_new``).
      per_layer_relative_bias: every layer has its own relative bias table (UMT5)
        instead of one shared table (T5, mT5).
      dtype: activation dtype name; parameters are always float32.
    """

    vocab_size: int
    d_model: int
    d_kv: int
    num_heads: int
    d_ff: int
    num_layers: int
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    layer_norm_epsilon: float = 1e-6
    dropout_rate: float = 0.0
    feed_forward_proj: str = "gated-gelu"
    per_layer_relative_bias: bool = False
    dtype: str = "float32"

    def __post_init__(self) -> None:
        for name in (
            "vocab_size",
            "d_model",
            "d_kv",
            "num_heads",
            "d_ff",
            "num_layers",
            "relative_attention_num_buckets",
            "relative_attention_max_distance",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"T5Config.{name} must be a positive integer, got {value!r}")
        # Bidirectional buckets: half per direction, half of those exact distances.
        if self.relative_attention_num_buckets < 4:
            raise ValueError("T5Config.relative_attention_num_buckets must be at least 4")
        if self.relative_attention_max_distance <= self.relative_attention_num_buckets // 4:
            raise ValueError(
                "T5Config.relative_attention_max_distance must exceed "
                f"relative_attention_num_buckets // 4, got {self.relative_attention_max_distance}"
            )
        if not 0.0 <= self.dropout_rate < 1.0:
            raise ValueError(f"T5Config.dropout_rate must be in [0, 1), got {self.dropout_rate}")
        _activation_name(self.feed_forward_proj)
        layers.dtype_from_name(self.dtype)

    @property
    def hidden_size(self) -> int:
        """Width of the encoder outputs (``d_model``)."""
        return self.d_model

    @property
    def is_gated(self) -> bool:
        """Whether the MLP has two input projections (``wi_0``, ``wi_1``)."""
        return self.feed_forward_proj.startswith("gated-")

    @property
    def activation(self) -> Callable[[jax.Array], jax.Array]:
        """The MLP nonlinearity, resolved as Hugging Face does."""
        return layers.ACTIVATIONS[_activation_name(self.feed_forward_proj)]

    @classmethod
    def from_hf(cls, cfg: Mapping[str, Any]) -> T5Config:
        """Reads a Hugging Face T5 / mT5 / UMT5 ``config.json`` dict.

        Raises:
          KeyError: a required field is missing.
          ValueError: a field has an invalid value.
        """
        required = ("vocab_size", "d_model", "d_kv", "num_heads", "d_ff", "num_layers")
        missing = [k for k in required if k not in cfg]
        if missing:
            raise KeyError(f"T5 config lacks required fields {missing}")
        return cls(
            **{k: cfg[k] for k in required},
            relative_attention_num_buckets=cfg.get("relative_attention_num_buckets", 32),
            relative_attention_max_distance=cfg.get("relative_attention_max_distance", 128),
            layer_norm_epsilon=float(cfg.get("layer_norm_epsilon", 1e-6)),
            dropout_rate=float(cfg.get("dropout_rate", 0.1)),
            # Hugging Face's own default when the field is absent.
            feed_forward_proj=cfg.get("feed_forward_proj", "relu"),
            per_layer_relative_bias=cfg.get("model_type") == "umt5",
        )

    @classmethod
    def named(cls, size: str, **overrides: Any) -> T5Config:
        """A T5 v1.1 encoder preset: ``"small"``, ``"base"``, ``"large"`` or ``"xl"``.

        Args:
          size: preset name.
          **overrides: fields to change, e.g. ``dtype="bfloat16"``.
        """
        if size not in _PRESETS:
            raise ValueError(f"Unknown T5 size {size!r}; known sizes: {', '.join(_PRESETS)}")
        d_model, d_kv, num_heads, d_ff, num_layers = _PRESETS[size]
        return cls(
            vocab_size=32128,
            d_model=d_model,
            d_kv=d_kv,
            num_heads=num_heads,
            d_ff=d_ff,
            num_layers=num_layers,
            feed_forward_proj="gated-gelu",
            **overrides,
        )


def _activation_name(feed_forward_proj: str) -> str:
    """Resolves ``feed_forward_proj`` to an ACT2FN name as Hugging Face does."""
    parts = feed_forward_proj.split("-")
    if len(parts) > 2 or (len(parts) == 2 and parts[0] != "gated"):
        raise ValueError(f"feed_forward_proj {feed_forward_proj!r} must be 'ACT' or 'gated-ACT'")
    name = "gelu_new" if feed_forward_proj == "gated-gelu" else parts[-1]
    if name not in layers.ACTIVATIONS:
        raise ValueError(
            f"Unsupported activation {name!r} in feed_forward_proj {feed_forward_proj!r}; "
            f"known: {', '.join(sorted(layers.ACTIVATIONS))}"
        )
    return name


def relative_position_bucket(
    relative_position: jax.Array | np.ndarray,
    bidirectional: bool = True,
    num_buckets: int = 32,
    max_distance: int = 128,
) -> jax.Array:
    """Maps ``key_pos - query_pos`` to a bucket, as Hugging Face's T5Attention.

    Half the buckets (per direction when bidirectional) hold exact small distances;
    the rest grow logarithmically up to ``max_distance``, beyond which all distances
    share the last bucket.
    """
    relative_position = jnp.asarray(relative_position, jnp.int32)
    buckets = jnp.zeros_like(relative_position)
    if bidirectional:
        num_buckets //= 2
        buckets = buckets + (relative_position > 0).astype(jnp.int32) * num_buckets
        distance = jnp.abs(relative_position)
    else:
        distance = -jnp.minimum(relative_position, 0)
    max_exact = num_buckets // 2
    is_small = distance < max_exact
    # The maximum keeps log() finite on the small branch, whose value is discarded.
    ratio = jnp.maximum(distance, max_exact).astype(jnp.float32) / max_exact
    # Same float32 operation order as Hugging Face, so boundaries land identically.
    scaled = jnp.log(ratio) / math.log(max_distance / max_exact) * (num_buckets - max_exact)
    if_large = jnp.minimum(max_exact + scaled.astype(jnp.int32), num_buckets - 1)
    return buckets + jnp.where(is_small, distance, if_large)


class RelativePositionBias(nn.Module):
    """A learned ``[num_buckets, num_heads]`` table turned into an attention bias."""

    num_buckets: int
    max_distance: int
    num_heads: int

    @nn.compact
    def __call__(self, length: int, positions: jax.Array | None = None) -> jax.Array:
        """Returns the float32 self-attention bias: ``[1, heads, length, length]``, or
        ``[B, heads, length, length]`` from ``[B, length]`` position ids (packed rows)."""
        if positions is None:
            positions = jnp.arange(length)[None, :]
        buckets = relative_position_bucket(
            positions[:, None, :] - positions[:, :, None],  # key - query
            bidirectional=True,
            num_buckets=self.num_buckets,
            max_distance=self.max_distance,
        )
        table = self.param(
            "embedding",
            nn.with_logical_partitioning(nn.initializers.normal(1.0), (P.RELPOS_BUCKETS, P.HEADS)),
            (self.num_buckets, self.num_heads),
            jnp.float32,
        )
        return jnp.transpose(jnp.take(table, buckets, axis=0), (0, 3, 1, 2))


class T5MLP(nn.Module):
    """The feed-forward sublayer: ``wo(act(wi_0 x) * wi_1 x)`` or ``wo(act(wi x))``."""

    config: T5Config

    @nn.compact
    def __call__(
        self, x: jax.Array, deterministic: bool = True, dropout_rows: jax.Array | None = None
    ) -> jax.Array:
        cfg = self.config
        dtype = layers.dtype_from_name(cfg.dtype)

        def dense(name: str, features: int, axes: tuple[str, str], fan_in: int) -> nn.Module:
            return layers.DenseGeneral(
                features=features,
                kernel_axes=axes,
                use_bias=False,
                dtype=dtype,
                kernel_init=nn.initializers.normal(fan_in**-0.5),
                name=name,
            )

        if cfg.is_gated:
            hidden = cfg.activation(dense("wi_0", cfg.d_ff, (P.EMBED, P.MLP), cfg.d_model)(x))
            hidden = hidden * dense("wi_1", cfg.d_ff, (P.EMBED, P.MLP), cfg.d_model)(x)
        else:
            hidden = cfg.activation(dense("wi", cfg.d_ff, (P.EMBED, P.MLP), cfg.d_model)(x))
        hidden = Dropout(cfg.dropout_rate)(hidden, deterministic, dropout_rows)
        return dense("wo", cfg.d_model, (P.MLP, P.EMBED), cfg.d_ff)(hidden)


class T5Block(nn.Module):
    """One pre-norm encoder block: self-attention then MLP, each with a residual."""

    config: T5Config

    @nn.compact
    def __call__(
        self,
        x: jax.Array,
        mask: jax.Array,
        position_bias: jax.Array | None = None,
        deterministic: bool = True,
        dropout_rows: jax.Array | None = None,
        positions: jax.Array | None = None,
    ) -> jax.Array:
        """Applies the block.

        Args:
          x: ``[B, L, d_model]`` hidden states.
          mask: boolean key mask (see :func:`gecko_jax.models.layers.attention_mask`).
          position_bias: the shared ``[1|B, heads, L, L]`` bias; None makes this block
            own its table (UMT5).
          deterministic: disables dropout when True.
          dropout_rows: ``[B]`` row identities keying the dropout masks.
          positions: ``[B, L]`` position ids of packed rows, for a table of its own.
        """
        cfg = self.config
        dtype = layers.dtype_from_name(cfg.dtype)
        if position_bias is None:
            position_bias = _relpos_bias(cfg)(x.shape[1], positions)
        normed = layers.RMSNorm(cfg.layer_norm_epsilon, dtype, name="pre_attention_norm")(x)
        attended = layers.MultiHeadAttention(
            num_heads=cfg.num_heads,
            head_dim=cfg.d_kv,
            use_bias=False,
            scale=1.0,  # T5 does not scale the logits by 1/sqrt(d_kv).
            dropout_rate=cfg.dropout_rate,
            dtype=dtype,
            kernel_init=nn.initializers.normal(cfg.d_model**-0.5),
            name="attention",
        )(normed, mask, bias=position_bias, deterministic=deterministic, dropout_rows=dropout_rows)
        x = x + Dropout(cfg.dropout_rate)(attended, deterministic, dropout_rows)
        normed = layers.RMSNorm(cfg.layer_norm_epsilon, dtype, name="pre_mlp_norm")(x)
        mlp_out = T5MLP(cfg, name="mlp")(normed, deterministic, dropout_rows)
        return x + Dropout(cfg.dropout_rate)(mlp_out, deterministic, dropout_rows)


def _relpos_bias(config: T5Config) -> RelativePositionBias:
    """The relative bias table of a config, named as the import mapping expects."""
    return RelativePositionBias(
        num_buckets=config.relative_attention_num_buckets,
        max_distance=config.relative_attention_max_distance,
        num_heads=config.num_heads,
        name="relpos_bias",
    )


class T5Encoder(nn.Module):
    """The T5 encoder stack, outputs after the final RMSNorm.

    Parameter tree: ``token_embedder/embedding``, ``relpos_bias/embedding`` (shared;
    under each ``layers_{i}`` instead for UMT5), ``layers_{i}/{pre_attention_norm,
    attention, pre_mlp_norm, mlp}``, ``final_norm/scale``.
    """

    config: T5Config

    @nn.compact
    def __call__(
        self,
        input_ids: jax.Array,
        attention_mask: jax.Array,
        *,
        deterministic: bool = True,
        dropout_rows: jax.Array | None = None,
        segment_ids: jax.Array | None = None,
        positions: jax.Array | None = None,
    ) -> jax.Array:
        """Encodes a batch.

        Args:
          input_ids: ``[B, L]`` integer token ids.
          attention_mask: ``[B, L]`` bool/int, nonzero at real tokens.
          deterministic: disables dropout (rng ``'dropout'`` otherwise) when True.
          dropout_rows: ``[B]`` row identities keying the dropout masks
            (:mod:`gecko_jax.models.dropout`); None uses batch positions.
          segment_ids: ``[B, L]`` segment numbers of packed rows (see
            :func:`gecko_jax.models.layers.attention_mask`); None: one text a row.
          positions: ``[B, L]`` position ids for the relative bias (each packed text
            restarts at 0); None: ``0..L-1``.

        Returns:
          ``[B, L, d_model]`` hidden states in the config's dtype.
        """
        cfg = self.config
        dtype = layers.dtype_from_name(cfg.dtype)
        x = nn.Embed(
            num_embeddings=cfg.vocab_size,
            features=cfg.d_model,
            dtype=dtype,
            param_dtype=jnp.float32,
            embedding_init=nn.with_logical_partitioning(
                nn.initializers.normal(1.0), (P.VOCAB, P.EMBED)
            ),
            name="token_embedder",
        )(input_ids.astype(jnp.int32))
        dropout = Dropout(cfg.dropout_rate)
        x = dropout(x, deterministic, dropout_rows)
        mask = layers.attention_mask(attention_mask, segment_ids)
        shared_bias = (
            None if cfg.per_layer_relative_bias else _relpos_bias(cfg)(x.shape[1], positions)
        )
        for i in range(cfg.num_layers):
            x = T5Block(cfg, name=f"layers_{i}")(
                x, mask, shared_bias, deterministic, dropout_rows, positions
            )
        x = layers.RMSNorm(cfg.layer_norm_epsilon, dtype, name="final_norm")(x)
        return dropout(x, deterministic, dropout_rows)


def hf_param_mapping(config: T5Config) -> ParamMapping:
    """Flax parameter path -> Hugging Face tensor for a T5 encoder.

    Names are those of ``T5EncoderModel`` / ``T5ForConditionalGeneration`` (whose
    decoder tensors are ignored). The token embedding is ``shared.weight``: Hugging
    Face ties ``encoder.embed_tokens.weight`` to it and usually saves only
    ``shared.weight``; a checkpoint holding only the former is read too.
    """
    qkv = torch_linear_to_heads(config.num_heads)
    out = torch_linear_from_heads(config.num_heads)
    mapping: ParamMapping = {
        ("token_embedder", "embedding"): TensorRule(
            "shared.weight", aliases=("encoder.embed_tokens.weight",)
        ),
        ("final_norm", "scale"): TensorRule("encoder.final_layer_norm.weight"),
    }
    relpos_name = "layer.0.SelfAttention.relative_attention_bias.weight"
    if not config.per_layer_relative_bias:
        mapping[("relpos_bias", "embedding")] = TensorRule(f"encoder.block.0.{relpos_name}")
    mlp_names = ("wi_0", "wi_1", "wo") if config.is_gated else ("wi", "wo")
    for i in range(config.num_layers):
        layer, hf = f"layers_{i}", f"encoder.block.{i}"
        attn = f"{hf}.layer.0.SelfAttention"
        mapping[(layer, "pre_attention_norm", "scale")] = TensorRule(
            f"{hf}.layer.0.layer_norm.weight"
        )
        mapping[(layer, "pre_mlp_norm", "scale")] = TensorRule(f"{hf}.layer.1.layer_norm.weight")
        for flax_name, hf_name in (("query", "q"), ("key", "k"), ("value", "v")):
            mapping[(layer, "attention", flax_name, "dense", "kernel")] = TensorRule(
                f"{attn}.{hf_name}.weight", qkv
            )
        mapping[(layer, "attention", "out", "dense", "kernel")] = TensorRule(
            f"{attn}.o.weight", out
        )
        for name in mlp_names:
            mapping[(layer, "mlp", name, "dense", "kernel")] = TensorRule(
                f"{hf}.layer.1.DenseReluDense.{name}.weight", torch_linear
            )
        if config.per_layer_relative_bias:
            mapping[(layer, "relpos_bias", "embedding")] = TensorRule(f"{hf}.{relpos_name}")
    return mapping
