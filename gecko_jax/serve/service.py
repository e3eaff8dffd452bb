"""The embedding step both APIs share: limits, tokenization on arrival, batching, dims."""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
from collections.abc import Sequence

import numpy as np

from gecko_jax.serve.backends import Backend
from gecko_jax.serve.batching import Batcher
from gecko_jax.serve.errors import ServiceError


@dataclasses.dataclass(frozen=True)
class Limits:
    """Per-request limits.

    Attributes:
      max_texts: most texts (instances, inputs) in one request.
      max_request_tokens: most tokens, summed over a request's texts after truncation.
    """

    max_texts: int = 250
    max_request_tokens: int = 20_000


@dataclasses.dataclass(frozen=True)
class Embedded:
    """A request's embeddings.

    Attributes:
      embeddings: ``[n, dim]`` float32, L2-normalised.
      token_counts: ``[n]`` tokens the model saw per text.
      truncated: ``[n]`` True where a text was cut to the model's limit.
    """

    embeddings: np.ndarray
    token_counts: np.ndarray
    truncated: np.ndarray


def truncate_dims(embeddings: np.ndarray, dim: int | None) -> np.ndarray:
    """The first ``dim`` values of each row, renormalised (Matryoshka); all when None."""
    if dim is None or dim == embeddings.shape[1]:
        return embeddings
    prefix = embeddings[:, :dim]
    norms = np.sqrt(np.maximum(np.sum(prefix * prefix, axis=1, keepdims=True), 1e-24))
    return np.ascontiguousarray(prefix / norms, dtype=np.float32)


class EmbeddingService:
    """Checks, tokenizes and batches a request's texts.

    Args:
      backend: the model.
      batcher: the shared batch queue in front of it.
      limits: per-request limits.
      tokenize_executor: threads that tokenize requests as they arrive, off the event loop.
    """

    def __init__(
        self,
        backend: Backend,
        batcher: Batcher,
        limits: Limits,
        tokenize_executor: concurrent.futures.Executor,
    ) -> None:
        self.backend = backend
        self.batcher = batcher
        self.limits = limits
        self._tokenize_executor = tokenize_executor

    @property
    def embedding_dim(self) -> int:
        return self.backend.embedding_dim

    def check_count(self, count: int, field: str) -> None:
        """Refuses an empty request or one over the text limit."""
        if count == 0:
            raise ServiceError(400, f"{field} is empty: send at least one text", field)
        if count > self.limits.max_texts:
            raise ServiceError(
                400,
                f"{field} has {count} entries, more than the limit of "
                f"{self.limits.max_texts} per request",
                field,
            )

    def check_dim(self, dim: int | None, field: str) -> None:
        """Refuses an output dimension outside ``1..embedding_dim``."""
        if dim is None:
            return
        if dim > self.embedding_dim:
            raise ServiceError(
                400,
                f"{field}={dim} is above the model's embedding size {self.embedding_dim}",
                field,
            )
        if dim < 1:
            raise ServiceError(400, f"{field}={dim} must be at least 1", field)

    async def embed(
        self,
        texts: Sequence[str],
        tasks: Sequence[str | None],
        kinds: Sequence[str],
        titles: Sequence[str | None],
        dim: int | None,
        auto_truncate: bool,
        field: str,
    ) -> Embedded:
        """Embeds one request's texts.

        Args:
          texts, tasks, kinds, titles: one entry per text (see ``Backend.tokenize``).
          dim: Matryoshka output size, or None for the full embedding.
          auto_truncate: cut over-long texts to the model's limit; if False they are refused.
          field: the request field holding the texts, for error messages.

        Raises:
          ServiceError: an over-long text without ``auto_truncate`` (naming its index),
            a request over the token limit, a bad ``dim``.
        """
        self.check_count(len(texts), field)
        loop = asyncio.get_running_loop()
        tokens = await loop.run_in_executor(
            self._tokenize_executor, self.backend.tokenize, texts, tasks, kinds, titles
        )
        if not auto_truncate and tokens.truncated.any():
            row = int(np.flatnonzero(tokens.truncated)[0])
            raise ServiceError(
                400,
                f"{field}[{row}] is longer than the model's limit of "
                f"{self.backend.max_length} tokens and autoTruncate is false",
                field,
            )
        counts = tokens.token_counts
        total = int(counts.sum())
        if total > self.limits.max_request_tokens:
            raise ServiceError(
                400,
                f"the request has {total} tokens, more than the limit of "
                f"{self.limits.max_request_tokens} per request",
                field,
            )
        embeddings = await self.batcher.embed(tokens.token_ids)
        return Embedded(truncate_dims(embeddings, dim), counts, tokens.truncated)
