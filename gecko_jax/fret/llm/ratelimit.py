"""Client-side rate limits: requests and tokens per window, as token buckets.

Hand-written because the one library that does this for asyncio (aiolimiter) is not a
dependency here and has no notion of a request costing many units (tokens) at once
beyond its own capacity.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class TokenBucket:
    """A bucket of ``capacity`` units refilled at ``rate_per_s``; ``acquire`` waits for units.

    Waiters are served first come, first served (one lock), so a large request is not
    starved by a stream of small ones.
    """

    def __init__(
        self, rate_per_s: float, capacity: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if rate_per_s <= 0 or capacity <= 0:
            raise ValueError(
                f"rate_per_s and capacity must be positive, got {rate_per_s}, {capacity}"
            )
        self.rate_per_s = rate_per_s
        self.capacity = capacity
        self._clock = clock
        self._level = capacity
        self._updated = clock()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = self._clock()
        self._level = min(self.capacity, self._level + (now - self._updated) * self.rate_per_s)
        self._updated = now

    async def acquire(self, amount: float = 1.0) -> None:
        """Takes ``amount`` units (at most ``capacity``: a larger request takes it all)."""
        amount = min(amount, self.capacity)
        async with self._lock:
            self._refill()
            while self._level < amount:
                await asyncio.sleep((amount - self._level) / self.rate_per_s)
                self._refill()
            self._level -= amount


class RateLimiter:
    """Requests-per-window and tokens-per-window limits (either may be None: no limit).

    Args:
      requests_per_minute: requests allowed per ``window_s``.
      tokens_per_minute: tokens (input + expected output) allowed per ``window_s``.
      window_s: the window the limits are counted over; 60 for per-minute quotas
        (tests use a fraction of a second). A full window's worth may go in a burst.
    """

    def __init__(
        self,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        window_s: float = 60.0,
    ) -> None:
        self._requests = (
            TokenBucket(requests_per_minute / window_s, requests_per_minute)
            if requests_per_minute
            else None
        )
        self._tokens = (
            TokenBucket(tokens_per_minute / window_s, tokens_per_minute)
            if tokens_per_minute
            else None
        )

    async def acquire(self, tokens: int = 0) -> None:
        """Waits until one request of about ``tokens`` tokens fits under both limits."""
        if self._requests is not None:
            await self._requests.acquire(1.0)
        if self._tokens is not None and tokens > 0:
            await self._tokens.acquire(float(tokens))
