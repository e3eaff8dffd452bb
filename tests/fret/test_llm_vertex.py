"""The Vertex AI client and batch job, through the Gen AI SDK, against a local fake."""

import asyncio
import json
import math
import time

import google.auth
import google.auth.exceptions
import pytest
from google.oauth2.credentials import Credentials

from gecko_jax.fret.llm.base import (
    BlockedOutputError,
    CredentialsError,
    Generation,
    GenerationSettings,
    LLMError,
    LLMInputError,
    NotSupportedError,
    Usage,
)
from gecko_jax.fret.llm.cache import SQLiteCache, cache_key
from gecko_jax.fret.llm.loopback import generation_answer
from gecko_jax.fret.llm.pricing import Prices
from gecko_jax.fret.llm.vertex import VertexClient
from gecko_jax.fret.llm.vertex_batch import BatchRequest, LogprobsRequest, VertexBatchJob

from .scripted_server import Scripted
from .vertex_server import FAST_RETRY, VertexFakeServer, client_options, thinking_budget

MODEL = "gemini-2.0-flash"
PROMPT = (
    "Passage: Sourdough starters need regular feeding with flour and water.\n"
    "Task type: search result"
)
# Blocks only what the filters rate as highly likely harmful.
PERMISSIVE_SAFETY_SETTINGS = tuple(
    {"category": category, "threshold": "BLOCK_ONLY_HIGH"}
    for category in (
        "HARM_CATEGORY_HATE_SPEECH",
        "HARM_CATEGORY_DANGEROUS_CONTENT",
        "HARM_CATEGORY_HARASSMENT",
        "HARM_CATEGORY_SEXUALLY_EXPLICIT",
    )
)
TOP = [("3", math.log(0.5)), (" 2", math.log(0.25)), ("Ok", math.log(0.15)), ("0", math.log(0.05))]


@pytest.fixture
def server():
    with VertexFakeServer(TOP) as s:
        yield s


def _vertex(server, cls=VertexClient, **options):
    return cls(MODEL, **client_options(server, **options))


def _run(client, make):
    async def main():
        async with client:
            return await make(client)

    return asyncio.run(main())


def test_generate_request_shape_text_and_usage(server):
    client = _vertex(
        server,
        safety_settings=PERMISSIVE_SAFETY_SETTINGS,
        prices=Prices(input_per_million=1.0, output_per_million=4.0),
    )
    result = _run(
        client,
        lambda c: c.generate(
            PROMPT, system="Answer in JSON.", json_mode=True, max_output_tokens=64, seed=3
        ),
    )
    expected = generation_answer(PROMPT)
    assert result == Generation(expected, len(PROMPT.split()), len(expected.split()))
    assert json.loads(result.text)["task"] == "Given a web search query, retrieve relevant passages"
    request = server.requests[0]
    assert request.path == (
        f"/v1/projects/proj/locations/europe-west4/publishers/google/models/{MODEL}:generateContent"
    )
    assert request.headers["authorization"] == "Bearer test-token"
    body = request.json()
    assert body["contents"] == [{"role": "user", "parts": [{"text": PROMPT}]}]
    assert body["systemInstruction"]["parts"] == [{"text": "Answer in JSON."}]
    assert body["generationConfig"] == {
        "temperature": 0.0,
        "maxOutputTokens": 64,
        "seed": 3,
        "responseMimeType": "application/json",
    }
    assert body["safetySettings"] == [dict(s) for s in PERMISSIVE_SAFETY_SETTINGS]
    tokens_in, tokens_out = len(PROMPT.split()), len(expected.split())
    assert client.usage == Usage(
        requests=1,
        prompt_tokens=tokens_in,
        output_tokens=tokens_out,
        cost_usd=pytest.approx((tokens_in + 4.0 * tokens_out) / 1e6, rel=1e-12),
    )


def test_label_probabilities_read_the_first_positions_top_candidates(server):
    result = _run(
        _vertex(server, top_logprobs=4),
        lambda c: c.label_probabilities("Query: q\nPassage: p\nLabel:", ["3", "2", "1", "0"]),
    )
    assert result == pytest.approx(
        {"3": 0.5 / 0.8, "2": 0.25 / 0.8, "1": 0.0, "0": 0.05 / 0.8}, rel=1e-12
    )
    config = server.requests[0].json()["generationConfig"]
    assert config == {
        "temperature": 0.0,
        "maxOutputTokens": 1,
        "responseLogprobs": True,
        "logprobs": 4,
    }


def test_log_likelihood_is_not_supported(server):
    with pytest.raises(NotSupportedError, match="vLLM"):
        _run(_vertex(server), lambda c: c.log_likelihood("p", " q"))
    assert server.requests == []


def test_429_retry_after_then_success_and_400_not_retried(server):
    server.script(Scripted(status=429, headers={"Retry-After": "0.3"}))
    client = _vertex(server)
    start = time.monotonic()
    result = _run(client, lambda c: c.generate(PROMPT))
    assert time.monotonic() - start >= 0.3 and result.text == generation_answer(PROMPT)
    assert client.usage.retries == 1 and len(server.requests) == 2

    server.script(Scripted(status=400))
    client = _vertex(server)
    with pytest.raises(LLMInputError, match=f"'{MODEL}': HTTP 400"):
        _run(client, lambda c: c.generate(PROMPT + " again"))
    assert len(server.requests) == 3


def test_unknown_model_and_blocked_output(server):
    client = VertexClient(
        "gemini-9",
        project="p",
        credentials=Credentials(token="t"),
        base_url=server.url,
        retry=FAST_RETRY,
    )
    with pytest.raises(LLMInputError, match="'gemini-9': HTTP 404.*not found"):
        _run(client, lambda c: c.generate("hi"))
    with pytest.raises(BlockedOutputError, match="SAFETY"):
        _run(_vertex(server), lambda c: c.generate("BLOCKME please"))


def test_missing_credentials_and_project_name_the_fix(monkeypatch):
    def no_credentials(*args, **kwargs):
        raise google.auth.exceptions.DefaultCredentialsError("File not found")

    monkeypatch.setattr(google.auth, "default", no_credentials)
    with pytest.raises(
        CredentialsError,
        match="gcloud auth application-default login.*GOOGLE_APPLICATION_CREDENTIALS",
    ):
        VertexClient(MODEL, project="proj")
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT", raising=False)
    with pytest.raises(CredentialsError, match="GOOGLE_CLOUD_PROJECT"):
        VertexClient(MODEL, credentials=Credentials(token="t"))


def test_project_and_location_from_the_environment(monkeypatch, server):
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "env-proj")
    monkeypatch.setenv("GOOGLE_CLOUD_LOCATION", "asia-east1")
    client = VertexClient(MODEL, credentials=Credentials(token="t"), base_url=server.url)
    _run(client, lambda c: c.generate("hello"))
    assert server.requests[0].path.startswith("/v1/projects/env-proj/locations/asia-east1/")


def _batch(server, tmp_path, **options):
    return _vertex(
        server,
        VertexBatchJob,
        staging_dir=str(tmp_path / "staging"),
        cache=SQLiteCache(tmp_path / "cache.sqlite"),
        poll_initial_s=0.01,
        poll_max_s=0.02,
        prices=Prices(input_per_million=2.0, output_per_million=2.0),
        **options,
    )


def test_batch_job_round_trip_feeds_the_cache(server, tmp_path):
    prompts = {
        "a": PROMPT,
        "b": "Passage: Tides follow the moon.\nTask type: fact checking",
        "c": "Passage: FAILME this one fails",
    }
    requests = {
        "a": BatchRequest(PROMPT, GenerationSettings(json_mode=True)),
        "b": prompts["b"],
        "c": prompts["c"],
    }
    job = _batch(server, tmp_path)
    results = _run(job, lambda j: j.run(requests))

    assert list(results) == ["a", "b", "c"]
    for key in "ab":
        text = generation_answer(prompts[key])
        assert results[key] == Generation(text, len(prompts[key].split()), len(text.split()))
    assert isinstance(results["c"], LLMError) and "400 the request is invalid" in str(results["c"])
    creates = [r for r in server.requests if r.method == "POST"]
    assert len(creates) == 1 and creates[0].path.endswith("/batchPredictionJobs")
    create = creates[0].json()
    assert create["model"] == f"publishers/google/models/{MODEL}"
    assert create["inputConfig"]["instancesFormat"] == "jsonl"
    lines = [json.loads(line) for line in open(create["inputConfig"]["gcsSource"]["uris"][0])]
    assert [line["request"]["labels"] for line in lines] == [
        {"gecko_row": "0"},
        {"gecko_row": "1"},
        {"gecko_row": "2"},
    ]
    assert lines[0]["request"]["generationConfig"]["responseMimeType"] == "application/json"
    tokens = sum(results[k].prompt_tokens + results[k].output_tokens for k in "ab")
    assert job.usage == Usage(
        requests=2,
        prompt_tokens=sum(results[k].prompt_tokens for k in "ab"),
        output_tokens=sum(results[k].output_tokens for k in "ab"),
        cost_usd=pytest.approx(tokens * 1.0 / 1e6, rel=1e-12),
    )  # half price

    # The online client with the same cache answers a and b without a request.
    client = _vertex(server, cache=tmp_path / "cache.sqlite")
    seen = len(server.requests)
    cached = _run(client, lambda c: c.generate(PROMPT, json_mode=True))
    assert cached.cached and cached.text == results["a"].text and len(server.requests) == seen


def test_batch_job_resumes_the_job_of_the_same_requests(server, tmp_path):
    requests = [BatchRequest("Passage: one"), BatchRequest("Passage: two")]

    async def submit_twice(job):
        return await job.submit(requests), await job.submit(requests)

    first, second = _run(_batch(server, tmp_path), submit_twice)
    assert first == second and first.startswith(
        "projects/proj/locations/europe-west4/batchPredictionJobs/"
    )
    assert len(server.jobs) == 1


def test_batch_job_polls_until_done(tmp_path):
    with VertexFakeServer(polls_until_done=4) as server:
        job = _batch(server, tmp_path)
        results = _run(job, lambda j: j.run({"x": "Passage: Waiting is fine."}))
        assert isinstance(results["x"], Generation)
        jobs = "/v1/projects/proj/locations/europe-west4/batchPredictionJobs"
        assert [(r.method, r.path) for r in server.requests] == [
            ("GET", jobs),
            ("POST", jobs),
            *[("GET", f"{jobs}/1000")] * 4,
        ]  # list, create, 4 polls


def test_batch_job_retried_create_finds_the_job_whose_reply_was_lost(tmp_path):
    requests = {
        "g": BatchRequest("Passage: Owls hunt at night."),
        "l": LogprobsRequest("Query: q\nPassage: p", 4),
    }
    with VertexFakeServer(TOP, lost_create_replies=1) as server:
        job = _batch(server, tmp_path)
        results = _run(job, lambda j: j.run(requests))
        assert len(server.jobs) == 1  # the retry listed the jobs and found it: no second job
        assert [r.method for r in server.requests[:4]] == [
            "GET",
            "POST",
            "GET",
            "GET",
        ]  # list, create, list, poll
        assert job.usage.retries == 1 and job.usage.requests == 2
        assert results["g"].text == generation_answer("Passage: Owls hunt at night.")
        assert results["l"].candidates == [(token, value) for token, value in TOP]


def _job_lists(server):
    return [
        r for r in server.requests if r.method == "GET" and r.path.endswith("/batchPredictionJobs")
    ]


def test_batch_job_rerun_after_a_lost_marker_reuses_the_live_job_not_a_failed_one(server, tmp_path):
    requests = [BatchRequest("Passage: one"), BatchRequest("Passage: two")]
    first = _run(_batch(server, tmp_path), lambda j: j.submit(requests))
    (marker,) = (tmp_path / "staging").glob("*/job.json")
    display_name = json.loads(marker.read_text())["display_name"]
    assert display_name == marker.parent.name and display_name.startswith("gecko-fret-")
    assert server.jobs[first.rsplit("/", 1)[-1]]["displayName"] == display_name
    assert [r.query for r in _job_lists(server)] == [{"filter": [f'display_name="{display_name}"']}]

    marker.unlink()  # a crash between the create and the marker
    first_id = first.rsplit("/", 1)[-1]
    live = server.jobs.pop(first_id)
    for i in range(3):  # failed jobs of the same name come first: the live one is on page 2
        server.jobs[f"90{i}"] = {
            **live,
            "name": f"{first[: -len(first_id)]}90{i}",
            "state": "JOB_STATE_FAILED",
        }
    server.jobs[first_id] = live
    server.jobs["999"] = {
        **live,
        "name": f"{first[: -len(first_id)]}999",
        "displayName": "someone-else",
    }
    assert (
        _run(_batch(server, tmp_path), lambda j: j.submit(requests)) == first
        and len(server.jobs) == 5
    )
    pages = [r.query.get("pageToken") for r in _job_lists(server)[1:]]
    assert pages == [None, ["2"]]  # followed nextPageToken; the other name was filtered out
    for job_id in ("900", "901", "902", "999"):
        del server.jobs[job_id]

    server.jobs[first.rsplit("/", 1)[-1]]["state"] = "JOB_STATE_FAILED"
    marker.unlink()
    third = _run(_batch(server, tmp_path), lambda j: j.submit(requests))
    assert third != first and len(server.jobs) == 2  # a failed job is not reused


THINKING_MODEL = "gemini-2.5-flash"


@pytest.fixture
def thinking_server():
    with VertexFakeServer(
        TOP, models=(MODEL, THINKING_MODEL), thinking_models=(THINKING_MODEL,)
    ) as s:
        yield s


def test_a_thinking_model_without_a_budget_names_the_fix(thinking_server):
    client = VertexClient(THINKING_MODEL, **client_options(thinking_server))
    with pytest.raises(
        LLMError,
        match=r"spent the one-token relevance answer on 1 thinking tokens: "
        r"give the client thinking_budget=0",
    ):
        _run(client, lambda c: c.label_probabilities(PROMPT, ["3", "2"]))
    body = thinking_server.requests[0].json()
    assert "thinkingConfig" not in body["generationConfig"]


def test_thinking_budget_is_sent_and_keys_the_cache(thinking_server, tmp_path):
    cache = SQLiteCache(tmp_path / "cache.sqlite")
    client = VertexClient(
        THINKING_MODEL, **client_options(thinking_server, cache=cache), thinking_budget=0
    )
    probabilities = _run(client, lambda c: c.label_probabilities(PROMPT, ["3", "2"]))
    assert probabilities == pytest.approx({"3": 0.5 / 0.75, "2": 0.25 / 0.75})
    _run(
        VertexClient(
            THINKING_MODEL, **client_options(thinking_server, cache=cache), thinking_budget=0
        ),
        lambda c: c.generate(PROMPT, max_output_tokens=256),
    )
    bodies = [r.json()["generationConfig"] for r in thinking_server.requests]
    assert [thinking_budget(b) for b in bodies] == [0, 0]
    # Same call, the model's default thinking: another cache entry, so another request.
    _run(
        VertexClient(THINKING_MODEL, **client_options(thinking_server, cache=cache)),
        lambda c: c.generate(PROMPT, max_output_tokens=256),
    )
    assert (
        len(thinking_server.requests) == 3
        and "thinkingConfig" not in thinking_server.requests[2].json()["generationConfig"]
    )
    with pytest.raises(ValueError, match="thinking_budget must be -1"):
        VertexClient(THINKING_MODEL, **client_options(thinking_server), thinking_budget=-2)


def test_batch_lines_carry_the_thinking_budget_and_its_key(server, tmp_path):
    plain = _batch(server, tmp_path)
    thinking = _batch(server, tmp_path, thinking_budget=0)
    request = LogprobsRequest(PROMPT, 4)
    assert plain.cache_key(request) != thinking.cache_key(request)
    online = VertexClient(MODEL, **client_options(server), thinking_budget=0)
    assert thinking.cache_key(request) == cache_key(
        MODEL, "top_logprobs", PROMPT, {"top_logprobs": 4, **online.key_extras}
    )
    assert thinking._line(0, request)["request"]["generationConfig"]["thinkingConfig"] == {
        "thinkingBudget": 0
    }
    assert "thinkingConfig" not in plain._line(0, request)["request"]["generationConfig"]
    for client in (plain, thinking, online):
        asyncio.run(client.aclose())
