"""Exact top-k search by inner product, blocked over the documents and the queries.

Retrieval evaluation and FRet mining both rank documents by the inner product of
L2-normalised embeddings (cosine). :class:`ExactIndex` keeps the document embeddings on
the accelerator in fixed-size blocks; for each block of queries it scores one document
block at a time with a ``HIGHEST``-precision matmul, takes the block's top k with
``jax.lax.top_k`` and merges it into the running top k. Padding makes every step the
same shape, so one program is compiled per index and k. Memory per step is
``query_block x block_size`` scores.

Ties are broken by document index: among equal scores the lower index ranks first
(``jax.lax.top_k`` is stable, and the running top k always holds lower indices than the
block merged into it), i.e. the order of ``numpy.lexsort((index, -score))``.

With ``approximate=True`` on a TPU, ``jax.lax.approx_max_k`` replaces the per-block top
k; other backends stay exact.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

DEFAULT_BLOCK_SIZE = 65_536
DEFAULT_QUERY_BLOCK = 1_024


def check_queries(queries: Any, shape: tuple[int, ...], k: int) -> np.ndarray:
    """Queries as float32 ``[Q, d]`` for documents of ``shape`` ``[N, d]``; checks ``k``.

    Raises:
      ValueError: arrays that are not 2-D, different widths, or ``k`` outside ``1..N``.
    """
    q = np.asarray(queries, np.float32)
    if q.ndim != 2 or len(shape) != 2:
        raise ValueError(
            f"query and passage embeddings must be 2-D, got shapes {q.shape} and {shape}"
        )
    if q.shape[1] != shape[1]:
        raise ValueError(f"query dim {q.shape[1]} != passage dim {shape[1]}")
    if not 1 <= k <= shape[0]:
        raise ValueError(f"k={k} must be in 1..{shape[0]} (the number of passages)")
    return q


def check_documents(documents: Any, block_size: int | None = None) -> np.ndarray:
    """Documents as float32 ``[N, d]``, N >= 1; checks ``block_size`` (None or >= 1).

    Raises:
      ValueError: an empty or non-2-D array, or a block size below 1.
    """
    docs = np.asarray(documents, np.float32)
    if docs.ndim != 2 or docs.shape[0] == 0:
        raise ValueError(
            f"passage embeddings must be a non-empty 2-D array, got shape {docs.shape}"
        )
    if block_size is not None and block_size < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}")
    return docs


@functools.partial(jax.jit, static_argnames=("k", "block_k", "approximate", "total"))
def _merge_block(
    best_scores: jax.Array,
    best_ids: jax.Array,
    queries: jax.Array,
    block: jax.Array,
    offset: jax.Array,
    valid: jax.Array,
    *,
    k: int,
    block_k: int,
    approximate: bool,
    total: int,
) -> tuple[jax.Array, jax.Array]:
    scores = jnp.matmul(queries, block.T, precision=jax.lax.Precision.HIGHEST)
    column = jnp.arange(block.shape[0])
    scores = jnp.where(column[None, :] < valid, scores, -jnp.inf)
    if approximate:
        block_scores, block_ids = jax.lax.approx_max_k(
            scores, block_k, reduction_input_size_override=total
        )
    else:
        block_scores, block_ids = jax.lax.top_k(scores, block_k)
    # Running entries first: on equal scores top_k keeps them, and they have lower indices.
    all_scores = jnp.concatenate([best_scores, block_scores], axis=1)
    all_ids = jnp.concatenate([best_ids, block_ids.astype(jnp.int32) + offset], axis=1)
    top_scores, where = jax.lax.top_k(all_scores, k)
    return top_scores, jnp.take_along_axis(all_ids, where, axis=1)


class ExactIndex:
    """Document embeddings held on the accelerator for repeated exact top-k searches.

    Args:
      documents: ``[N, d]`` embeddings (N >= 1).
      block_size: documents per block (default ``min(N, 65536)``).
      approximate: ``jax.lax.approx_max_k`` per block, on TPU only (elsewhere ignored).

    Attributes:
      size, dim: ``N`` and ``d``.
      block_size: documents per block.
      approximate: whether the per-block top k is approximate.
    """

    def __init__(
        self, documents: Any, block_size: int | None = None, approximate: bool = False
    ) -> None:
        docs = check_documents(documents, block_size)
        self.size, self.dim = docs.shape
        self.approximate = approximate and jax.default_backend() == "tpu"
        self.block_size = min(block_size or DEFAULT_BLOCK_SIZE, self.size)
        count = -(-self.size // self.block_size)
        padded = np.zeros((count * self.block_size, self.dim), np.float32)
        padded[: self.size] = docs
        self._blocks = [jax.device_put(b) for b in np.split(padded, count)]

    def search(
        self, queries: Any, k: int, query_block: int = DEFAULT_QUERY_BLOCK
    ) -> tuple[np.ndarray, np.ndarray]:
        """The top ``k`` documents of each query: ``(scores [Q, k] float32, ids [Q, k] int64)``.

        Rows are sorted by score, descending; ties by index, ascending.

        Raises:
          ValueError: see :func:`check_queries`.
        """
        q = check_queries(queries, (self.size, self.dim), k)
        if q.shape[0] == 0:
            return np.zeros((0, k), np.float32), np.zeros((0, k), np.int64)
        rows = min(query_block, q.shape[0])
        count = -(-q.shape[0] // rows)
        padded = np.zeros((count * rows, self.dim), np.float32)
        padded[: q.shape[0]] = q
        results = [self._search_block(jax.device_put(b), k) for b in np.split(padded, count)]
        scores = np.concatenate([np.asarray(s) for s, _ in results])[: q.shape[0]]
        ids = np.concatenate([np.asarray(i) for _, i in results])[: q.shape[0]]
        return scores, ids.astype(np.int64)

    def _search_block(self, queries: jax.Array, k: int) -> tuple[jax.Array, jax.Array]:
        best_scores = jnp.full((queries.shape[0], k), -jnp.inf, jnp.float32)
        best_ids = jnp.full((queries.shape[0], k), -1, jnp.int32)
        block_k = min(k, self.block_size)
        for number, block in enumerate(self._blocks):
            offset = number * self.block_size
            best_scores, best_ids = _merge_block(
                best_scores,
                best_ids,
                queries,
                block,
                jnp.int32(offset),
                jnp.int32(self.size - offset),
                k=k,
                block_k=block_k,
                approximate=self.approximate,
                total=self.size,
            )
        return best_scores, best_ids


def exact_top_k(
    queries: Any,
    documents: Any,
    k: int,
    *,
    block_size: int | None = None,
    query_block: int = DEFAULT_QUERY_BLOCK,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` documents by inner product for every query (see the module docstring).

    Args:
      queries: ``[Q, d]``.
      documents: ``[N, d]``, N >= 1.
      k: documents per query, ``1 <= k <= N``.
      block_size: documents per block.
      query_block: queries per block.

    Returns:
      ``(scores [Q, k] float32, indices [Q, k] int64)``, best first; ties keep the lower
      document index first.
    """
    check_queries(queries, np.shape(documents), k)
    return ExactIndex(documents, block_size).search(queries, k, query_block)
