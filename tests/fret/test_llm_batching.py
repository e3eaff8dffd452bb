"""VertexBatchClient: pipeline stages as Vertex batch prediction jobs, against a local fake."""

import asyncio
import json
import math

import pytest

from gecko_jax.fret import pipeline
from gecko_jax.fret.config import RankingConfig
from gecko_jax.fret.llm import make_client
from gecko_jax.fret.llm.base import (
    BlockedOutputError,
    Generation,
    LLMError,
    NotSupportedError,
    Usage,
)
from gecko_jax.fret.llm.batching import VertexBatchClient
from gecko_jax.fret.llm.cache import SQLiteCache
from gecko_jax.fret.llm.loopback import generation_answer
from gecko_jax.fret.llm.pricing import Prices
from gecko_jax.fret.llm.vertex import VertexClient
from tests.fret.cache_counts import call_counts

from .pipeline_helpers import PASSAGES, SHARDS, TOP_N, fret_config, read_rows, reuse_embeddings
from .vertex_server import VertexFakeServer, client_options

MODEL = "gemini-2.0-flash"
LABELS = ("3", "2", "1", "0")
PRICES = Prices(input_per_million=2.0, output_per_million=2.0)  # 1.0 per million at batch prices


@pytest.fixture
def fake():
    with VertexFakeServer(rc_labels=LABELS, polls_until_done=1) as server:
        yield server


def _batch_client(fake, staging_dir, **options):
    options = {
        "cache": None,
        "quiet_s": 0.05,
        "poll_initial_s": 0.01,
        "poll_max_s": 0.02,
        "progress": False,
        "prices": PRICES,
        **options,
    }
    return VertexBatchClient(MODEL, **client_options(fake, staging_dir=str(staging_dir), **options))


def _prompt(i):
    return (
        f"Passage: Sample passage number {i} about tidal energy and turbines.\n"
        "Task type: search result"
    )


def _creates(fake):
    return [
        r for r in fake.requests if r.method == "POST" and r.path.endswith("/batchPredictionJobs")
    ]


def _input_lines(fake, create):
    uri = create.json()["inputConfig"]["gcsSource"]["uris"][0]
    with open(uri, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def _gather(client, make_calls):
    async def main():
        async with client:
            return await asyncio.gather(*make_calls(client), return_exceptions=True)

    return asyncio.run(main())


def test_concurrent_generate_calls_make_one_job(fake, tmp_path):
    client = _batch_client(fake, tmp_path)
    prompts = [_prompt(i) for i in range(40)]
    results = _gather(
        client, lambda c: [c.generate(p, json_mode=True, seed=7) for p in [*prompts, prompts[0]]]
    )

    assert len(_creates(fake)) == len(fake.jobs) == client.batches == 1
    lines = _input_lines(fake, _creates(fake)[0])
    assert len(lines) == 40  # the repeated call went out once
    assert lines[0]["request"]["generationConfig"] == {
        "temperature": 0.0,
        "maxOutputTokens": 512,
        "seed": 7,
        "responseMimeType": "application/json",
    }
    for prompt, result in zip(prompts, results):
        text = generation_answer(prompt)
        assert result == Generation(text, len(prompt.split()), len(text.split()))
    assert results[-1] == Generation(
        results[0].text, results[0].prompt_tokens, results[0].output_tokens, cached=True
    )
    tokens = sum(r.prompt_tokens + r.output_tokens for r in results[:-1])
    assert client.usage == Usage(
        requests=40,
        cache_hits=1,
        prompt_tokens=sum(r.prompt_tokens for r in results[:-1]),
        output_tokens=sum(r.output_tokens for r in results[:-1]),
        cost_usd=pytest.approx(tokens * 1.0 / 1e6, rel=1e-12),
    )


def test_waves_and_the_size_cap_make_more_jobs(fake, tmp_path):
    async def waves(client):
        async with client:
            first = await asyncio.gather(*(client.generate(_prompt(i)) for i in range(3)))
            second = await asyncio.gather(
                *(client.generate(_prompt(i)) for i in range(3, 5))
            )  # like re-asks
            return first + second

    client = _batch_client(fake, tmp_path / "a")
    assert [r.text for r in asyncio.run(waves(client))] == [
        generation_answer(_prompt(i)) for i in range(5)
    ]
    assert [len(_input_lines(fake, c)) for c in _creates(fake)] == [3, 2]

    capped = _batch_client(fake, tmp_path / "b", max_batch_requests=4)
    _gather(capped, lambda c: [c.generate(_prompt(i)) for i in range(10, 20)])
    assert sorted(len(_input_lines(fake, c)) for c in _creates(fake)[2:]) == [2, 4, 4]


def test_label_probabilities_equal_the_online_clients(fake, tmp_path):
    prompts = [
        f"Query: tidal turbines energy\nPassage: {text}\nLabel:"
        for text in (
            "Tidal turbines convert energy.",
            "Tidal energy is predictable.",
            "Bread needs yeast.",
        )
    ]
    batch = _gather(
        _batch_client(fake, tmp_path, top_logprobs=4),
        lambda c: [c.label_probabilities(p, LABELS) for p in prompts],
    )
    (create,) = _creates(fake)
    sent = [line["request"] for line in _input_lines(fake, create)]

    online_client = VertexClient(
        MODEL, **client_options(fake, top_logprobs=4, cache=tmp_path / "online.sqlite")
    )
    online = _gather(online_client, lambda c: [c.label_probabilities(p, LABELS) for p in prompts])
    online_requests = [r.json() for r in fake.requests if r.path.endswith(":generateContent")]

    assert [b == pytest.approx(o, rel=1e-12) for b, o in zip(batch, online)] == [True] * 3
    assert batch[0]["3"] > batch[1]["3"] > batch[2]["3"] and math.isclose(
        sum(batch[2].values()), 1.0
    )
    assert (
        [s["generationConfig"] for s in sent]
        == [r["generationConfig"] for r in online_requests]
        == [{"temperature": 0.0, "maxOutputTokens": 1, "responseLogprobs": True, "logprobs": 4}] * 3
    )


def test_cached_requests_skip_the_job_and_share_the_online_cache(fake, tmp_path):
    cache_file = tmp_path / "cache.sqlite"
    labels_prompt = "Query: tides\nPassage: Tides follow the moon.\nLabel:"
    online = VertexClient(MODEL, **client_options(fake, cache=cache_file))
    first = _gather(
        online,
        lambda c: [
            c.generate(_prompt(0), json_mode=True),
            c.label_probabilities(labels_prompt, LABELS),
        ],
    )

    client = _batch_client(fake, tmp_path, cache=cache_file)
    again = _gather(
        client,
        lambda c: [
            c.generate(_prompt(0), json_mode=True),
            c.label_probabilities(labels_prompt, LABELS),
        ],
    )
    assert again[0] == Generation(
        first[0].text, first[0].prompt_tokens, first[0].output_tokens, cached=True
    )
    assert again[1] == first[1]
    assert _creates(fake) == [] and client.usage == Usage(cache_hits=2)

    client = _batch_client(fake, tmp_path, cache=cache_file)
    mixed = _gather(
        client, lambda c: [c.generate(_prompt(0), json_mode=True), c.generate(_prompt(1))]
    )
    (create,) = _creates(fake)
    assert len(_input_lines(fake, create)) == 1 and [r.cached for r in mixed] == [True, False]
    cache = SQLiteCache(cache_file)
    assert set(call_counts(cache).values()) == {1} and len(cache) == 3  # each call paid once
    cache.close()


def test_an_errored_line_raises_for_its_caller_only(fake, tmp_path):
    client = _batch_client(fake, tmp_path)
    prompts = [_prompt(0), "Passage: FAILME this one fails", "Passage: BLOCKME please", _prompt(1)]
    results = _gather(client, lambda c: [c.generate(p) for p in prompts])
    assert len(fake.jobs) == 1
    assert [type(r) for r in results] == [Generation, LLMError, BlockedOutputError, Generation]
    assert "400 the request is invalid" in str(results[1]) and "SAFETY" in str(results[2])
    assert client.usage.requests == 2


def test_log_likelihood_is_not_supported_and_the_spec(fake, tmp_path):
    client = make_client(f"vertex-batch:{MODEL}", **client_options(fake, staging_dir=str(tmp_path)))
    assert isinstance(client, VertexBatchClient) and client.model_id == MODEL
    (error,) = _gather(client, lambda c: [c.log_likelihood("p", " q")])
    assert isinstance(error, NotSupportedError) and "vLLM" in str(error)
    assert fake.requests == []
    with pytest.raises(ValueError, match="--batch_staging_dir"):
        make_client(f"vertex-batch:{MODEL}", **client_options(fake))


def test_pipeline_in_batch_mode_writes_the_online_rows_at_half_price(
    reference, corpus_path, encoder, tmp_path
):
    """Per shard: one generation job, one relevance job (the loopback answers pass validation)."""
    ranking = RankingConfig(ranking="rc")
    with VertexFakeServer(rc_labels=LABELS, polls_until_done=1) as fake:
        online_dir, batch_dir = tmp_path / "online", tmp_path / "batch"
        for output_dir in (online_dir, batch_dir):
            reuse_embeddings(reference[0], output_dir)
        online = pipeline.run(
            fret_config(corpus_path, None, online_dir, llm=f"vertex:{MODEL}", ranking=ranking),
            client_factory=lambda c: VertexClient(
                MODEL, **client_options(fake, cache=pipeline.cache_path(c))
            ),
            encoder=encoder,
            echo=False,
        )
        calls = len(fake.requests)

        config = fret_config(
            corpus_path,
            None,
            batch_dir,
            llm=f"vertex-batch:{MODEL}",
            ranking=ranking,
            batch_staging_dir=str(tmp_path / "staging"),
        )
        clients = []

        def factory(c):
            clients.append(
                _batch_client(fake, c.batch_staging_dir, cache=pipeline.cache_path(c), prices=None)
            )
            return clients[-1]

        summary = pipeline.run(config, client_factory=factory, encoder=encoder, echo=False)
        creates = _creates(fake)

    assert summary["generation_attempts"] == PASSAGES and summary["rows"] == PASSAGES
    assert len(creates) == clients[0].batches == 2 * SHARDS  # generate + rc per shard, no re-asks
    sizes = [len(_input_lines(fake, c)) for c in creates]
    assert sizes == [PASSAGES // SHARDS, PASSAGES // SHARDS * TOP_N] * SHARDS
    assert all(
        not r.path.endswith(":generateContent") for r in fake.requests[calls:]
    )  # no online call
    assert read_rows(batch_dir) == read_rows(online_dir)
    assert summary["llm"]["requests"] == online["llm"]["requests"] == PASSAGES * (1 + TOP_N)
    assert summary["llm"]["prompt_tokens"] == online["llm"]["prompt_tokens"]
    assert summary["llm"]["cost_usd"] == pytest.approx(online["llm"]["cost_usd"] / 2, abs=2e-6)
