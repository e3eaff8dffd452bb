"""Vertex AI batch prediction of Gemini ``generate`` calls, for corpus-scale runs.

When to use it: generation over hundreds of thousands of passages or more, where the
answers may take hours (Vertex aims to finish a batch within 24 hours) but cost half the
online price and do not count against online quotas. For a few thousand calls, or when
the next stage waits on the answers, :class:`~gecko_jax.fret.llm.vertex.VertexClient`
is simpler and faster.

How: the requests are written as Vertex batch JSONL (``{"request": GenerateContentRequest}``
a line, each tagged with a ``labels.gecko_row`` index) under ``staging_dir`` (a
``gs://`` URI for real jobs; a local directory for tests), a ``batchPredictionJobs`` job
is created through the Gen AI SDK (``batches.create``), its state is polled with growing
intervals, and the prediction JSONL it writes is read back and mapped to the request keys.

It shares :class:`~gecko_jax.fret.llm.cache.SQLiteCache` keys with ``VertexClient.generate``:
requests already cached are not sent, and answers are stored in the cache, so the
pipeline's generation stage run afterwards with the same cache makes no online calls for
them. The staging directory is named by a hash of the requests and holds the job's name,
so rerunning an interrupted ``run`` resumes waiting on the same job instead of paying twice.
"""

from __future__ import annotations

import asyncio
import dataclasses
import glob as globlib
import hashlib
import json
import os
from typing import Any, Iterator, Mapping, Sequence

from tqdm.auto import tqdm

from gecko_jax.fret.llm.base import Generation, LLMError, LLMUnavailableError, Usage
from gecko_jax.fret.llm.cache import SQLiteCache, cache_key
from gecko_jax.fret.llm.client import generate_params
from gecko_jax.fret.llm.pricing import BATCH_DISCOUNT, Prices, prices_for
from gecko_jax.fret.llm.transport import CallRunner, RetryPolicy
from gecko_jax.fret.llm.vertex import (call_vertex, default_credentials, make_genai_client,
                                       request_config, resolve_project, response_text,
                                       response_tokens, rest_request)

ROW_LABEL = "gecko_row"
_DONE = frozenset({"JOB_STATE_SUCCEEDED", "JOB_STATE_PARTIALLY_SUCCEEDED"})
_FAILED = frozenset({"JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED"})


@dataclasses.dataclass(frozen=True)
class BatchRequest:
    """One ``generate`` call, with the parameters of :meth:`LLMClient.generate`."""

    prompt: str
    system: str | None = None
    json_mode: bool = False
    temperature: float = 0.0
    max_output_tokens: int = 512
    seed: int | None = None


def _is_url(path: str) -> bool:
    return "://" in path


def _open(path: str, mode: str) -> Any:
    """Local paths with the standard library; URLs (gs://) with tf.io.gfile, imported only
    then because TensorFlow takes seconds to import."""
    if _is_url(path):
        import tensorflow as tf

        return tf.io.gfile.GFile(path, mode)
    if "w" in mode:
        os.makedirs(os.path.dirname(path), exist_ok=True)
    return open(path, mode, encoding="utf-8")


def _glob(pattern: str) -> list[str]:
    if _is_url(pattern):
        import tensorflow as tf

        return sorted(tf.io.gfile.glob(pattern))
    return sorted(globlib.glob(pattern))


def _exists(path: str) -> bool:
    if _is_url(path):
        import tensorflow as tf

        return bool(tf.io.gfile.exists(path))
    return os.path.exists(path)


def _jsonl(paths: Sequence[str]) -> Iterator[dict[str, Any]]:
    for path in paths:
        with _open(path, "r") as f:
            for number, line in enumerate(f, start=1):
                if line.strip():
                    try:
                        yield json.loads(line)
                    except json.JSONDecodeError as e:
                        raise LLMError(f"{path}:{number}: not JSON ({e.msg})") from e


class VertexBatchJob:
    """Runs many ``generate`` calls as one Vertex AI batch prediction job.

    Args:
      model: e.g. ``gemini-2.0-flash``.
      staging_dir: where inputs and outputs go: ``gs://bucket/path`` (local for tests).
      project, location, credentials, base_url, api_version, safety_settings: as for
        :class:`~gecko_jax.fret.llm.vertex.VertexClient`.
      cache: an :class:`SQLiteCache` or a path to one, shared with ``VertexClient``.
      prices: online prices (a :class:`Prices` or a table); the job is charged
        ``batch_discount`` of them.
      poll_initial_s, poll_max_s: the first polling interval and its cap (it grows 1.5x).
      max_wait_s: give up waiting after this long (the job keeps running).
      timeout_s, retry: per API call (create, get), as for clients.
      display_name: the job's name in the console and in the staging path.
    """

    def __init__(self, model: str = "gemini-2.0-flash", *, staging_dir: str,
                 project: str | None = None, location: str | None = None,
                 credentials: Any = None, base_url: str | None = None, api_version: str = "v1",
                 safety_settings: Sequence[Mapping[str, str]] | None = None,
                 cache: SQLiteCache | str | os.PathLike[str] | None = None,
                 prices: Prices | Mapping[str, Prices] | None = None,
                 batch_discount: float = BATCH_DISCOUNT, poll_initial_s: float = 30.0,
                 poll_max_s: float = 300.0, max_wait_s: float = 48 * 3600.0,
                 timeout_s: float = 120.0, retry: RetryPolicy | None = None,
                 display_name: str = "gecko-fret") -> None:
        self.model_id = model
        self.staging_dir = staging_dir.rstrip("/")
        self.safety_settings = list(safety_settings) if safety_settings else None
        self._owns_cache = cache is not None and not isinstance(cache, SQLiteCache)
        self.cache = SQLiteCache(cache) if self._owns_cache else cache  # type: ignore[arg-type]
        self.prices = prices_for(model, prices).scaled(batch_discount)
        self.poll_initial_s, self.poll_max_s, self.max_wait_s = poll_initial_s, poll_max_s, max_wait_s
        self.display_name = display_name
        self.project, self.location = resolve_project(project, location)
        self._client = make_genai_client(
            project=self.project, location=self.location,
            credentials=credentials if credentials is not None else default_credentials(),
            base_url=base_url, api_version=api_version, timeout_s=timeout_s)
        self._runner = CallRunner(model, max_concurrency=1, timeout_s=timeout_s, retry=retry)
        self._usage = Usage()

    @property
    def usage(self) -> Usage:
        """Rows answered, cache hits, tokens and cost (at batch prices) so far."""
        return self._usage

    def _cache_key(self, request: BatchRequest) -> str:
        params = generate_params(system=request.system, json_mode=request.json_mode,
                                 temperature=request.temperature,
                                 max_output_tokens=request.max_output_tokens, seed=request.seed)
        return cache_key(self.model_id, "generate", request.prompt, params)

    def _line(self, row: int, request: BatchRequest) -> dict[str, Any]:
        body = rest_request(request.prompt, request_config(
            system=request.system, json_mode=request.json_mode, temperature=request.temperature,
            max_output_tokens=request.max_output_tokens, seed=request.seed,
            safety_settings=self.safety_settings))
        body["labels"] = {ROW_LABEL: str(row)}
        return {"request": body}

    async def _api(self, call: Any) -> Any:
        return await self._runner.run(lambda: call_vertex(self.model_id, call),
                                      on_retry=lambda: self._count(retries=1))

    def _count(self, **increments: Any) -> None:
        self._usage = self._usage.add(**increments)

    async def submit(self, requests: Sequence[BatchRequest]) -> str:
        """Writes the input JSONL and creates the job (or finds the one already created
        for these exact requests); returns the job's resource name."""
        from google.genai import types

        lines = [json.dumps(self._line(row, request), ensure_ascii=False, sort_keys=True)
                 for row, request in enumerate(requests)]
        digest = hashlib.sha256("\n".join([self.model_id, *lines]).encode()).hexdigest()[:16]
        run_dir = f"{self.staging_dir}/{self.display_name}-{digest}"
        marker = f"{run_dir}/job.json"
        if _exists(marker):
            with _open(marker, "r") as f:
                return str(json.load(f)["name"])
        with _open(f"{run_dir}/requests.jsonl", "w") as f:
            f.write("\n".join(lines) + "\n")
        job = await self._api(lambda: self._client.aio.batches.create(
            model=self.model_id,
            src=types.BatchJobSource(format="jsonl", gcs_uri=[f"{run_dir}/requests.jsonl"]),
            config=types.CreateBatchJobConfig(
                display_name=f"{self.display_name}-{digest}",
                dest=types.BatchJobDestination(format="jsonl", gcs_uri=f"{run_dir}/output"))))
        with _open(marker, "w") as f:
            json.dump({"name": job.name, "rows": len(lines)}, f)
        return str(job.name)

    async def wait(self, name: str, rows: int | None = None) -> Any:
        """Polls job ``name`` until it ends; returns the final ``BatchJob``.

        Raises:
          LLMUnavailableError: the job failed, was cancelled or expired, or did not end
            within ``max_wait_s``.
        """
        interval, waited = self.poll_initial_s, 0.0
        with tqdm(total=rows, desc=f"batch {name.rsplit('/', 1)[-1]}", unit="row") as bar:
            while True:
                job = await self._api(lambda: self._client.aio.batches.get(name=name))
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
                        "it keeps running: rerun with the same requests to resume waiting")
                await asyncio.sleep(interval)
                waited += interval
                interval = min(interval * 1.5, self.poll_max_s)

    def collect(self, job: Any, requests: Sequence[BatchRequest]) -> list[Generation | LLMError]:
        """Reads a finished job's predictions, in request order (an error for a row that
        failed or has no prediction), and stores the answers in the cache."""
        output_dir = job.output_info.gcs_output_directory if job.output_info else None
        if not output_dir:
            raise LLMError(f"batch job {job.name} reports no outputInfo.gcsOutputDirectory")
        results: list[Generation | LLMError] = [
            LLMUnavailableError(f"batch job {job.name}: no prediction for row {row}")
            for row in range(len(requests))]
        for line in _jsonl(_glob(f"{output_dir.rstrip('/')}/predictions*.jsonl")):
            row = int(((line.get("request") or {}).get("labels") or {}).get(ROW_LABEL, -1))
            if not 0 <= row < len(requests):
                continue
            if line.get("status") or not line.get("response"):
                results[row] = LLMError(f"batch job {job.name}, row {row}: "
                                        f"{line.get('status') or 'no response'}")
                continue
            try:
                text = response_text(self.model_id, line["response"])
            except LLMError as e:
                results[row] = e
                continue
            prompt_tokens, output_tokens = response_tokens(line["response"])
            results[row] = Generation(text, prompt_tokens, output_tokens)
            self._count(requests=1, prompt_tokens=prompt_tokens, output_tokens=output_tokens,
                        cost_usd=self.prices.cost(prompt_tokens, output_tokens))
            if self.cache is not None:
                self.cache.put(self._cache_key(requests[row]),
                               {"value": text, "prompt_tokens": prompt_tokens,
                                "output_tokens": output_tokens},
                               model=self.model_id, method="generate")
        return results

    async def run(self, requests: Mapping[str, BatchRequest | str]) -> dict[str, Generation | LLMError]:
        """Answers ``{key: request}`` (a str is a prompt with default parameters); cached
        requests are answered from the cache, the rest by one batch job."""
        todo: dict[str, BatchRequest] = {}
        results: dict[str, Generation | LLMError] = {}
        for key, request in requests.items():
            request = BatchRequest(request) if isinstance(request, str) else request
            record = self.cache.get(self._cache_key(request)) if self.cache is not None else None
            if record is not None:
                self._count(cache_hits=1)
                results[key] = Generation(record["value"], record["prompt_tokens"],
                                          record["output_tokens"], cached=True)
            else:
                todo[key] = request
        if todo:
            batch = list(todo.values())
            job = await self.wait(await self.submit(batch), rows=len(batch))
            results.update(zip(todo, self.collect(job, batch)))
        return {key: results[key] for key in requests}

    async def aclose(self) -> None:
        """Closes the SDK's connections."""
        await self._client.aio.aclose()
        self._client.close()
        if self._owns_cache and self.cache is not None:
            self.cache.close()

    async def __aenter__(self) -> VertexBatchJob:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
