"""Gradient caching (GradCache, Gao et al. 2021) for contrastive losses over big batches.

The loss needs every embedding of the global batch at once, but the encoder's
activations need only exist for a chunk at a time:

1. embed the batch chunk by chunk without keeping activations;
2. compute the loss on the full batch and its gradient w.r.t. every embedding (and
   the loss's own parameters, such as a learnable logit scale);
3. re-run each chunk under ``jax.vjp`` with its cached embedding gradients as
   cotangents, summing parameter gradients in a ``lax.scan`` carry.

Peak memory is one chunk's activations plus O(batch) embeddings, whatever the number
of chunks. ``embed_fn`` must be a deterministic function of ``(params, chunk, start)``
(dropout keys derived from the example indices, not the chunking), so both passes
see the same randomness and the result equals :func:`plain_loss_and_grads`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from gecko_jax import partitioning as P

Params = Any
Inputs = Any  # a tree of [B, ...] arrays
Embeddings = Any  # a tree of [B, ...] arrays
Metrics = dict[str, jax.Array]
EmbedFn = Callable[[Params, Inputs, jax.Array], Embeddings]
LossFn = Callable[[Embeddings, Params], tuple[jax.Array, Metrics]]
LossAndGrads = tuple[jax.Array, Metrics, tuple[Params, Params]]


def leading_size(tree: Any) -> int:
    """The shared leading (example) dimension of a tree of arrays."""
    sizes = {x.shape[0] for x in jax.tree_util.tree_leaves(tree)}
    if len(sizes) != 1:
        raise ValueError(f"inputs disagree on the batch size: {sorted(sizes)}")
    return sizes.pop()


def check_chunk_size(batch_size: int, chunk_size: int, data_axis_size: int = 1) -> int:
    """Validates a GradCache chunk size and returns the number of chunks.

    Raises:
      ValueError: the chunk size is not positive, does not divide the batch, or
        cannot be split evenly over the data axis.
    """
    if chunk_size < 1:
        raise ValueError(f"grad_cache_chunk_size must be >= 1, got {chunk_size}")
    if batch_size % chunk_size:
        raise ValueError(
            f"grad_cache_chunk_size {chunk_size} does not divide the global batch size {batch_size}"
        )
    if chunk_size % data_axis_size:
        raise ValueError(
            f"grad_cache_chunk_size {chunk_size} is not divisible by the data axis size "
            f"{data_axis_size} (each chunk is split over the replica x data devices)"
        )
    return batch_size // chunk_size


def constrain_rows(x: jax.Array, leading: int = 0, mesh: Mesh | None = None) -> jax.Array:
    """Shards dim ``leading`` (the examples) over the logical 'batch' axis's mesh axes.

    Uses the logical axis rules in context; ``mesh`` defaults to the one in context.
    """
    names = (None,) * leading + (P.BATCH,) + (None,) * (x.ndim - leading - 1)
    return nn.with_logical_constraint(x, names, mesh=mesh)


def to_chunks(tree: Any, num_chunks: int, mesh: Mesh | None = None) -> Any:
    """``[B, ...] -> [num_chunks, B / num_chunks, ...]``, each chunk's rows over the batch axes."""

    def split(x: jax.Array) -> jax.Array:
        x = x.reshape((num_chunks, x.shape[0] // num_chunks) + x.shape[1:])
        return constrain_rows(x, 1, mesh)

    return jax.tree_util.tree_map(split, tree)


def from_chunks(tree: Any, mesh: Mesh | None = None) -> Any:
    """Inverse of :func:`to_chunks`."""
    return jax.tree_util.tree_map(
        lambda x: constrain_rows(x.reshape((-1,) + x.shape[2:]), 0, mesh), tree
    )


def concat_rows(arrays: list[jax.Array], shards: int, mesh: Mesh | None = None) -> jax.Array:
    """Concatenates arrays whose rows are split in ``shards`` blocks, block by block.

    Each device keeps its rows (a plain concatenation would move most of them).
    """
    if len(arrays) == 1:
        return constrain_rows(arrays[0], 0, mesh)
    tail = arrays[0].shape[1:]
    joined = jnp.concatenate([a.reshape((shards, -1) + tail) for a in arrays], axis=1)
    return constrain_rows(joined.reshape((-1,) + tail), 0, mesh)


def split_rows(
    x: jax.Array, sizes: list[int], shards: int, mesh: Mesh | None = None
) -> list[jax.Array]:
    """Inverse of :func:`concat_rows` for arrays of ``sizes`` rows."""
    x = constrain_rows(x, 0, mesh)
    if len(sizes) == 1:
        return [x]
    x = x.reshape((shards, -1) + x.shape[1:])
    cuts = np.cumsum([size // shards for size in sizes])[:-1]
    return [
        constrain_rows(part.reshape((-1,) + x.shape[2:]), 0, mesh)
        for part in jnp.split(x, cuts, axis=1)
    ]


def plain_loss_and_grads(
    embed_fn: EmbedFn, loss_fn: LossFn, params: Params, loss_params: Params, inputs: Inputs
) -> LossAndGrads:
    """Loss, metrics and ``(param grads, loss-param grads)`` by direct autodiff."""

    def total(p: Params, lp: Params) -> tuple[jax.Array, Metrics]:
        return loss_fn(embed_fn(p, inputs, jnp.zeros((), jnp.int32)), lp)

    (loss, metrics), grads = jax.value_and_grad(total, argnums=(0, 1), has_aux=True)(
        params, loss_params
    )
    return loss, metrics, grads


def grad_cache_loss_and_grads(
    embed_fn: EmbedFn,
    loss_fn: LossFn,
    params: Params,
    loss_params: Params,
    inputs: Inputs,
    chunk_size: int,
    grad_shardings: Any = None,
    mesh: Mesh | None = None,
) -> LossAndGrads:
    """As :func:`plain_loss_and_grads`, with activations alive for one chunk at a time.

    Args:
      embed_fn: ``(params, inputs_chunk, start) -> embeddings_chunk``, where ``start``
        is the global index of the chunk's first example.
      loss_fn: ``(embeddings, loss_params) -> (loss, metrics)`` on the full batch.
      params: encoder parameters.
      loss_params: parameters of the loss only (may be an empty dict).
      inputs: a tree of ``[B, ...]`` arrays.
      chunk_size: examples per chunk; must divide B.
      grad_shardings: optional shardings of ``params``, imposed on the gradient
        accumulator so it stays sharded like the parameters.
      mesh: the mesh of the chunks' sharding constraints (default: the one in context).

    Returns:
      ``(loss, metrics, (param_grads, loss_param_grads))``.
    """
    num_chunks = check_chunk_size(leading_size(inputs), chunk_size)
    chunks = to_chunks(inputs, num_chunks, mesh)
    starts = jnp.arange(num_chunks, dtype=jnp.int32) * chunk_size

    def constrain(grads: Params) -> Params:
        if grad_shardings is None:
            return grads
        return jax.lax.with_sharding_constraint(grads, grad_shardings)

    # Pass 1: forward only; nothing is differentiated here, so no residuals are kept.
    frozen = jax.lax.stop_gradient(params)
    embeddings = from_chunks(
        jax.lax.map(lambda xs: embed_fn(frozen, xs[0], xs[1]), (chunks, starts)), mesh
    )
    (loss, metrics), (embedding_grads, loss_param_grads) = jax.value_and_grad(
        loss_fn, argnums=(0, 1), has_aux=True
    )(embeddings, loss_params)

    # Pass 2: per chunk, forward again and pull the cached cotangents back to params.
    def accumulate(total: Params, xs: tuple[Inputs, jax.Array, Embeddings]) -> tuple[Params, None]:
        chunk, start, cotangent = xs
        _, pullback = jax.vjp(lambda p: embed_fn(p, chunk, start), params)
        (grads,) = pullback(cotangent)
        return constrain(jax.tree_util.tree_map(jnp.add, total, grads)), None

    zeros = constrain(jax.tree_util.tree_map(jnp.zeros_like, params))
    param_grads, _ = jax.lax.scan(
        accumulate, zeros, (chunks, starts, to_chunks(embedding_grads, num_chunks, mesh))
    )
    return loss, metrics, (param_grads, loss_param_grads)
