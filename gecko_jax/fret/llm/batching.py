"""Batch mode: the LLM calls of a pipeline stage as one Vertex AI batch prediction job.

:class:`VertexBatchClient` is an :class:`~gecko_jax.fret.llm.base.LLMClient`, so the
FRet pipeline runs on it unchanged (``gecko-fret --llm vertex-batch:MODEL
--batch_staging_dir gs://bucket/path --ranking rc``). Each ``generate`` and
``label_probabilities`` call is queued with a future; once no new call has arrived for
``quiet_s`` (or ``max_batch_requests`` are queued), the queue goes out as one
:class:`~gecko_jax.fret.llm.vertex_batch.VertexBatchJob`, and each caller gets its own
answer, or its own row's error. A stage that awaits all of a shard's calls at once (the
pipeline gathers them) so becomes one job: the generation calls of a shard, then its
re-asks (a smaller job), then its relevance calls.

Cached calls are answered from the SQLite cache at once, without a job; identical calls
waiting together are sent once. Keys, request settings and response parsing are the
online :class:`~gecko_jax.fret.llm.vertex.VertexClient`'s, so the two clients share a
cache. Tokens are charged at batch prices (``pricing.BATCH_DISCOUNT``). There is no
query likelihood (Gemini scores its own output only): ``log_likelihood`` raises
:class:`~gecko_jax.fret.llm.base.NotSupportedError`, as ``VertexClient``'s does.

Resuming: a job's staging directory (and display name) is named by a hash of its
requests, sorted by cache key, so a rerun after a crash submits the same requests and
waits on the same job instead of paying twice.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Sequence
from typing import Any

from gecko_jax.fret.llm.base import (
    Generation,
    GenerationSettings,
    LLMClient,
    LLMError,
    LLMUnavailableError,
    Usage,
)
from gecko_jax.fret.llm.parsing import MissingLabels, label_distribution
from gecko_jax.fret.llm.vertex import log_likelihood_unsupported
from gecko_jax.fret.llm.vertex_batch import (
    Answer,
    AnyRequest,
    BatchRequest,
    LogprobsRequest,
    TopLogprobs,
    VertexBatchJob,
)

log = logging.getLogger(__name__)
_Queue = dict[str, tuple[AnyRequest, "asyncio.Future[Answer]"]]


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Marks a future's exception retrieved (no "never retrieved" warning)."""
    if not future.cancelled():
        future.exception()


class VertexBatchClient(LLMClient):
    """A Gemini model on Vertex AI, every call answered through batch prediction jobs.

    Args:
      model: e.g. ``gemini-2.0-flash``.
      staging_dir: where the jobs' inputs and outputs go (``gs://bucket/path``).
      quiet_s: a job is submitted once no new call arrived for this many seconds.
      max_batch_requests: ... or once this many distinct calls are queued.
      top_logprobs: candidates requested for ``label_probabilities``.
      missing_labels: when no label is among the candidates: ``"raise"`` or ``"uniform"``.
      **job_options: :class:`~gecko_jax.fret.llm.vertex_batch.VertexBatchJob`'s (cache,
        project, location, credentials, prices, polling, retry, progress, ...).

    Raises:
      ValueError: ``quiet_s`` < 0 or ``max_batch_requests`` < 1.
      CredentialsError: no project, or no credentials.
    """

    def __init__(
        self,
        model: str = "gemini-2.0-flash",
        *,
        staging_dir: str,
        quiet_s: float = 0.2,
        max_batch_requests: int = 200_000,
        top_logprobs: int = 20,
        missing_labels: MissingLabels = "raise",
        **job_options: Any,
    ) -> None:
        if quiet_s < 0:
            raise ValueError(f"quiet_s must be >= 0, got {quiet_s}")
        if max_batch_requests < 1:
            raise ValueError(f"max_batch_requests must be >= 1, got {max_batch_requests}")
        self.job = VertexBatchJob(model, staging_dir=staging_dir, **job_options)
        self.model_id = model
        self.quiet_s, self.max_batch_requests = quiet_s, max_batch_requests
        self.top_logprobs, self.missing_labels = top_logprobs, missing_labels
        self.batches = 0  # batches handed to the job runner (each one job unless all got cached)
        self._shared = Usage()  # identical calls answered by one already waiting
        self._queue: _Queue = {}
        self._waiting: dict[str, asyncio.Future[Answer]] = {}  # queued or in a running job
        self._last_arrival = 0.0
        self._timer: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()

    @property
    def usage(self) -> Usage:
        """The jobs' rows, tokens and cost at batch prices, and cache hits."""
        return self.job.usage.add(self._shared)

    async def _generate(self, prompt: str, settings: GenerationSettings) -> Generation:
        answer = await self._ask(BatchRequest(prompt, settings))
        assert isinstance(answer, Generation)
        return answer

    async def log_likelihood(self, prompt: str, continuation: str) -> float:
        raise log_likelihood_unsupported(self.model_id)

    async def label_probabilities(self, prompt: str, labels: Sequence[str]) -> dict[str, float]:
        answer = await self._ask(LogprobsRequest(prompt, self.top_logprobs))
        assert isinstance(answer, TopLogprobs)
        return label_distribution(answer.candidates, labels, missing=self.missing_labels)

    async def _ask(self, request: AnyRequest) -> Answer:
        cached = self.job.cached(request)
        if cached is not None:
            return cached
        key = self.job.cache_key(request)
        waiting = self._waiting.get(key)
        if waiting is not None:
            answer = await asyncio.shield(waiting)
            self._shared = self._shared.add(cache_hits=1)
            return dataclasses.replace(answer, cached=True)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Answer] = loop.create_future()
        future.add_done_callback(_retrieve)
        self._queue[key] = (request, future)
        self._waiting[key] = future
        self._last_arrival = loop.time()
        if len(self._queue) >= self.max_batch_requests:
            self._flush()
        elif self._timer is None:
            self._timer = loop.create_task(self._flush_when_quiet())
        return await asyncio.shield(future)  # a cancelled caller leaves the batch intact

    async def _flush_when_quiet(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._queue:
                delay = self._last_arrival + self.quiet_s - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                else:
                    self._flush()
        finally:
            self._timer = None

    def _flush(self) -> None:
        batch, self._queue = self._queue, {}
        if batch:
            self.batches += 1
            log.info("model %s: batch %d of %d requests", self.model_id, self.batches, len(batch))
            task = asyncio.get_running_loop().create_task(self._run_batch(batch))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _run_batch(self, batch: _Queue) -> None:
        """Runs one job and resolves its callers' futures (each with its own row's error)."""
        try:
            # Sorted by key: the job's input, so its hash and staging directory, does not
            # depend on the order the calls arrived in.
            answers = await self.job.run({key: batch[key][0] for key in sorted(batch)})
        except BaseException as e:
            error = (
                e
                if isinstance(e, Exception)
                else LLMUnavailableError(
                    f"model {self.model_id!r}: batch cancelled (the client was closed)"
                )
            )
            for _, future in batch.values():
                if not future.done():
                    future.set_exception(error)
            if not isinstance(e, Exception):
                raise
        else:
            for key, (_, future) in batch.items():
                answer = answers[key]
                if future.done():
                    continue
                if isinstance(answer, LLMError):
                    future.set_exception(answer)
                else:
                    future.set_result(answer)
        finally:
            for key in batch:
                self._waiting.pop(key, None)

    async def aclose(self) -> None:
        """Stops waiting on running jobs (they keep running on Vertex; a rerun resumes
        them), fails calls still queued, and closes the job runner."""
        tasks = [task for task in (self._timer, *self._running) if task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for _, future in self._queue.values():
            if not future.done():
                future.set_exception(LLMUnavailableError(f"model {self.model_id!r}: client closed"))
        self._queue.clear()
        await self.job.aclose()
