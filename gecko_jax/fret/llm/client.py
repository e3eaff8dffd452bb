"""What every backend shares: the cache, the call runner and the accounting.

A backend subclasses :class:`CachingClient` and implements one-request hooks
(``_generate_once``, ``_log_likelihood_once``, ``_top_logprobs_once``); the public
methods look the call up in the cache, run it under the :class:`CallRunner`'s limits and
retries, store the result and count tokens and cost.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from gecko_jax.fret.llm.base import (
    Generation,
    GenerationSettings,
    LLMClient,
    LLMUnavailableError,
    Usage,
)
from gecko_jax.fret.llm.cache import SQLiteCache, cache_key
from gecko_jax.fret.llm.parsing import MissingLabels, label_distribution
from gecko_jax.fret.llm.pricing import Prices, prices_for
from gecko_jax.fret.llm.ratelimit import RateLimiter
from gecko_jax.fret.llm.transport import CallRunner, RetryPolicy


@dataclasses.dataclass(frozen=True)
class CallResult:
    """One answered backend call: a JSON-serialisable value and the tokens it cost."""

    value: Any
    prompt_tokens: int = 0
    output_tokens: int = 0


def estimate_tokens(*texts: str | None, output_tokens: int = 0) -> int:
    """A rough token count for rate limiting: four characters a token, plus the output."""
    return sum(len(text) for text in texts if text) // 4 + output_tokens


class CachingClient(LLMClient):
    """An :class:`LLMClient` with a cache, limits, retries and accounting.

    Args:
      model_id: the backend's model name; part of every cache key.
      cache: an :class:`SQLiteCache`, a path to one, or None (no caching).
      max_concurrency: requests in flight at once.
      timeout_s: limit on one request, in seconds.
      retry: the retry policy (default: 6 attempts, backoff from 1 s up to 60 s).
      requests_per_minute: client-side request rate limit, or None.
      tokens_per_minute: client-side token rate limit (estimated), or None.
      rate_window_s: the window of those limits (60; shorter in tests).
      prices: USD per 1M tokens: a :class:`Prices` or a table over the defaults.
      top_logprobs: candidates requested for ``label_probabilities`` (at most 20 on
        most servers).
      missing_labels: when no label is among the candidates: ``"raise"``
        (:class:`~gecko_jax.fret.llm.base.LabelsNotFoundError`) or ``"uniform"``.
      seed: seeds the retry jitter.
    """

    def __init__(
        self,
        model_id: str,
        *,
        cache: SQLiteCache | str | os.PathLike[str] | None = None,
        max_concurrency: int = 16,
        timeout_s: float = 120.0,
        retry: RetryPolicy | None = None,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        rate_window_s: float = 60.0,
        prices: Prices | Mapping[str, Prices] | None = None,
        top_logprobs: int = 20,
        missing_labels: MissingLabels = "raise",
        seed: int | None = None,
    ) -> None:
        self.model_id = model_id
        self.prices = prices_for(model_id, prices)
        self.top_logprobs = top_logprobs
        self.missing_labels = missing_labels
        self.key_extras: dict[str, Any] = {}  # backend settings that change answers (cache key)
        self._owns_cache = cache is not None and not isinstance(cache, SQLiteCache)
        self.cache = SQLiteCache(cache) if self._owns_cache else cache  # type: ignore[arg-type]
        limiter = (
            RateLimiter(requests_per_minute, tokens_per_minute, rate_window_s)
            if requests_per_minute or tokens_per_minute
            else None
        )
        self.runner = CallRunner(
            model_id,
            max_concurrency=max_concurrency,
            timeout_s=timeout_s,
            retry=retry,
            limiter=limiter,
            seed=seed,
        )
        self._usage = Usage()
        self._in_flight: dict[str, asyncio.Future[Any]] = {}

    @property
    def usage(self) -> Usage:
        return self._usage

    def _count(self, **increments: Any) -> None:
        self._usage = self._usage.add(**increments)

    def _record(self, result: CallResult) -> None:
        self._count(
            requests=1,
            prompt_tokens=result.prompt_tokens,
            output_tokens=result.output_tokens,
            cost_usd=self.prices.cost(result.prompt_tokens, result.output_tokens),
        )

    async def _call(
        self,
        method: str,
        prompt: str,
        params: Mapping[str, Any],
        once: Callable[[], Awaitable[CallResult]],
        tokens: int,
    ) -> tuple[dict[str, Any], bool]:
        """The cached record of a call (``{"value", "prompt_tokens", "output_tokens"}``) and
        whether it came from the cache (or from an identical call already in flight)."""
        key = cache_key(self.model_id, method, prompt, {**params, **self.key_extras})
        if self.cache is not None:
            hit = self.cache.get(key)
            if hit is not None:
                self._count(cache_hits=1)
                return hit, True
        pending = self._in_flight.get(key)
        if pending is not None:
            record = await asyncio.shield(pending)
            self._count(cache_hits=1)
            return record, True
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.add_done_callback(lambda f: f.cancelled() or f.exception())  # no "never retrieved"
        self._in_flight[key] = future
        try:
            result = await self.runner.run(
                once, tokens=tokens, on_retry=lambda: self._count(retries=1)
            )
            record = dataclasses.asdict(result)
            if self.cache is not None:
                self.cache.put(key, record, model=self.model_id, method=method)
            self._record(result)
            future.set_result(record)
            return record, False
        except BaseException as e:
            future.set_exception(
                e
                if isinstance(e, Exception)
                else LLMUnavailableError(f"model {self.model_id!r}: call cancelled")
            )
            raise
        finally:
            del self._in_flight[key]

    async def _generate(self, prompt: str, settings: GenerationSettings) -> Generation:
        record, cached = await self._call(
            "generate",
            prompt,
            settings.cache_params(),
            lambda: self._generate_once(prompt, settings),
            estimate_tokens(settings.system, prompt, output_tokens=settings.max_output_tokens),
        )
        return Generation(record["value"], record["prompt_tokens"], record["output_tokens"], cached)

    async def log_likelihood(self, prompt: str, continuation: str) -> float:
        record, _ = await self._call(
            "log_likelihood",
            prompt,
            {"continuation": continuation},
            lambda: self._log_likelihood_once(prompt, continuation),
            estimate_tokens(prompt, continuation, output_tokens=1),
        )
        return float(record["value"])

    async def label_probabilities(self, prompt: str, labels: Sequence[str]) -> dict[str, float]:
        # The cache keeps the raw candidates, so one call serves any label set.
        record, _ = await self._call(
            "top_logprobs",
            prompt,
            {"top_logprobs": self.top_logprobs},
            lambda: self._top_logprobs_once(prompt, self.top_logprobs),
            estimate_tokens(prompt, output_tokens=1),
        )
        return label_distribution(
            [tuple(pair) for pair in record["value"]], labels, missing=self.missing_labels
        )

    async def aclose(self) -> None:
        await self._close()
        if self._owns_cache and self.cache is not None:
            self.cache.close()

    # Backend hooks: one request each, no retries (the runner retries them).

    async def _generate_once(self, prompt: str, settings: GenerationSettings) -> CallResult:
        """``value``: the generated text."""
        raise NotImplementedError

    async def _log_likelihood_once(self, prompt: str, continuation: str) -> CallResult:
        """``value``: log P(continuation | prompt)."""
        raise NotImplementedError

    async def _top_logprobs_once(self, prompt: str, k: int) -> CallResult:
        """``value``: ``[[token, logprob], ...]``, the top ``k`` candidates of the first
        answer token."""
        raise NotImplementedError

    async def _close(self) -> None:
        """Releases the backend's connections."""
