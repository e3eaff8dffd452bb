"""Contrastive losses over the global batch (Gecko eq. 3) with Matryoshka (MRL) terms.

Everything here is plain ``jnp`` code on global ``[B, ...]`` arrays. Under ``jax.jit``
with the batch sharded over devices, XLA gathers what each similarity matrix needs, so
the whole global batch is the negative pool without any per-device logic.

Each query ``q_i`` gets one row of logits laid out as::

    [ in-batch positives p_j (B) | same-tower queries q_j (B) | hard negatives ]

where the hard-negative block holds ``q_i``'s own K negatives (``"own"``) or all B*K
negatives of the batch (``"batch"``), flattened example-major: column ``j*K + k`` is
example j's k-th negative. The target of row i is column i.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from gecko_jax.embedding_math import matryoshka_truncate

HARD_NEGATIVE_MODES = ("own", "batch", "none")
# Finite (not -inf) so that masked entries give zero, not NaN, gradients.
MASK_VALUE = -1e9


@dataclasses.dataclass(frozen=True)
class ContrastiveLossConfig:
    """Options of :func:`contrastive_loss`.

    Attributes:
      temperature: tau; logits are ``cos / tau`` unless a ``logit_scale`` is passed.
      same_tower_negatives: add the other queries ``q_j`` (j != i) as negatives (eq. 3).
      hard_negatives: ``"own"`` (q_i sees its own K), ``"batch"`` (every query sees all
        B*K) or ``"none"`` (hard negatives are ignored).
      bidirectional: average with the document->query term (``p_i`` against all ``q_j``).
      mask_false_negatives: with ``positive_ids``, drop in-batch candidates j != i whose
        positive id equals row i's (same positive text) from the positive, same-tower
        and document->query blocks.
      label_smoothing: mass spread uniformly over each row's unmasked columns.
      mrl_dims: Matryoshka prefix sizes; empty means the full dimension only.
      mrl_weights: one weight per MRL dim (default 1.0); the loss is the weighted sum.
    """

    temperature: float = 0.05
    same_tower_negatives: bool = True
    hard_negatives: str = "own"
    bidirectional: bool = False
    mask_false_negatives: bool = True
    label_smoothing: float = 0.0
    mrl_dims: tuple[int, ...] = ()
    mrl_weights: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        # Gin and YAML hand over lists; tuples keep the config hashable (a jit static arg).
        object.__setattr__(self, "mrl_dims", tuple(int(d) for d in self.mrl_dims))
        if self.mrl_weights is not None:
            object.__setattr__(self, "mrl_weights", tuple(float(w) for w in self.mrl_weights))
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.hard_negatives not in HARD_NEGATIVE_MODES:
            raise ValueError(
                f"hard_negatives must be one of {HARD_NEGATIVE_MODES}, got {self.hard_negatives!r}"
            )
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if any(d <= 0 for d in self.mrl_dims) or len(set(self.mrl_dims)) != len(self.mrl_dims):
            raise ValueError(f"mrl_dims must be positive and unique, got {self.mrl_dims}")
        if self.mrl_weights is not None and len(self.mrl_weights) != len(self.mrl_dims):
            raise ValueError(
                f"mrl_weights has {len(self.mrl_weights)} entries but mrl_dims has "
                f"{len(self.mrl_dims)}"
            )


def _cross_entropy(logits: jax.Array, valid: jax.Array, label_smoothing: float) -> jax.Array:
    """Mean softmax cross-entropy of ``logits [B, C]`` with target column i for row i.

    Columns where ``valid`` is False are masked out of the softmax and get no smoothing.
    """
    targets = jax.nn.one_hot(jnp.arange(logits.shape[0]), logits.shape[1], dtype=logits.dtype)
    if label_smoothing:
        uniform = valid / jnp.sum(valid, axis=-1, keepdims=True)
        targets = (1.0 - label_smoothing) * targets + label_smoothing * uniform
    return jnp.mean(optax.softmax_cross_entropy(logits, targets))


def _sim(a: jax.Array, b: jax.Array) -> jax.Array:
    """``a @ b.T`` at full float32 precision (TPUs default to bf16 passes)."""
    return jnp.einsum("id,jd->ij", a, b, precision=jax.lax.Precision.HIGHEST)


def _own_sim(q: jax.Array, n: jax.Array) -> jax.Array:
    """``[B, K]`` similarity of each query with its own K negatives."""
    return jnp.einsum("id,ikd->ik", q, n, precision=jax.lax.Precision.HIGHEST)


class _Batch(NamedTuple):
    """One global batch's float32 embeddings and which candidates each query may see.

    Attributes:
      query, positive: ``[B, D]``.
      negatives: ``[B, K, D]`` (K >= 1) or None.
      negative_mask: ``[B, K]`` bool, with ``negatives``.
      in_batch_ok: ``[B, B]`` bool, False where an in-batch candidate is a false negative.
    """

    query: jax.Array
    positive: jax.Array
    negatives: jax.Array | None
    negative_mask: jax.Array | None
    in_batch_ok: jax.Array

    def truncated(self, dim: int) -> _Batch:
        """The batch on its first ``dim`` dimensions, renormalised."""
        negatives = self.negatives
        return self._replace(
            query=matryoshka_truncate(self.query, dim),
            positive=matryoshka_truncate(self.positive, dim),
            negatives=None if negatives is None else matryoshka_truncate(negatives, dim),
        )


def _query_logits(batch: _Batch, config: ContrastiveLossConfig) -> tuple[jax.Array, jax.Array]:
    """Cosine rows ``[B, C]`` of each query and their validity mask (unscaled, unmasked)."""
    q, n, in_batch_ok = batch.query, batch.negatives, batch.in_batch_ok
    b = q.shape[0]
    blocks = [(_sim(q, batch.positive), in_batch_ok)]
    if config.same_tower_negatives:
        blocks.append((_sim(q, q), in_batch_ok & ~jnp.eye(b, dtype=bool)))
    if n is not None and config.hard_negatives == "own":
        blocks.append((_own_sim(q, n), batch.negative_mask))
    elif n is not None and config.hard_negatives == "batch":
        k = n.shape[1]
        # Example-major: row i*K + k of the pool is example i's k-th negative.
        pool = n.reshape(b * k, n.shape[2])
        pool_ok = jnp.broadcast_to(batch.negative_mask.reshape(1, b * k), (b, b * k))
        blocks.append((_sim(q, pool), pool_ok))
    return (
        jnp.concatenate([s for s, _ in blocks], axis=1),
        jnp.concatenate([m for _, m in blocks], axis=1),
    )


def _loss_at_dim(
    batch: _Batch, scale: jax.Array, dim: int, config: ContrastiveLossConfig
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The loss on the first ``dim`` dimensions, and that dimension's metrics."""
    batch = batch.truncated(dim)
    q, p, n, negative_mask = batch.query, batch.positive, batch.negatives, batch.negative_mask

    cos, valid = _query_logits(batch, config)
    logits = jnp.where(valid, cos * scale, MASK_VALUE)
    loss = _cross_entropy(logits, valid, config.label_smoothing)
    if config.bidirectional:
        doc_logits = jnp.where(batch.in_batch_ok, _sim(p, q) * scale, MASK_VALUE)
        loss = 0.5 * (loss + _cross_entropy(doc_logits, batch.in_batch_ok, config.label_smoothing))

    metrics = {
        "accuracy": jnp.mean(jnp.argmax(logits, axis=-1) == jnp.arange(q.shape[0])),
        "positive_similarity": jnp.mean(jnp.sum(q * p, axis=-1)),
    }
    if n is not None:
        own = jnp.where(negative_mask, _own_sim(q, n), 0.0)
        metrics["negative_similarity"] = jnp.sum(own) / jnp.maximum(jnp.sum(negative_mask), 1)
    return loss, metrics


def contrastive_loss(
    query: jax.Array,
    positive: jax.Array,
    negatives: jax.Array | None,
    config: ContrastiveLossConfig,
    *,
    logit_scale: jax.Array | None = None,
    positive_ids: jax.Array | None = None,
    negative_mask: jax.Array | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Gecko's contrastive loss (eq. 3) over the global batch, summed over MRL dims.

    Args:
      query: ``[B, D]`` query embeddings (normalised here, in float32).
      positive: ``[B, D]`` positive document embeddings.
      negatives: ``[B, K, D]`` hard negatives (K may be 0), or None.
      config: the loss options.
      logit_scale: scalar; when given, logits are ``cos * logit_scale`` instead of
        ``cos / config.temperature``.
      positive_ids: ``[B]`` ids of the positive texts, for false-negative masking.
      negative_mask: ``[B, K]`` bool, False for padded or missing hard negatives.

    Returns:
      The scalar loss and scalar metrics: ``loss``, ``loss_dim_{d}`` per MRL dim,
      ``accuracy``, ``logit_scale``, ``positive_similarity`` and, with hard negatives,
      ``negative_similarity`` (the last four from the largest dimension).

    Raises:
      ValueError: on inconsistent shapes or an MRL dim larger than D.
    """
    if query.ndim != 2 or positive.shape != query.shape:
        raise ValueError(f"query {query.shape} and positive {positive.shape} must both be [B, D]")
    b, d = query.shape
    if negatives is not None:
        if negatives.ndim != 3 or negatives.shape[0] != b or negatives.shape[2] != d:
            raise ValueError(f"negatives {negatives.shape} must be [B={b}, K, D={d}]")
        if negatives.shape[1] == 0:
            negatives = None
    if negatives is not None:
        k = negatives.shape[1]
        if negative_mask is None:
            negative_mask = jnp.ones((b, k), dtype=bool)
        elif negative_mask.shape != (b, k):
            raise ValueError(f"negative_mask {negative_mask.shape} must be [B, K] = {(b, k)}")
        negative_mask = negative_mask.astype(bool)
        negatives = negatives.astype(jnp.float32)
    dims = config.mrl_dims or (d,)
    if max(dims) > d:
        raise ValueError(f"mrl_dims {dims} has a dim larger than the embedding size {d}")
    weights = config.mrl_weights or (1.0,) * len(dims)

    if config.mask_false_negatives and positive_ids is not None:
        in_batch_ok = (positive_ids[:, None] != positive_ids[None, :]) | jnp.eye(b, dtype=bool)
    else:
        in_batch_ok = jnp.ones((b, b), dtype=bool)
    if logit_scale is None:
        scale = jnp.asarray(1.0 / config.temperature, jnp.float32)
    else:
        scale = jnp.asarray(logit_scale, jnp.float32)

    batch = _Batch(
        query.astype(jnp.float32),
        positive.astype(jnp.float32),
        negatives,
        negative_mask,
        in_batch_ok,
    )
    total = jnp.zeros((), jnp.float32)
    metrics: dict[str, jax.Array] = {}
    for dim, weight in sorted(zip(dims, weights)):
        loss, dim_metrics = _loss_at_dim(batch, scale, dim, config)
        total = total + weight * loss
        if config.mrl_dims:
            metrics[f"loss_dim_{dim}"] = loss
        metrics.update(dim_metrics)  # sorted ascending: the largest dim's metrics win
    metrics["loss"] = total
    metrics["logit_scale"] = scale
    return total, metrics
