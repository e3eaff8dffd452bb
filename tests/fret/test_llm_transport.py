"""Rate limits, backoff, Retry-After and the call runner, without a server."""

import asyncio
import email.utils
import random
import time

import pytest

from gecko_jax.fret.llm.base import LLMInputError, LLMUnavailableError
from gecko_jax.fret.llm.ratelimit import RateLimiter, TokenBucket
from gecko_jax.fret.llm.transport import (
    CallRunner,
    RetryPolicy,
    TransientError,
    error_for_status,
    parse_retry_after,
)


def _elapsed(coro) -> float:
    start = time.monotonic()
    asyncio.run(coro)
    return time.monotonic() - start


def test_request_limit_spaces_requests_after_the_burst():
    limiter = RateLimiter(requests_per_minute=5, window_s=0.5)  # 5 at once, then one per 0.1 s

    async def main():
        await asyncio.gather(*(limiter.acquire() for _ in range(15)))

    assert _elapsed(main()) >= 1.0 * 0.99


def test_token_limit_waits_for_tokens():
    limiter = RateLimiter(tokens_per_minute=100, window_s=0.5)  # 200 tokens/s after 100

    async def main():
        for _ in range(4):
            await limiter.acquire(tokens=50)  # 200 tokens: the last 100 take 0.5 s

    assert _elapsed(main()) >= 0.5 * 0.99


def test_token_bucket_caps_a_request_larger_than_its_capacity():
    async def main():
        bucket = TokenBucket(rate_per_s=1000.0, capacity=10.0)
        await bucket.acquire(50)  # would never fit; takes the whole bucket instead
        return bucket._level

    assert asyncio.run(main()) < 1.0


def test_backoff_is_full_jitter_capped_and_honours_retry_after():
    policy = RetryPolicy(max_attempts=5, initial_backoff_s=1.0, max_backoff_s=5.0)
    rng = random.Random(0)
    for failures, cap in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 5.0), (9, 5.0)]:
        draws = [policy.delay(failures, None, rng) for _ in range(200)]
        assert 0.0 <= min(draws) and max(draws) <= cap
        assert max(draws) > 0.9 * cap  # the whole range is used
    assert policy.delay(1, 7.5, rng) == 7.5
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)


def test_parse_retry_after_seconds_and_dates():
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("0.25") == 0.25
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    in_ten = email.utils.formatdate(time.time() + 10, usegmt=True)
    assert 8.0 <= parse_retry_after(in_ten) <= 10.0


@pytest.mark.parametrize(
    "status, transient",
    [(408, True), (429, True), (500, True), (503, True), (400, False), (401, False), (404, False)],
)
def test_error_for_status(status, transient):
    error = error_for_status("my-model", status, "detail", 2.0)
    assert isinstance(error, TransientError if transient else LLMInputError)
    assert "my-model" in str(error) and str(status) in str(error)


def test_runner_retries_transient_failures_then_gives_up():
    runner = CallRunner("m", retry=RetryPolicy(max_attempts=3, initial_backoff_s=0.001))
    calls, retries = [], []

    async def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionResetError("reset")
        return "ok"

    async def always_503():
        raise TransientError("503")

    assert asyncio.run(runner.run(flaky, on_retry=lambda: retries.append(1))) == "ok"
    assert len(calls) == 3 and len(retries) == 2
    with pytest.raises(LLMUnavailableError, match="gave up after 3 attempt"):
        asyncio.run(CallRunner("m", retry=RetryPolicy(3, 0.001)).run(always_503))


def test_runner_times_out_each_attempt_and_bounds_concurrency():
    runner = CallRunner(
        "m",
        max_concurrency=2,
        timeout_s=0.05,
        retry=RetryPolicy(max_attempts=2, initial_backoff_s=0.001),
    )
    state = {"now": 0, "max": 0, "calls": 0}

    async def hangs():
        await asyncio.sleep(10)

    async def tracked():
        state["now"] += 1
        state["max"] = max(state["max"], state["now"])
        await asyncio.sleep(0.01)
        state["now"] -= 1
        return 1

    with pytest.raises(LLMUnavailableError, match="no answer within 0.05 s"):
        asyncio.run(runner.run(hangs))

    async def many():
        return await asyncio.gather(*(runner.run(tracked) for _ in range(10)))

    assert asyncio.run(many()) == [1] * 10 and state["max"] == 2
