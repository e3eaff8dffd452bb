"""FRet step 2a: embed ``task + query`` and the passages, retrieve the top N neighbours.

Retrieval is exact maximum inner product (cosine, the embeddings being L2-normalised).
The ``"jax"`` backend is :class:`gecko_jax.search.ExactIndex`: the passage embeddings
stay on the accelerator in fixed-size blocks, searched block by block; among equal
scores the lower passage index ranks first, i.e. the order of
``numpy.lexsort((index, -score))``. With ``approximate=True`` on a TPU,
``jax.lax.approx_max_k`` replaces the per-block top k (other backends stay exact).

The ``"faiss"`` backend (``faiss.index_factory`` string, ``"Flat"`` = exact) serves
corpora whose embeddings do not fit in accelerator memory; its results are re-sorted by
the same tie rule, but which of several passages tied at the k-th score it returns is
faiss's choice.

Nothing is excluded: the seed passage is usually its own query's top-1 neighbour.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from gecko_jax import formats
from gecko_jax.fret.config import RetrievalConfig
from gecko_jax.fret.corpus import Passage
from gecko_jax.search import DEFAULT_QUERY_BLOCK, ExactIndex, check_documents, check_queries
from gecko_jax.text_encoder import TextEncoder

BACKENDS = ("jax", "faiss")


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
        self.backend = backend
        if backend == "jax":
            self._exact = ExactIndex(passage_embeddings, block_size, approximate)
            self.size, self.dim = self._exact.size, self._exact.dim
            return
        passages = check_documents(passage_embeddings, block_size)
        self.size, self.dim = passages.shape
        self._faiss = _faiss_index(passages, faiss_index)

    @property
    def approximate(self) -> bool:
        """Whether the jax backend's per-block top k is approximate (TPU only)."""
        return self.backend == "jax" and self._exact.approximate

    def search(
        self, query_embeddings: Any, k: int, query_block: int = DEFAULT_QUERY_BLOCK
    ) -> tuple[np.ndarray, np.ndarray]:
        """The top ``k`` passages of each query: ``(scores [Q, k] float32, indices [Q, k] int64)``.

        Rows are sorted by score, descending; ties by index, ascending.
        """
        if self.backend == "jax":
            return self._exact.search(query_embeddings, k, query_block)
        queries = check_queries(query_embeddings, (self.size, self.dim), k)
        if queries.shape[0] == 0:
            return np.zeros((0, k), np.float32), np.zeros((0, k), np.int64)
        scores, ids = self._faiss.search(queries, k)
        if (ids < 0).any():
            raise RuntimeError(
                f"the faiss index returned fewer than k={k} neighbours for some queries; "
                "search more of it (nprobe) or use 'Flat'"
            )
        return _sort_rows(scores, ids)


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
