"""Building blocks shared by the encoders, with logical axis names on every weight."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from gecko_jax import partitioning as P
from gecko_jax.models import dropout

Dtype = Any
Initializer = Callable[..., jax.Array]


# Hugging Face ACT2FN names used by the encoder families.
ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": jax.nn.relu,
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "gelu_new": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu_pytorch_tanh": lambda x: jax.nn.gelu(x, approximate=True),
    "silu": jax.nn.silu,
    "swish": jax.nn.silu,
}


def dtype_from_name(name: str | Dtype) -> Dtype:
    """Maps a config string such as ``"bfloat16"`` to a jnp dtype."""
    if not isinstance(name, str):
        return name
    try:
        return {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}[name]
    except KeyError:
        raise ValueError(
            f"Unknown dtype {name!r}; expected 'float32', 'bfloat16' or 'float16'."
        ) from None


class _FlatKernel(nn.LogicallyPartitioned):
    """A weight box that tolerates ``nn.DenseGeneral``'s flat view of its weights.

    DenseGeneral unboxes multi-axis kernels (``[embed, heads, kv]``) and biases
    (``[heads, kv]``) at their flattened shapes before reshaping them; constraining
    that view with all the logical names fails under a mesh, so the constraint
    applies only at the weight's own rank.
    """

    def unbox(self, apply_constraint: bool = True) -> Any:
        return super().unbox(apply_constraint and jnp.ndim(self.value) == len(self.names))


class DenseGeneral(nn.Module):
    """``nn.DenseGeneral`` whose kernel and bias carry logical axis names.

    Attributes:
      features: output feature shape.
      kernel_axes: logical names of the kernel: input axes then output axes.
      axis: input axes contracted.
      use_bias: whether to add a bias (named by the output axes).
      dtype: computation dtype; parameters stay float32.
      kernel_init: initializer of the kernel.
    """

    features: int | Sequence[int]
    kernel_axes: tuple[str | None, ...]
    axis: int | Sequence[int] = -1
    use_bias: bool = True
    dtype: Dtype = jnp.float32
    kernel_init: Initializer = nn.initializers.normal(0.02)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        features = (self.features,) if isinstance(self.features, int) else tuple(self.features)
        bias_axes = self.kernel_axes[-len(features) :]
        return nn.DenseGeneral(
            features=features,
            axis=self.axis,
            use_bias=self.use_bias,
            dtype=self.dtype,
            param_dtype=jnp.float32,
            kernel_init=lambda *args: _FlatKernel(self.kernel_init(*args), self.kernel_axes),
            bias_init=lambda *args: _FlatKernel(nn.initializers.zeros(*args), bias_axes),
            name="dense",
        )(x)


class RMSNorm(nn.Module):
    """T5's layer norm: scale only, no mean subtraction, variance in float32."""

    epsilon: float = 1e-6
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        scale = self.param(
            "scale",
            nn.with_logical_partitioning(nn.initializers.ones, (P.EMBED,)),
            (x.shape[-1],),
            jnp.float32,
        )
        x32 = x.astype(jnp.float32)
        variance = jnp.mean(jnp.square(x32), axis=-1, keepdims=True)
        y = x32 * jax.lax.rsqrt(variance + self.epsilon)
        return (y * scale).astype(self.dtype)


def layer_norm(epsilon: float, dtype: Dtype, name: str) -> nn.LayerNorm:
    """A LayerNorm with named scale and bias (BERT's post-residual norm)."""
    return nn.LayerNorm(
        epsilon=epsilon,
        dtype=dtype,
        param_dtype=jnp.float32,
        scale_init=nn.with_logical_partitioning(nn.initializers.ones, (P.EMBED,)),
        bias_init=nn.with_logical_partitioning(nn.initializers.zeros, (P.EMBED,)),
        name=name,
    )


class MultiHeadAttention(nn.Module):
    """Self-attention with per-head projections ``[embed, heads, kv]``.

    Attributes:
      num_heads: number of heads.
      head_dim: size of each head.
      use_bias: biases on the projections (BERT yes, T5 no).
      scale: logit scale; ``None`` means ``1/sqrt(head_dim)`` (T5 uses 1.0).
      dropout_rate: dropout on attention probabilities.
      dtype: computation dtype.
      kernel_init: initializer of the projections.
    """

    num_heads: int
    head_dim: int
    use_bias: bool = True
    scale: float | None = None
    dropout_rate: float = 0.0
    dtype: Dtype = jnp.float32
    kernel_init: Initializer = nn.initializers.normal(0.02)

    @nn.compact
    def __call__(
        self,
        x: jax.Array,
        mask: jax.Array,
        bias: jax.Array | None = None,
        deterministic: bool = True,
        dropout_rows: jax.Array | None = None,
    ) -> jax.Array:
        """Attends ``x [B, L, D]`` to itself.

        Args:
          x: inputs.
          mask: boolean ``[B, 1, 1, L]`` or ``[B, 1, L, L]`` (see :func:`attention_mask`),
            True where a query may attend to a key.
          bias: optional additive ``[1|B, heads, L, L]`` bias (T5 relative positions).
          deterministic: disables dropout when True.
          dropout_rows: ``[B]`` row identities keying the dropout masks
            (:mod:`gecko_jax.models.dropout`); None uses batch positions.

        Returns:
          ``[B, L, D]`` outputs.
        """

        def project(name: str) -> jax.Array:
            return DenseGeneral(
                features=(self.num_heads, self.head_dim),
                kernel_axes=(P.EMBED, P.HEADS, P.KV),
                use_bias=self.use_bias,
                dtype=self.dtype,
                kernel_init=self.kernel_init,
                name=name,
            )(x)

        query, key, value = project("query"), project("key"), project("value")
        scale = self.scale if self.scale is not None else self.head_dim**-0.5
        keep = None
        if self.dropout_rate > 0.0 and not deterministic:
            shape = (x.shape[0], self.num_heads, x.shape[1], x.shape[1])
            keep = dropout.keep_mask(
                self.make_rng("dropout"), dropout_rows, shape, self.dropout_rate
            )
        out = _attention(query, key, value, mask, bias, scale, keep, self.dropout_rate)
        return DenseGeneral(
            features=x.shape[-1],
            axis=(-2, -1),
            kernel_axes=(P.HEADS, P.KV, P.EMBED),
            use_bias=self.use_bias,
            dtype=self.dtype,
            kernel_init=self.kernel_init,
            name="out",
        )(out)


def attention_mask(attention_mask: jax.Array, segment_ids: jax.Array | None = None) -> jax.Array:
    """The boolean key mask :class:`MultiHeadAttention` takes.

    Args:
      attention_mask: ``[B, L]``, nonzero on real tokens.
      segment_ids: ``[B, L]`` packed rows' segment numbers (several texts share a row,
        as T5X packs examples): a token then attends to its own segment only.

    Returns:
      ``[B, 1, 1, L]``, or ``[B, 1, L, L]`` with ``segment_ids``.
    """
    keys = attention_mask.astype(bool)[:, None, None, :]
    if segment_ids is None:
        return keys
    return keys & (segment_ids[:, None, :, None] == segment_ids[:, None, None, :])


def _attention(
    query: jax.Array,
    key: jax.Array,
    value: jax.Array,
    mask: jax.Array,
    bias: jax.Array | None,
    scale: float,
    keep: jax.Array | None,
    rate: float,
) -> jax.Array:
    """Softmax attention of ``[B, L, H, D]`` operands, dropout on the probabilities
    where ``keep`` (``[B, H, L, L]``) is given.

    Spelled out rather than ``jax.nn.dot_product_attention``: that has no dropout on
    the probabilities, and with heads-major operands XLA's CPU batched dots (and
    their gradients) run about twice as fast as its ``[B, L, H, D]`` einsums.
    """
    query, key, value = (jnp.swapaxes(t, 1, 2) for t in (query, key, value))
    logits = jnp.einsum("bhqd,bhkd->bhqk", query * jnp.asarray(scale, query.dtype), key)
    if bias is not None:
        logits = logits + bias.astype(logits.dtype)
    logits = jnp.where(mask, logits, jnp.finfo(logits.dtype).min)
    probs = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(query.dtype)
    if keep is not None:
        probs = dropout.apply_keep_mask(probs, keep, rate)
    return jnp.swapaxes(jnp.einsum("bhqk,bhkd->bhqd", probs, value), 1, 2)
