"""How one backend call is made: bounded concurrency, rate limits, a per-attempt timeout,
and retries with exponential backoff and full jitter.

A client wraps each HTTP exchange in an *attempt* coroutine that raises
:class:`TransientError` for what is worth retrying (HTTP 408/429/5xx; timeouts and
connection errors are recognised here) and :class:`~gecko_jax.fret.llm.base.LLMInputError`
(or any other error) for what is not; :class:`CallRunner` does the rest.
"""

from __future__ import annotations

import asyncio
import dataclasses
import email.utils
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx

from gecko_jax.fret.llm.base import LLMError, LLMInputError, LLMUnavailableError
from gecko_jax.fret.llm.ratelimit import RateLimiter

T = TypeVar("T")

# Statuses that say "try again later" rather than "this request is wrong".
RETRYABLE_STATUSES = frozenset({408, 429})

_TRANSIENT_EXCEPTIONS = (ConnectionError, TimeoutError, httpx.TransportError)


def _request_of(error: BaseException) -> str:
    """`` METHOD URL`` of the request an httpx error failed on, so the message names it."""
    try:
        request = error.request  # httpx raises RuntimeError when the error has none
    except (AttributeError, RuntimeError):
        return ""
    return f" {request.method} {request.url}:"


class TransientError(LLMError):
    """One attempt failed in a way worth retrying.

    Attributes:
      retry_after: seconds the server asked to wait (``Retry-After``), if it said.
    """

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def error_for_status(
    model_id: str, status: int, detail: str, retry_after: float | None = None
) -> LLMError:
    """The error for a non-2xx answer: transient for 408/429/5xx, LLMInputError otherwise."""
    message = f"model {model_id!r}: HTTP {status}: {detail}"
    if status in RETRYABLE_STATUSES or status >= 500:
        return TransientError(message, retry_after)
    return LLMInputError(message)


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter: attempt n (0-based) waits a uniform draw
    from [0, min(max_backoff_s, initial_backoff_s * 2**n)], or the server's
    ``Retry-After`` if that is longer.

    Attributes:
      max_attempts: attempts in all, the first included.
      initial_backoff_s: the backoff cap after the first failure.
      max_backoff_s: the largest backoff cap.
    """

    max_attempts: int = 6
    initial_backoff_s: float = 1.0
    max_backoff_s: float = 60.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"RetryPolicy.max_attempts must be >= 1, got {self.max_attempts}")

    def delay(self, failures: int, retry_after: float | None, rng: random.Random) -> float:
        """Seconds to sleep after ``failures`` failed attempts (>= 1)."""
        cap = min(self.max_backoff_s, self.initial_backoff_s * 2 ** (failures - 1))
        return max(rng.uniform(0.0, cap), retry_after or 0.0)


class ShardedHTTPClient:
    """Several ``httpx.AsyncClient`` pools of a few connections each; every request goes to
    the least busy one.

    Why not one pool: httpcore's pool re-examines every connection (a socket query each)
    whenever a request starts or ends, so one pool of 64 connections spends milliseconds
    of CPU per request and tops out near 100 requests/s on a small machine; pools of four
    keep that cost flat (``bench/fret_throughput.py``).

    Args:
      max_connections: connections in all.
      per_client: connections per pool.
      **client_kwargs: passed to each ``httpx.AsyncClient`` (headers, timeout, ...).
    """

    def __init__(self, max_connections: int, *, per_client: int = 4, **client_kwargs: Any) -> None:
        count = -(-max_connections // per_client)
        limits = httpx.Limits(max_connections=per_client, max_keepalive_connections=per_client)
        # One TLS context for all pools: building one loads the CA bundle (tens of ms).
        client_kwargs.setdefault("verify", httpx.create_ssl_context())
        self._clients = [httpx.AsyncClient(limits=limits, **client_kwargs) for _ in range(count)]
        self._busy = [0] * count

    async def post(self, url: httpx.URL | str, **kwargs: Any) -> httpx.Response:
        """``httpx.AsyncClient.post`` on the least busy pool."""
        index = min(range(len(self._busy)), key=self._busy.__getitem__)
        self._busy[index] += 1
        try:
            return await self._clients[index].post(url, **kwargs)
        finally:
            self._busy[index] -= 1

    async def aclose(self) -> None:
        """Closes every pool."""
        for client in self._clients:
            await client.aclose()


class CallRunner:
    """Runs attempts under a concurrency bound, a rate limit, a timeout and a retry policy.

    Args:
      model_id: named in error messages.
      max_concurrency: attempts in flight at once (backoff sleeps do not hold a slot).
      timeout_s: limit on one attempt, in seconds.
      retry: the retry policy.
      limiter: client-side rate limits, or None.
      seed: seeds the backoff jitter (None: from the OS).
    """

    def __init__(
        self,
        model_id: str,
        *,
        max_concurrency: int = 16,
        timeout_s: float = 120.0,
        retry: RetryPolicy | None = None,
        limiter: RateLimiter | None = None,
        seed: int | None = None,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
        self.model_id = model_id
        self.max_concurrency = max_concurrency
        self.timeout_s = timeout_s
        self.retry = retry or RetryPolicy()
        self.limiter = limiter
        self._semaphore = asyncio.Semaphore(max_concurrency)
        self._rng = random.Random(seed)

    async def _attempt(self, attempt: Callable[[], Awaitable[T]], tokens: int) -> T:
        async with self._semaphore:
            if self.limiter is not None:
                await self.limiter.acquire(tokens)
            try:
                return await asyncio.wait_for(attempt(), self.timeout_s)
            except asyncio.TimeoutError as e:
                raise TransientError(
                    f"model {self.model_id!r}: no answer within {self.timeout_s:g} s (timeout_s)"
                ) from e
            except _TRANSIENT_EXCEPTIONS as e:
                raise TransientError(
                    f"model {self.model_id!r}:{_request_of(e)} {type(e).__name__}: {e}"
                ) from e

    async def run(
        self,
        attempt: Callable[[], Awaitable[T]],
        *,
        tokens: int = 0,
        on_retry: Callable[[], None] | None = None,
    ) -> T:
        """Runs ``attempt`` until it succeeds, fails for good, or attempts run out.

        Args:
          attempt: makes one request; a fresh awaitable per call.
          tokens: the request's estimated tokens, for the tokens-per-minute limit.
          on_retry: called before each retry (for accounting).

        Raises:
          LLMUnavailableError: every attempt failed transiently.
          LLMError: (or anything else ``attempt`` raises) a non-retryable failure.
        """
        for failures in range(1, self.retry.max_attempts + 1):
            try:
                return await self._attempt(attempt, tokens)
            except TransientError as e:
                if failures == self.retry.max_attempts:
                    raise LLMUnavailableError(f"{e} (gave up after {failures} attempt(s))") from e
                await asyncio.sleep(self.retry.delay(failures, e.retry_after, self._rng))
                if on_retry is not None:
                    on_retry()
        raise AssertionError("unreachable")
