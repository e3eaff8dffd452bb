"""FRet step 2a: embed ``task + query`` and the passages, retrieve the top N neighbours.

Retrieval is exact maximum inner product (cosine, the embeddings being L2-normalised).
The ``"jax"`` backend keeps the passage embeddings on the accelerator in fixed-size
blocks; for each block of queries it scores one passage block at a time with a
``HIGHEST``-precision matmul, takes the block's top k with ``jax.lax.top_k`` and merges
it into the running top k. Padding makes every step the same shape, so one program is
compiled per run. Memory per step is ``query_block x block_size`` scores.

Ties are broken by passage index: among equal scores the lower index ranks first
(``jax.lax.top_k`` is stable, and the running top k always holds lower indices than the
block merged into it), i.e. the order of ``numpy.lexsort((index, -score))``.

With ``approximate=True`` on a TPU, ``jax.lax.approx_max_k`` replaces the per-block top
k (other backends stay exact). The ``"faiss"`` backend (``faiss.index_factory`` string,
``"Flat"`` = exact) serves corpora whose embeddings do not fit in accelerator memory;
its results are re-sorted by the same tie rule, but which of several passages tied at
the k-th score it returns is faiss's choice.

Nothing is excluded: the seed passage is usually its own query's top-1 neighbour.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import numpy as np

from gecko_jax.data import formats
from gecko_jax.fret.config import RetrievalConfig
from gecko_jax.fret.corpus import Passage

BACKENDS = ("jax", "faiss")
DEFAULT_BLOCK_SIZE = 65_536
DEFAULT_QUERY_BLOCK = 1_024


class TextEncoder(Protocol):
    """What retrieval needs of :class:`gecko_jax.encoder.Encoder`."""

    def encode(
        self,
        texts: Sequence[str],
        task: str | None = None,
        kind: str = "query",
        dim: int | None = None,
        batch_size: int = 32,
        titles: Sequence[str | None] | None = None,
        show_progress: bool | None = None,
    ) -> np.ndarray: ...


def _check_queries(queries: Any, shape: tuple[int, int], k: int) -> np.ndarray:
    """Queries as float32 ``[Q, d]`` for passages of ``shape``; checks ``k``."""
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


class PassageIndex:
    """Passage embeddings held for repeated exact top-k searches.

    Args:
      passage_embeddings: ``[N, d]`` float32.
      block_size: passages per block (jax backend; default ``min(N, 65536)``).
      backend: ``"jax"`` or ``"faiss"``.
      approximate: ``approx_max_k`` per block on TPU (jax backend).
      faiss_index: the faiss ``index_factory`` string (faiss backend).
    """

    def __init__(
        self,
        passage_embeddings: Any,
        block_size: int | None = None,
        backend: str = "jax",
        approximate: bool = False,
        faiss_index: str = "Flat",
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        passages = np.asarray(passage_embeddings, np.float32)
        if passages.ndim != 2 or passages.shape[0] == 0:
            raise ValueError(
                f"passage embeddings must be a non-empty 2-D array, got shape {passages.shape}"
            )
        if block_size is not None and block_size < 1:
            raise ValueError(f"block_size must be >= 1, got {block_size}")
        self.size, self.dim = passages.shape
        self.backend = backend
        self.approximate = approximate and jax.default_backend() == "tpu"
        if backend == "faiss":
            self._faiss = _faiss_index(passages, faiss_index)
            return
        self.block_size = min(block_size or DEFAULT_BLOCK_SIZE, self.size)
        count = -(-self.size // self.block_size)
        padded = np.zeros((count * self.block_size, self.dim), np.float32)
        padded[: self.size] = passages
        self._blocks = [jax.device_put(b) for b in np.split(padded, count)]

    def search(
        self, query_embeddings: Any, k: int, query_block: int = DEFAULT_QUERY_BLOCK
    ) -> tuple[np.ndarray, np.ndarray]:
        """The top ``k`` passages of each query: ``(scores [Q, k] float32, indices [Q, k] int64)``.

        Rows are sorted by score, descending; ties by index, ascending.
        """
        queries = _check_queries(query_embeddings, (self.size, self.dim), k)
        if queries.shape[0] == 0:
            return np.zeros((0, k), np.float32), np.zeros((0, k), np.int64)
        if self.backend == "faiss":
            scores, ids = self._faiss.search(queries, k)
            if (ids < 0).any():
                raise RuntimeError(
                    f"the faiss index returned fewer than k={k} neighbours for some queries; "
                    "search more of it (nprobe) or use 'Flat'"
                )
            return _sort_rows(scores, ids)
        rows = min(query_block, queries.shape[0])
        count = -(-queries.shape[0] // rows)
        padded = np.zeros((count * rows, self.dim), np.float32)
        padded[: queries.shape[0]] = queries
        results = [self._search_block(jax.device_put(b), k) for b in np.split(padded, count)]
        scores = np.concatenate([np.asarray(s) for s, _ in results])[: queries.shape[0]]
        ids = np.concatenate([np.asarray(i) for _, i in results])[: queries.shape[0]]
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


def _faiss_index(passages: np.ndarray, spec: str) -> Any:
    import faiss  # optional backend, imported on use

    index = faiss.index_factory(passages.shape[1], spec, faiss.METRIC_INNER_PRODUCT)
    if not index.is_trained:
        index.train(passages)
    index.add(passages)
    return index


def _sort_rows(scores: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.lexsort((ids, -scores), axis=-1)
    return (
        np.take_along_axis(scores, order, 1).astype(np.float32),
        np.take_along_axis(ids, order, 1).astype(np.int64),
    )


def top_k_neighbours(
    query_embeddings: Any,
    passage_embeddings: Any,
    k: int,
    block_size: int | None = None,
    backend: str = "jax",
    approximate: bool = False,
    faiss_index: str = "Flat",
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` inner-product neighbours (see the module docstring).

    Args:
      query_embeddings: ``[Q, d]``.
      passage_embeddings: ``[N, d]``.
      k: neighbours per query, ``1 <= k <= N``.
      block_size: passages per block (jax backend).
      backend: ``"jax"`` or ``"faiss"``.
      approximate: ``jax.lax.approx_max_k`` per block when running on TPU.
      faiss_index: faiss ``index_factory`` string.

    Returns:
      ``(scores [Q, k] float32, indices [Q, k] int64)``, best first.
    """
    _check_queries(query_embeddings, np.shape(passage_embeddings), k)
    index = PassageIndex(passage_embeddings, block_size, backend, approximate, faiss_index)
    return index.search(query_embeddings, k)


def passage_texts(
    passages: Sequence[Passage], config: RetrievalConfig
) -> tuple[list[str], list[str] | None]:
    """Document-side texts (and titles for the gecko format) of the passages."""
    if config.input_format == "gecko":
        return [p.text for p in passages], [p.title for p in passages]
    return [f"{p.title}. {p.text}" if p.title else p.text for p in passages], None


def embed_passages(
    encoder: TextEncoder,
    passages: Sequence[Passage],
    config: RetrievalConfig,
    progress: bool = False,
) -> np.ndarray:
    """``[N, d]`` document embeddings of the passages (with titles), in order."""
    texts, titles = passage_texts(passages, config)
    # Any non-None task switches the encoder to its "title: ... | text: ..." template.
    task = "" if config.input_format == "gecko" else None
    return encoder.encode(
        texts,
        task=task,
        kind="document",
        dim=config.dim,
        batch_size=config.batch_size,
        titles=titles,
        show_progress=progress,
    )


def embed_queries(
    encoder: TextEncoder, tasks: Sequence[str], queries: Sequence[str], config: RetrievalConfig
) -> np.ndarray:
    """``[Q, d]`` query-side embeddings of ``task + query``, in order.

    The gecko format gives the same strings as ``Encoder.encode(queries, task=task,
    kind="query")`` per distinct task, formatted here with the encoder's own
    ``input_format`` so that one call embeds them all (LLM-written tasks are mostly
    distinct); the plain format embeds ``"{task}: {query}"``.
    """
    if len(tasks) != len(queries):
        raise ValueError(f"{len(tasks)} tasks for {len(queries)} queries")
    if config.input_format == "gecko":
        template = getattr(encoder, "input_format", formats.InputFormat())
        texts = [template.query(q, t) for t, q in zip(tasks, queries)]
    else:
        texts = [f"{t}: {q}" for t, q in zip(tasks, queries)]
    return encoder.encode(
        texts, kind="query", dim=config.dim, batch_size=config.batch_size, show_progress=False
    )
