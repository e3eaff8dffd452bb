"""The dual-encoder head shared by every backbone: pooling, projection, L2 normalisation."""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from gecko_jax import partitioning as P
from gecko_jax.embedding_math import l2_normalize
from gecko_jax.models import layers
from gecko_jax.models.architectures import BackboneConfig, build_backbone

POOLING_MODES = ("mean", "cls")


@dataclasses.dataclass(frozen=True)
class HeadConfig:
    """How token states become one embedding.

    Attributes:
      pooling: ``"mean"`` (masked mean over real tokens) or ``"cls"`` (first token).
      projection_dim: size of an optional linear projection (Gecko: 768); ``None``
        keeps the backbone's width.
      normalize: L2-normalise the output.
    """

    pooling: str = "mean"
    projection_dim: int | None = None
    normalize: bool = True

    def __post_init__(self) -> None:
        if self.pooling not in POOLING_MODES:
            raise ValueError(f"Unknown pooling {self.pooling!r}; expected one of {POOLING_MODES}")
        if self.projection_dim is not None and self.projection_dim < 1:
            raise ValueError(f"projection_dim must be positive, got {self.projection_dim}")


def mean_pool(hidden: jax.Array, mask: jax.Array) -> jax.Array:
    """Masked mean of ``hidden [B, L, D]`` over positions where ``mask [B, L]`` is set."""
    weights = mask.astype(jnp.float32)[..., None]
    total = jnp.sum(hidden.astype(jnp.float32) * weights, axis=1)
    return total / jnp.maximum(jnp.sum(weights, axis=1), 1e-9)


class DualEncoder(nn.Module):
    """Backbone + pooling + optional projection + optional L2 normalisation.

    Parameters live under ``backbone`` and ``projection``.
    """

    backbone: BackboneConfig
    head: HeadConfig = HeadConfig()

    @property
    def embedding_dim(self) -> int:
        """Width of the output embeddings."""
        return self.head.projection_dim or self.backbone.hidden_size

    @nn.compact
    def __call__(
        self,
        input_ids: jax.Array,  # [B, L] int
        attention_mask: jax.Array,  # [B, L], nonzero at real tokens
        deterministic: bool = True,
        dropout_rows: jax.Array | None = None,  # [B]
    ) -> jax.Array:
        """Embeds ``[B, L]`` token ids into float32 ``[B, embedding_dim]``.

        With ``deterministic=False`` dropout is on (rng ``'dropout'``); ``dropout_rows``
        (``[B]``) are the rows' identities keying their masks, batch positions if None.
        """
        hidden = build_backbone(self.backbone, name="backbone")(
            input_ids, attention_mask, deterministic=deterministic, dropout_rows=dropout_rows
        )
        if self.head.pooling == "mean":
            pooled = mean_pool(hidden, attention_mask)
        else:
            pooled = hidden[:, 0, :].astype(jnp.float32)
        pooled = nn.with_logical_constraint(pooled, (P.BATCH, P.EMBED))
        if self.head.projection_dim is not None:
            pooled = layers.DenseGeneral(
                self.head.projection_dim,
                (P.EMBED, None),
                use_bias=False,
                dtype=layers.dtype_from_name(self.backbone.dtype),
                name="projection",
            )(pooled).astype(jnp.float32)
        return l2_normalize(pooled) if self.head.normalize else pooled
