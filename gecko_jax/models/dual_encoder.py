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


def segment_pool(
    hidden: jax.Array,
    segment_ids: jax.Array,
    positions: jax.Array,
    num_segments: int,
    pooling: str,
) -> jax.Array:
    """Pools each text of packed rows: ``[B, L, D]`` -> float32 ``[B, num_segments, D]``.

    Segment ``s + 1`` of a row lands at ``[:, s]``: the mean of its tokens (``"mean"``)
    or its first token (``"cls"``); slots of absent segments are zero.
    """
    numbers = jnp.arange(1, num_segments + 1, dtype=segment_ids.dtype)
    member = segment_ids[:, None, :] == numbers[None, :, None]  # [B, S, L]
    if pooling == "cls":
        member = member & (positions[:, None, :] == 0)
    weights = member.astype(jnp.float32)
    total = jnp.einsum("bsl,bld->bsd", weights, hidden.astype(jnp.float32))
    return total / jnp.maximum(jnp.sum(weights, axis=-1, keepdims=True), 1e-9)


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
        segment_ids: jax.Array | None = None,  # [B, L] of packed rows
        positions: jax.Array | None = None,  # [B, L] of packed rows
        num_segments: int | None = None,
    ) -> jax.Array:
        """Embeds ``[B, L]`` token ids into float32 ``[B, embedding_dim]``.

        With ``deterministic=False`` dropout is on (rng ``'dropout'``); ``dropout_rows``
        (``[B]``) are the rows' identities keying their masks, batch positions if None.

        Packed rows (several texts a row, as :func:`gecko_jax.packing.packed_batches`
        lays them out) take ``segment_ids``, ``positions`` and the static
        ``num_segments``, and give ``[B, num_segments, embedding_dim]``: segment
        ``s + 1`` of a row at ``[:, s]``.
        """
        packed = segment_ids is not None
        if packed and (positions is None or num_segments is None):
            raise ValueError("packed rows need positions and num_segments with segment_ids")
        hidden = build_backbone(self.backbone, name="backbone")(
            input_ids,
            attention_mask,
            deterministic=deterministic,
            dropout_rows=dropout_rows,
            segment_ids=segment_ids,
            positions=positions,
        )
        if packed:
            pooled = segment_pool(hidden, segment_ids, positions, num_segments, self.head.pooling)
        else:
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
