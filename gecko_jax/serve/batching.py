"""Dynamic batching by token budget.

Requests arrive already tokenized, so each text's length is known. Their texts join one
FIFO queue (by text, not by request: a large request spreads over several batches and a
small request behind it waits for those texts only, not for the whole request to have
been admitted alone). One coroutine takes texts from the head of the queue until the
next would push the batch past the token budget (the texts' bucketed lengths, summed) or
the batch size, and hands the batch to the single model thread, which runs it in forward
passes of a few compiled shapes (the JAX backend packs several texts a row, the
SavedModel one pads texts sorted by length). While a batch runs, texts gather
for the next, which starts when the model is free; once a full forward pass of texts is
waiting, it is queued behind the running batch at once, so under heavy load the model
thread never waits for the event loop. (Starting a second batch for every text that
arrives would instead split light load into one-text forward passes, the costliest kind
per text.) When the model is idle but other requests are still being tokenized, the
oldest text waits up to ``max_wait_s`` for them, so that under load a forward pass
carries many texts rather than the one that happened to arrive first.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from gecko_jax.serve.metrics import ServiceMetrics
from gecko_jax.shapes import length_bucket

logger = logging.getLogger(__name__)

EmbedFn = Callable[[Sequence[np.ndarray]], np.ndarray]


@dataclasses.dataclass
class _Job:
    """One request's texts in flight."""

    token_ids: Sequence[np.ndarray]
    embeddings: np.ndarray
    remaining: int
    future: asyncio.Future


@dataclasses.dataclass
class _Item:
    job: _Job
    row: int
    enqueued: float


class Batcher:
    """Packs texts of concurrent requests into model batches.

    Create it and call :meth:`start` inside the running event loop.

    Args:
      embed: runs the model on a list of token-id arrays (``Backend.embed``).
      embedding_dim: width of ``embed``'s output.
      executor: the single model thread (every model call goes through it).
      max_batch_tokens: token budget of a batch: the bucketed lengths of its texts, summed
        (the model thread packs or sorts a batch, so it pads little beyond that).
      max_batch_size: most texts in a batch.
      max_length: the model's token limit (lengths pad to buckets up to it).
      metrics: where batch sizes and times are recorded.
      full_pass: texts that fill one forward pass: with at least this many waiting, a
        batch is queued behind the running one.
      max_wait_s: longest the oldest queued text waits for requests still being
        tokenized (see :meth:`incoming`) before a batch starts without them.
    """

    def __init__(
        self,
        embed: EmbedFn,
        embedding_dim: int,
        executor: concurrent.futures.Executor,
        max_batch_tokens: int,
        max_batch_size: int,
        max_length: int,
        metrics: ServiceMetrics,
        full_pass: int = 32,
        max_wait_s: float = 0.005,
    ) -> None:
        if max_batch_tokens < max_length:
            raise ValueError(
                f"max_batch_tokens={max_batch_tokens} is below the model's max_length "
                f"{max_length}: a full-length text would never fit in a batch"
            )
        self._embed = embed
        self._dim = embedding_dim
        self._executor = executor
        self._max_tokens = max_batch_tokens
        self._max_size = max_batch_size
        self._max_length = max_length
        self._metrics = metrics
        self._queue: collections.deque[_Item] = collections.deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._stopping = False
        self._full_pass = full_pass
        self._max_wait_s = max_wait_s
        self._incoming = 0
        self._running: set[asyncio.Future] = set()

    def start(self) -> None:
        """Starts the batching coroutine in the running loop."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="gecko-batcher")

    async def stop(self) -> None:
        """Runs what is queued, then ends the batching coroutine."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await self._task

    @contextlib.contextmanager
    def incoming(self) -> Iterator[None]:
        """Marks a request on its way to :meth:`embed` (being tokenized) for the block."""
        self._incoming += 1
        try:
            yield
        finally:
            self._incoming -= 1

    async def embed(self, token_ids: Sequence[np.ndarray]) -> np.ndarray:
        """Queues a request's texts and returns their ``[n, embedding_dim]`` embeddings."""
        if self._stopping:
            raise RuntimeError("the service is shutting down")
        loop = asyncio.get_running_loop()
        job = _Job(
            token_ids=token_ids,
            embeddings=np.empty((len(token_ids), self._dim), dtype=np.float32),
            remaining=len(token_ids),
            future=loop.create_future(),
        )
        if not token_ids:
            return job.embeddings
        now = time.perf_counter()
        self._queue.extend(_Item(job, row, now) for row in range(len(token_ids)))
        self._metrics.queue_depth.set(len(self._queue))
        self._wake.set()
        return await job.future

    def _next_batch(self) -> list[_Item]:
        batch: list[_Item] = []
        tokens = 0
        while self._queue and len(batch) < self._max_size:
            item = self._queue[0]
            if item.job.future.done():  # the client went away or an earlier batch failed
                self._queue.popleft()
                continue
            cost = length_bucket(len(item.job.token_ids[item.row]), self._max_length)
            if batch and tokens + cost > self._max_tokens:
                break
            batch.append(self._queue.popleft())
            tokens += cost
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue and self._stopping:
                if self._running:
                    await asyncio.wait(self._running)
                return
            if not self._ready():
                self._wake.clear()
                await self._wake.wait()
                continue
            wait_s = self._wait_for_incoming()
            if wait_s > 0:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), wait_s)
                continue
            batch = self._next_batch()
            self._metrics.queue_depth.set(len(self._queue))
            if not batch:
                continue
            token_ids = [item.job.token_ids[item.row] for item in batch]
            running = loop.run_in_executor(self._executor, self._timed_embed, token_ids)
            self._running.add(running)
            running.add_done_callback(lambda done, batch=batch: self._finish(batch, done))

    def _ready(self) -> bool:
        """Whether to form a batch now: the model is idle, or a full pass waits (and at
        most one batch is queued behind the running one)."""
        if not self._queue:
            return False
        if not self._running:
            return True
        return len(self._running) < 2 and len(self._queue) >= self._full_pass

    def _wait_for_incoming(self) -> float:
        """Seconds to hold an idle model for requests still being tokenized (0: start)."""
        if self._running or not self._incoming or len(self._queue) >= self._full_pass:
            return 0.0
        return self._queue[0].enqueued + self._max_wait_s - time.perf_counter()

    def _timed_embed(self, token_ids: list[np.ndarray]) -> tuple[np.ndarray, float, float]:
        start = time.perf_counter()
        embeddings = self._embed(token_ids)
        return embeddings, start, time.perf_counter() - start

    def _finish(self, batch: list[_Item], done: asyncio.Future) -> None:
        """Hands a finished batch's rows to their requests (on the event loop)."""
        self._running.discard(done)
        self._wake.set()
        try:
            embeddings, start, seconds = done.result()
        except Exception as e:  # every waiting request gets the error
            logger.error("model batch of %d texts failed: %s", len(batch), e, exc_info=e)
            for item in batch:
                if not item.job.future.done():
                    item.job.future.set_exception(e)
            return
        for item in batch:
            self._metrics.queue_seconds.observe(start - item.enqueued)
        self._metrics.observe_batch(
            len(batch), sum(len(item.job.token_ids[item.row]) for item in batch), seconds
        )
        for item, embedding in zip(batch, embeddings):
            job = item.job
            if job.future.done():
                continue
            job.embeddings[item.row] = embedding
            job.remaining -= 1
            if job.remaining == 0:
                job.future.set_result(job.embeddings)
