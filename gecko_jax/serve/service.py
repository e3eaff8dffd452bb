"""The embedding step both APIs share: limits, tokenization on arrival, batching, dims."""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
from collections.abc import Callable, Sequence

import numpy as np

from gecko_jax.embedding_math import matryoshka_truncate
from gecko_jax.serve.backends import Backend
from gecko_jax.serve.batching import Batcher
from gecko_jax.serve.errors import ServiceError
from gecko_jax.text_encoder import Tokenized


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
    return matryoshka_truncate(embeddings, dim)


_Rows = tuple[Sequence[str], Sequence[str | None], Sequence[str], Sequence[str | None]]


class TokenizeQueue:
    """Tokenizes the texts of requests that arrive together in one backend call.

    A tokenizer call has a fixed cost (a TensorFlow function call) that dwarfs a single
    short text's, so under concurrent load requests waiting at the same moment are
    tokenized together: each call takes every request pending when it starts.

    Args:
      tokenize: ``Backend.tokenize``.
      executor: the threads that run it.
      max_calls: calls in flight at once (the executor's threads).
    """

    def __init__(
        self,
        tokenize: Callable[..., Tokenized],
        executor: concurrent.futures.Executor,
        max_calls: int,
    ) -> None:
        self._tokenize = tokenize
        self._executor = executor
        self._max_calls = max_calls
        self._calls = 0
        self._pending: list[tuple[_Rows, asyncio.Future]] = []

    async def tokenize(
        self,
        texts: Sequence[str],
        tasks: Sequence[str | None],
        kinds: Sequence[str],
        titles: Sequence[str | None],
    ) -> Tokenized:
        """One request's texts as model inputs (see ``Backend.tokenize``)."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._pending.append(((texts, tasks, kinds, titles), future))
        if self._calls < self._max_calls:
            self._calls += 1
            loop.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                taken, self._pending = self._pending, []
                columns = [[value for rows, _ in taken for value in rows[i]] for i in range(4)]
                try:
                    tokens = await loop.run_in_executor(self._executor, self._tokenize, *columns)
                except Exception as e:  # every request of the call gets the error
                    for _, future in taken:
                        if not future.done():
                            future.set_exception(e)
                    continue
                start = 0
                for rows, future in taken:
                    end = start + len(rows[0])
                    if not future.done():
                        future.set_result(
                            Tokenized(tokens.token_ids[start:end], tokens.truncated[start:end])
                        )
                    start = end
        finally:
            self._calls -= 1


class EmbeddingService:
    """Checks, tokenizes and batches a request's texts.

    Args:
      backend: the model.
      batcher: the shared batch queue in front of it.
      limits: per-request limits.
      tokenize_executor: threads that tokenize requests as they arrive, off the event loop.
      tokenize_threads: how many of them (concurrent tokenizer calls).
    """

    def __init__(
        self,
        backend: Backend,
        batcher: Batcher,
        limits: Limits,
        tokenize_executor: concurrent.futures.Executor,
        tokenize_threads: int = 1,
    ) -> None:
        self.backend = backend
        self.batcher = batcher
        self.limits = limits
        self._tokenizer = TokenizeQueue(backend.tokenize, tokenize_executor, tokenize_threads)

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
        with self.batcher.incoming():
            tokens = await self._tokenizer.tokenize(texts, tasks, kinds, titles)
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
