"""The OpenAI-compatible client against the loopback server on 127.0.0.1: results,
retries, errors, limits, accounting and the cache."""

import asyncio
import math
import time

import pytest

from gecko_jax.fret.llm.base import (
    LLMInputError,
    LLMUnavailableError,
    MalformedOutputError,
    NotSupportedError,
    Usage,
)
from gecko_jax.fret.llm.cache import SQLiteCache
from gecko_jax.fret.llm.openai_compatible import OpenAICompatibleClient
from gecko_jax.fret.llm.parsing import parse_json_object
from gecko_jax.fret.llm.pricing import Prices
from gecko_jax.fret.llm.transport import RetryPolicy
from tests.fret.cache_counts import call_counts

from .scripted_server import Scripted, ScriptedLoopbackServer

FAST_RETRY = RetryPolicy(max_attempts=3, initial_backoff_s=0.01, max_backoff_s=0.02)
EIFFEL = (
    "Title: none\nPassage: The Eiffel Tower was completed in 1889 as the entrance arch of "
    "the World's Fair in Paris.\nTask type: question answering\nOutput:"
)


@pytest.fixture
def server():
    with ScriptedLoopbackServer() as s:
        yield s


def _client(server, **options) -> OpenAICompatibleClient:
    options.setdefault("retry", FAST_RETRY)
    return OpenAICompatibleClient(server.base_url, server.model, **options)


def _run(client, make):
    """Runs ``make(client)`` in a fresh loop and closes the client."""

    async def main():
        async with client:
            return await make(client)

    return asyncio.run(main())


def _completion(tokens, offsets, logprobs, top=None):
    return {
        "choices": [
            {
                "index": 0,
                "text": "".join(tokens),
                "finish_reason": "length",
                "logprobs": {
                    "tokens": tokens,
                    "text_offset": offsets,
                    "token_logprobs": logprobs,
                    "top_logprobs": top,
                },
            }
        ],
        "usage": {"prompt_tokens": 7, "completion_tokens": 1, "total_tokens": 8},
    }


def test_generate_returns_the_loopback_json_and_tokens(server):
    result = _run(
        _client(server), lambda c: c.generate(EIFFEL, json_mode=True, max_output_tokens=64)
    )
    assert parse_json_object(result.text) == {
        "task": "Given a question, retrieve passages that answer the question",
        "query": "completed entrance eiffel tower?",
    }
    assert result.prompt_tokens == len(EIFFEL.split()) and result.cached is False
    assert result.output_tokens == len(result.text.split())
    body = server.requests[0].json()
    assert server.requests[0].path == "/v1/chat/completions"
    assert body["response_format"] == {"type": "json_object"} and body["max_tokens"] == 64
    assert body["messages"] == [{"role": "user", "content": EIFFEL}]


def test_generate_sends_system_seed_and_api_key(server):
    client = _client(server, api_key="sk-test")
    _run(client, lambda c: c.generate("hi", system="be brief", seed=7, temperature=0.5))
    request = server.requests[0]
    assert request.headers["authorization"] == "Bearer sk-test"
    body = request.json()
    assert body["messages"][0] == {"role": "system", "content": "be brief"}
    assert body["seed"] == 7 and body["temperature"] == 0.5 and "response_format" not in body


def test_log_likelihood_sums_continuation_tokens_from_scripted_logprobs(server):
    prompt, continuation = "Passage: cats purr.\nQuery:", " do cats purr"
    tokens = ["Passage:", " cats", " purr.", "\nQuery:", " do", " cats", " purr", " ."]
    offsets = [0, 8, 13, 19, 26, 29, 34, 39]
    assert "".join(tokens) == prompt + continuation + " ." and offsets[4] == len(prompt)
    server.script(
        Scripted(
            body=_completion(tokens, offsets, [None, -1.0, -2.0, -0.5, -3.0, -0.25, -0.125, -9.0])
        )
    )
    value = _run(_client(server), lambda c: c.log_likelihood(prompt, continuation))
    assert value == -3.375  # " do" + " cats" + " purr"; the generated " ." is not counted
    body = server.requests[0].json()
    assert body["prompt"] == prompt + continuation
    assert body["echo"] is True and body["logprobs"] == 1 and body["max_tokens"] == 1


def test_log_likelihood_counts_a_token_straddling_the_boundary_and_a_null_first_token(server):
    # "Query: " + "do it": the tokenizer's " do" starts inside the prompt.
    server.script(
        Scripted(body=_completion(["Query:", " do", " it"], [0, 6, 9], [None, -1.5, -0.5])),
        Scripted(body=_completion(["do", " it"], [0, 2], [None, -0.75])),
    )
    client = _client(server)

    async def both(c):
        return await c.log_likelihood("Query: ", "do it"), await c.log_likelihood("", "do it")

    assert _run(client, both) == (-2.0, -0.75)


def test_log_likelihood_from_the_loopback_model(server):
    prompt = "Passage: Cats purr loudly.\nQuery:"
    value = _run(_client(server), lambda c: c.log_likelihood(prompt, " do cats purr"))
    assert value == pytest.approx(math.log(0.05) + 2 * math.log(0.5), abs=1e-12)


def test_log_likelihood_without_echo_logprobs_is_not_supported(server):
    server.script(Scripted(body={"choices": [{"index": 0, "text": "x", "logprobs": None}]}))
    with pytest.raises(NotSupportedError, match="echo"):
        _run(_client(server), lambda c: c.log_likelihood("a", " b"))


def test_label_probabilities_from_scripted_top_logprobs(server):
    top = {
        " Yes": math.log(0.6),
        "Yes": math.log(0.1),
        " No": math.log(0.2),
        " Maybe": math.log(0.05),
    }
    server.script(Scripted(body=_completion([" Yes"], [0], [math.log(0.6)], [top])))
    result = _run(
        _client(server, top_logprobs=5),
        lambda c: c.label_probabilities("Is it? Answer:", ["Yes", "No"]),
    )
    assert result == pytest.approx({"Yes": 0.7 / 0.9, "No": 0.2 / 0.9}, rel=1e-12)
    body = server.requests[0].json()
    assert body["max_tokens"] == 1 and body["logprobs"] == 5 and "echo" not in body


def test_label_probabilities_from_the_loopback_model(server):
    prompt = "Query: cats purr\nPassage: Cats purr loudly.\nLabel:"
    result = _run(_client(server), lambda c: c.label_probabilities(prompt, ["3", "2", "1", "0"]))
    weights = [math.exp(-2.0 * i * i) for i in range(4)]  # full overlap: target label "3"
    expected = {label: w / sum(weights) for label, w in zip("3210", weights)}
    assert result == pytest.approx(expected, rel=1e-9)


def test_429_with_retry_after_waits_then_succeeds(server):
    server.script(Scripted(status=429, headers={"Retry-After": "0.4"}))
    client = _client(server)
    start = time.monotonic()
    result = _run(client, lambda c: c.generate(EIFFEL))
    assert time.monotonic() - start >= 0.4
    assert "eiffel" in result.text and len(server.requests) == 2
    assert client.usage.retries == 1 and client.usage.requests == 1


@pytest.mark.parametrize("fault", [Scripted(status=503), Scripted(drop=True), Scripted(status=500)])
def test_server_errors_and_dropped_connections_are_retried(server, fault):
    server.script(fault)
    client = _client(server)
    result = _run(client, lambda c: c.generate(EIFFEL))
    assert "eiffel" in result.text and len(server.requests) == 2 and client.usage.retries == 1


def test_timeout_then_success(server):
    server.script(Scripted(delay_s=5.0))
    client = _client(server, timeout_s=0.2)
    start = time.monotonic()
    result = _run(client, lambda c: c.generate(EIFFEL))
    assert time.monotonic() - start < 4.0  # the client did not wait for the hung answer
    assert "eiffel" in result.text and client.usage.retries == 1


def test_retries_exhausted_raise_unavailable(server):
    server.script(*[Scripted(status=503)] * 3)
    client = _client(server)
    with pytest.raises(LLMUnavailableError, match="HTTP 503.*gave up after 3 attempt"):
        _run(client, lambda c: c.generate(EIFFEL))
    assert len(server.requests) == 3
    assert client.usage == Usage(retries=2)


def test_bad_request_is_not_retried(server):
    server.script(Scripted(status=400, body={"error": {"message": "max_tokens is too large"}}))
    client = _client(server)
    with pytest.raises(LLMInputError, match=r"'loopback'.*HTTP 400.*max_tokens is too large"):
        _run(client, lambda c: c.generate(EIFFEL))
    assert len(server.requests) == 1 and client.usage.retries == 0


def test_unknown_model_names_the_model(server):
    client = OpenAICompatibleClient(server.base_url, "no-such-model", retry=FAST_RETRY)
    with pytest.raises(LLMInputError, match=r"'no-such-model' is not served at .*/v1/models"):
        _run(client, lambda c: c.generate("hi"))
    assert len(server.requests) == 1


def test_malformed_json_content_is_returned_as_text(server):
    server.script(Scripted(content='{"task": "find", "query": '))
    result = _run(_client(server), lambda c: c.generate(EIFFEL, json_mode=True))
    assert result.text == '{"task": "find", "query": '
    with pytest.raises(MalformedOutputError, match="not valid JSON"):
        parse_json_object(result.text)


def test_concurrency_bound_holds_at_the_server():
    with ScriptedLoopbackServer(latency_s=0.05) as server:
        client = _client(server, max_concurrency=3)
        prompts = [f"Passage: text number {i}" for i in range(12)]
        _run(client, lambda c: asyncio.gather(*(c.generate(p) for p in prompts)))
        assert server.max_in_flight == 3 and len(server.requests) == 12


def test_request_rate_limit_is_a_lower_bound_on_time(server):
    client = _client(server, requests_per_minute=5, rate_window_s=0.5, max_concurrency=15)
    start = time.monotonic()
    _run(client, lambda c: asyncio.gather(*(c.generate(f"Passage: p{i}") for i in range(15))))
    assert time.monotonic() - start >= 1.0 * 0.99  # 5 at once, then 10 at 0.1 s each


def test_cost_accounting_is_exact(server):
    client = _client(server, prices=Prices(input_per_million=2.0, output_per_million=8.0))
    prompts = [EIFFEL, "Passage: Cats purr loudly when content."]
    results = _run(client, lambda c: asyncio.gather(*(c.generate(p) for p in prompts)))
    prompt_tokens = sum(len(p.split()) for p in prompts)
    output_tokens = sum(len(r.text.split()) for r in results)
    assert client.usage == Usage(
        requests=2,
        prompt_tokens=prompt_tokens,
        output_tokens=output_tokens,
        cost_usd=pytest.approx((2.0 * prompt_tokens + 8.0 * output_tokens) / 1e6, rel=1e-12),
    )


def test_cache_second_identical_call_makes_no_request(server, tmp_path):
    client = _client(
        server,
        cache=tmp_path / "cache.sqlite",
        prices=Prices(input_per_million=1.0, output_per_million=1.0),
    )

    async def calls(c):
        first = await c.generate(EIFFEL, json_mode=True)
        second = await c.generate(EIFFEL, json_mode=True)
        other = await c.generate(EIFFEL, json_mode=False)  # a different call
        same_time = await asyncio.gather(
            *(c.log_likelihood("Passage: a b\nQuery:", " a") for _ in range(5))
        )
        return first, second, other, same_time

    first, second, other, same_time = _run(client, calls)
    assert second == type(first)(first.text, first.prompt_tokens, first.output_tokens, cached=True)
    assert not first.cached and not other.cached and len(set(same_time)) == 1
    assert len(server.requests) == 3  # generate x2 (json_mode differs) + one log_likelihood
    # Cache hits cost nothing: only the three calls made are counted (5 + 1 tokens for QL).
    prompt_tokens = first.prompt_tokens + other.prompt_tokens + 5
    output_tokens = first.output_tokens + other.output_tokens + 1
    assert client.usage == Usage(
        requests=3,
        cache_hits=5,
        prompt_tokens=prompt_tokens,
        output_tokens=output_tokens,
        cost_usd=pytest.approx((prompt_tokens + output_tokens) / 1e6, rel=1e-12),
    )
    assert set(call_counts(tmp_path / "cache.sqlite").values()) == {1}


def test_server_dying_mid_run_keeps_done_calls_and_the_rerun_calls_only_the_rest(tmp_path):
    cache_path = tmp_path / "cache.sqlite"
    prompts = [f"Passage: document {i} about topic {i}" for i in range(6)]

    async def run_all(c):
        return await asyncio.gather(*(c.generate(p) for p in prompts), return_exceptions=True)

    with ScriptedLoopbackServer() as first_server:
        first_server.script(Scripted(), Scripted(), Scripted(), Scripted(stop=True))
        first = _run(_client(first_server, cache=cache_path, max_concurrency=2), run_all)
    done = [r for r in first if not isinstance(r, Exception)]
    failed = [r for r in first if isinstance(r, Exception)]
    assert len(done) == 3 and len(failed) == 3
    assert all(isinstance(e, LLMUnavailableError) for e in failed)
    assert len(SQLiteCache(cache_path)) == 3

    with ScriptedLoopbackServer() as second_server:
        client = _client(second_server, cache=cache_path)
        second = _run(client, run_all)
        assert len(second_server.requests) == 3
    assert all(not isinstance(r, Exception) for r in second)
    assert [r.cached for r in second] == [not isinstance(r, Exception) for r in first]
    assert client.usage.cache_hits == 3 and client.usage.requests == 3
    assert set(call_counts(cache_path).values()) == {1}
