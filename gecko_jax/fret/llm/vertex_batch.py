"""Vertex AI batch prediction of Gemini calls, for corpus-scale runs.

When to use it: generation and relevance scoring over hundreds of thousands of passages
or more, where the answers may take hours (Vertex aims to finish a batch within 24
hours) but cost half the online price and do not count against online quotas. For a
few thousand calls, or when the next stage waits on the answers,
:class:`~gecko_jax.fret.llm.vertex.VertexClient` is simpler and faster. The pipeline
uses jobs through :class:`~gecko_jax.fret.llm.batching.VertexBatchClient`.

How: the requests (``generate`` calls as :class:`BatchRequest`, ``label_probabilities``
calls as :class:`LogprobsRequest`) are written as Vertex batch JSONL
(``{"request": GenerateContentRequest}`` a line, each tagged with a ``labels.gecko_row``
index) under ``staging_dir`` (a ``gs://`` URI for real jobs; a local directory for
tests), a ``batchPredictionJobs`` job is created through the Gen AI SDK
(``batches.create``), its state is polled with growing intervals, and the prediction
JSONL it writes is read back and mapped to the request keys.

It shares :class:`~gecko_jax.fret.llm.cache.SQLiteCache` keys, request settings and
response parsing with ``VertexClient``: requests already cached are not sent, and
answers are stored in the cache, so an online client run afterwards with the same cache
makes no calls for them. The staging directory is named by a hash of the requests and
holds the job's name, so rerunning an interrupted ``run`` resumes waiting on the same
job instead of paying twice. The job's display name carries the same hash, and before
creating a job the live jobs of that name are listed: a create whose reply was lost (a
timeout, a crash before the name was recorded) is found, not created twice.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar

from tqdm.auto import tqdm

from gecko_jax import fileio
from gecko_jax.fret.llm.base import (
    Generation,
    GenerationSettings,
    LLMError,
    LLMUnavailableError,
    Usage,
)
from gecko_jax.fret.llm.cache import SQLiteCache, cache_key
from gecko_jax.fret.llm.pricing import BATCH_DISCOUNT, Prices, prices_for
from gecko_jax.fret.llm.transport import CallRunner, RetryPolicy
from gecko_jax.fret.llm.vertex import (
    VertexSession,
    call_vertex,
    request_config,
    response_text,
    response_tokens,
    response_top_candidates,
    rest_request,
    top_logprobs_config,
)

ROW_LABEL = "gecko_row"
_DONE = frozenset({"JOB_STATE_SUCCEEDED", "JOB_STATE_PARTIALLY_SUCCEEDED"})
_FAILED = frozenset({"JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED"})


@dataclasses.dataclass(frozen=True)
class BatchRequest:
    """One ``generate`` call: its prompt and settings."""

    prompt: str
    settings: GenerationSettings = GenerationSettings()

    method: ClassVar[str] = "generate"

    def params(self) -> dict[str, Any]:
        """The parameters in the call's cache key (as ``VertexClient.generate``'s)."""
        return self.settings.cache_params()

    def config(self, safety_settings: Sequence[Mapping[str, str]] | None) -> dict[str, Any]:
        """The REST generation settings."""
        return request_config(self.settings, safety_settings=safety_settings)

    @staticmethod
    def parse(model_id: str, response: Mapping[str, Any]) -> str:
        """The cached value of a response: its text."""
        return response_text(model_id, response)

    @staticmethod
    def answer(record: Mapping[str, Any], cached: bool) -> Generation:
        """The caller's answer from a cache record."""
        return Generation(record["value"], record["prompt_tokens"], record["output_tokens"], cached)


@dataclasses.dataclass(frozen=True)
class TopLogprobs:
    """The top candidates of a :class:`LogprobsRequest`'s first output token.

    Attributes:
      candidates: ``[(token, logprob), ...]``, most likely first.
      prompt_tokens, output_tokens: what the call cost.
      cached: served from the cache.
    """

    candidates: list[tuple[str, float]]
    prompt_tokens: int
    output_tokens: int
    cached: bool = False


@dataclasses.dataclass(frozen=True)
class LogprobsRequest:
    """One ``label_probabilities`` call: the top ``top_logprobs`` first tokens of the answer."""

    prompt: str
    top_logprobs: int = 20

    method: ClassVar[str] = "top_logprobs"

    def params(self) -> dict[str, Any]:
        """The parameters in the call's cache key (as ``VertexClient.label_probabilities``')."""
        return {"top_logprobs": self.top_logprobs}

    def config(self, safety_settings: Sequence[Mapping[str, str]] | None) -> dict[str, Any]:
        """The REST generation settings (``responseLogprobs``, ``logprobs``)."""
        return top_logprobs_config(self.top_logprobs, safety_settings)

    @staticmethod
    def parse(model_id: str, response: Mapping[str, Any]) -> list[list[Any]]:
        """The cached value of a response: ``[[token, logprob], ...]``."""
        return response_top_candidates(model_id, response)

    @staticmethod
    def answer(record: Mapping[str, Any], cached: bool) -> TopLogprobs:
        """The caller's answer from a cache record."""
        return TopLogprobs(
            [(str(token), float(value)) for token, value in record["value"]],
            record["prompt_tokens"],
            record["output_tokens"],
            cached,
        )


AnyRequest = BatchRequest | LogprobsRequest
Answer = Generation | TopLogprobs


def _jsonl(paths: Sequence[str]) -> Iterator[dict[str, Any]]:
    for path in paths:
        with fileio.open(path) as f:
            for number, line in enumerate(f, start=1):
                if line.strip():
                    try:
                        yield json.loads(line)
                    except json.JSONDecodeError as e:
                        raise LLMError(f"{path}:{number}: not JSON ({e.msg})") from e


class VertexBatchJob:
    """Runs many ``generate`` and ``label_probabilities`` calls as one Vertex AI batch
    prediction job.

    Args:
      model: e.g. ``gemini-2.0-flash``.
      staging_dir: where inputs and outputs go: ``gs://bucket/path`` (local for tests).
      cache: an :class:`SQLiteCache` or a path to one, shared with ``VertexClient``.
      prices: online prices (a :class:`Prices` or a table); the job is charged
        ``batch_discount`` of them.
      poll_initial_s, poll_max_s: the first polling interval and its cap (it grows 1.5x).
      max_wait_s: give up waiting after this long (the job keeps running).
      timeout_s, retry: per API call (list, create, get), as for clients.
      display_name: the job's name in the console and in the staging path.
      progress: show a progress bar per job.
      **session_options: :class:`~gecko_jax.fret.llm.vertex.VertexSession`'s (project,
        location, credentials, base_url, api_version, safety_settings, thinking_budget),
        as for ``VertexClient``.
    """

    def __init__(
        self,
        model: str = "gemini-2.0-flash",
        *,
        staging_dir: str,
        cache: SQLiteCache | str | os.PathLike[str] | None = None,
        prices: Prices | Mapping[str, Prices] | None = None,
        batch_discount: float = BATCH_DISCOUNT,
        poll_initial_s: float = 30.0,
        poll_max_s: float = 300.0,
        max_wait_s: float = 48 * 3600.0,
        timeout_s: float = 120.0,
        retry: RetryPolicy | None = None,
        display_name: str = "gecko-fret",
        progress: bool = True,
        **session_options: Any,
    ) -> None:
        self.session = VertexSession(**session_options, timeout_s=timeout_s)
        self.model_id = model
        self.staging_dir = staging_dir.rstrip("/")
        self._owns_cache = cache is not None and not isinstance(cache, SQLiteCache)
        self.cache = SQLiteCache(cache) if self._owns_cache else cache  # type: ignore[arg-type]
        self.prices = prices_for(model, prices).scaled(batch_discount)
        self.poll_initial_s, self.poll_max_s, self.max_wait_s = (
            poll_initial_s,
            poll_max_s,
            max_wait_s,
        )
        self.display_name = display_name
        self.progress = progress
        self._runner = CallRunner(model, max_concurrency=1, timeout_s=timeout_s, retry=retry)
        self._usage = Usage()

    @property
    def usage(self) -> Usage:
        """Rows answered, cache hits, tokens and cost (at batch prices) so far."""
        return self._usage

    def cache_key(self, request: AnyRequest) -> str:
        """The request's key in the cache (the online ``VertexClient``'s key for the call)."""
        return cache_key(
            self.model_id,
            request.method,
            request.prompt,
            {**request.params(), **self.session.key_extras()},
        )

    def cached(self, request: AnyRequest) -> Answer | None:
        """The cached answer to ``request`` (counted as a cache hit), or None."""
        record = self.cache.get(self.cache_key(request)) if self.cache is not None else None
        if record is None:
            return None
        self._count(cache_hits=1)
        return request.answer(record, cached=True)

    def _line(self, row: int, request: AnyRequest) -> dict[str, Any]:
        body = rest_request(
            request.prompt,
            self.session.with_thinking(request.config(self.session.safety_settings)),
        )
        body["labels"] = {ROW_LABEL: str(row)}
        return {"request": body}

    async def _api(self, call: Any) -> Any:
        return await self._runner.run(
            lambda: call_vertex(self.model_id, call), on_retry=lambda: self._count(retries=1)
        )

    def _count(self, **increments: Any) -> None:
        self._usage = self._usage.add(**increments)

    async def find(self, display_name: str, source_uri: str) -> Any | None:
        """A job named ``display_name`` reading ``source_uri`` that has not failed, or None."""
        from google.genai import types

        pager = await self.session.client.aio.batches.list(
            config=types.ListBatchJobsConfig(filter=f'display_name="{display_name}"')
        )
        async for job in pager:  # the name is checked here too: the filter is the server's
            state = job.state.value if job.state is not None else "JOB_STATE_UNSPECIFIED"
            sources = job.src.gcs_uri if job.src is not None else None
            if (
                job.display_name == display_name
                and sources == [source_uri]
                and state not in _FAILED
            ):
                return job
        return None

    async def _find_or_create(self, display_name: str, run_dir: str) -> Any:
        from google.genai import types

        source_uri = f"{run_dir}/requests.jsonl"
        job = await self.find(display_name, source_uri)
        if job is not None:
            return job
        return await self.session.client.aio.batches.create(
            model=self.model_id,
            src=types.BatchJobSource(format="jsonl", gcs_uri=[source_uri]),
            config=types.CreateBatchJobConfig(
                display_name=display_name,
                dest=types.BatchJobDestination(format="jsonl", gcs_uri=f"{run_dir}/output"),
            ),
        )

    async def submit(self, requests: Sequence[AnyRequest]) -> str:
        """Writes the input JSONL and creates the job, or finds the one already created for
        these exact requests (its name recorded in the staging directory, or a live job of
        its display name); returns the job's resource name."""
        lines = [
            json.dumps(self._line(row, request), ensure_ascii=False, sort_keys=True)
            for row, request in enumerate(requests)
        ]
        digest = hashlib.sha256("\n".join([self.model_id, *lines]).encode()).hexdigest()[:16]
        name = f"{self.display_name}-{digest}"
        run_dir = f"{self.staging_dir}/{name}"
        marker = f"{run_dir}/job.json"
        if fileio.exists(marker):
            with fileio.open(marker) as f:
                return str(json.load(f)["name"])
        fileio.makedirs(run_dir)
        with fileio.open(f"{run_dir}/requests.jsonl", "w") as f:
            f.write("\n".join(lines) + "\n")
        # Listing inside the attempt: a retried create whose first reply was lost finds that job.
        job = await self._api(lambda: self._find_or_create(name, run_dir))
        with fileio.atomic_open(marker) as f:  # a half-written marker would block a resume
            json.dump({"name": job.name, "display_name": name, "rows": len(lines)}, f)
        return str(job.name)

    async def wait(self, name: str, rows: int | None = None) -> Any:
        """Polls job ``name`` until it ends; returns the final ``BatchJob``.

        Raises:
          LLMUnavailableError: the job failed, was cancelled or expired, or did not end
            within ``max_wait_s``.
        """
        interval, waited = self.poll_initial_s, 0.0
        with tqdm(
            total=rows,
            desc=f"batch {name.rsplit('/', 1)[-1]}",
            unit="row",
            disable=not self.progress,
        ) as bar:
            while True:
                job = await self._api(lambda: self.session.client.aio.batches.get(name=name))
                state = job.state.value if job.state is not None else "JOB_STATE_UNSPECIFIED"
                stats = job.completion_stats
                done = (stats.successful_count or 0) + (stats.failed_count or 0) if stats else 0
                bar.set_postfix_str(state.removeprefix("JOB_STATE_").lower())
                bar.update(max(0, done - bar.n))
                if state in _DONE:
                    return job
                if state in _FAILED:
                    error = job.error.message if job.error is not None else "no error message"
                    raise LLMUnavailableError(f"batch job {name} ended in {state}: {error}")
                if waited >= self.max_wait_s:
                    raise LLMUnavailableError(
                        f"batch job {name} still {state} after {waited:.0f} s (max_wait_s); "
                        "it keeps running: rerun with the same requests to resume waiting"
                    )
                await asyncio.sleep(interval)
                waited += interval
                interval = min(interval * 1.5, self.poll_max_s)

    def collect(self, job: Any, requests: Sequence[AnyRequest]) -> list[Answer | LLMError]:
        """Reads a finished job's predictions, in request order (an error for a row that
        failed or has no prediction), and stores the answers in the cache."""
        output_dir = job.output_info.gcs_output_directory if job.output_info else None
        if not output_dir:
            raise LLMError(f"batch job {job.name} reports no outputInfo.gcsOutputDirectory")
        results: list[Answer | LLMError] = [
            LLMUnavailableError(f"batch job {job.name}: no prediction for row {row}")
            for row in range(len(requests))
        ]
        for line in _jsonl(fileio.glob(f"{output_dir.rstrip('/')}/predictions*.jsonl")):
            row = int(((line.get("request") or {}).get("labels") or {}).get(ROW_LABEL, -1))
            if not 0 <= row < len(requests):
                continue
            if line.get("status") or not line.get("response"):
                results[row] = LLMError(
                    f"batch job {job.name}, row {row}: {line.get('status') or 'no response'}"
                )
                continue
            request = requests[row]
            try:
                value = request.parse(self.model_id, line["response"])
            except LLMError as e:
                results[row] = e
                continue
            prompt_tokens, output_tokens = response_tokens(line["response"])
            record = {
                "value": value,
                "prompt_tokens": prompt_tokens,
                "output_tokens": output_tokens,
            }
            results[row] = request.answer(record, cached=False)
            self._count(
                requests=1,
                prompt_tokens=prompt_tokens,
                output_tokens=output_tokens,
                cost_usd=self.prices.cost(prompt_tokens, output_tokens),
            )
            if self.cache is not None:
                self.cache.put(
                    self.cache_key(request), record, model=self.model_id, method=request.method
                )
        return results

    async def run(self, requests: Mapping[str, AnyRequest | str]) -> dict[str, Answer | LLMError]:
        """Answers ``{key: request}`` (a str is a ``generate`` prompt with default
        parameters); cached requests are answered from the cache, the rest by one batch job.

        Returns:
          Per key, in the given order: a :class:`Generation` for a :class:`BatchRequest`,
          a :class:`TopLogprobs` for a :class:`LogprobsRequest`, or the row's
          :class:`LLMError`.
        """
        todo: dict[str, AnyRequest] = {}
        results: dict[str, Answer | LLMError] = {}
        for key, request in requests.items():
            request = BatchRequest(request) if isinstance(request, str) else request
            answer = self.cached(request)
            if answer is not None:
                results[key] = answer
            else:
                todo[key] = request
        if todo:
            batch = list(todo.values())
            job = await self.wait(await self.submit(batch), rows=len(batch))
            results.update(zip(todo, self.collect(job, batch)))
        return {key: results[key] for key in requests}

    async def aclose(self) -> None:
        """Closes the SDK's connections."""
        await self.session.aclose()
        if self._owns_cache and self.cache is not None:
            self.cache.close()

    async def __aenter__(self) -> VertexBatchJob:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
