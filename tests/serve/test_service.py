"""gecko-serve on 127.0.0.1: values equal to Encoder.encode, errors, batching, readiness."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import logging
import threading

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gecko_jax import packing
from gecko_jax.serve.access_log import ACCESS_LOGGER
from gecko_jax.serve.app import ServeConfig, create_app
from gecko_jax.serve.backends import JaxBackend
from gecko_jax.serve.service import Limits
from gecko_jax.serve.vertex import DEFAULT_TASK_TYPES
from tests.serve.servers import ThreadedServer, every_task_type, wait_healthy
from tests.text_samples import HARD_CASES, long_text

MAX_BATCH_SIZE = 8
CONFIG = ServeConfig(
    model_name="tiny-bert",
    limits=Limits(max_texts=40, max_request_tokens=2_000),
    max_body_bytes=64 * 1024,
    max_batch_tokens=1_024,
    max_batch_size=MAX_BATCH_SIZE,
    model_batch_size=MAX_BATCH_SIZE,
    warmup_max_length=16,
    predict_routes=("/vertex/predict",),
    health_routes=("/vertex/health",),
)
TEXTS = [
    "Which planet is known as the red planet?",
    "Mars is the fourth planet from the Sun.",
    "def add(a, b): return a + b",
    "The cat sat on the mat.",
    *HARD_CASES[8:14],
]


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.sum(a * b, axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def _metric_samples(url: str) -> dict[str, float]:
    text = httpx.get(f"{url}/metrics").text
    return {
        sample.name + json.dumps(sample.labels, sort_keys=True): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


@pytest.fixture(scope="module")
def url(tiny_encoder) -> str:  # type: ignore[no-untyped-def]
    app = create_app(lambda: JaxBackend(tiny_encoder, MAX_BATCH_SIZE), CONFIG)
    with ThreadedServer(app) as server:
        wait_healthy(server.url)
        yield server.url


def _predict(url: str, instances: list[dict], route: str | None = None, **parameters):  # type: ignore[no-untyped-def]
    route = route or "/v1/models/tiny-bert:predict"
    return httpx.post(f"{url}{route}", json={"instances": instances, "parameters": parameters})


@pytest.mark.parametrize("dim", [None, 12])
def test_vertex_every_task_type_matches_encode(url: str, tiny_encoder, dim) -> None:  # type: ignore[no-untyped-def]
    instances, expected_values = every_task_type(tiny_encoder, TEXTS, dim)
    params = {} if dim is None else {"outputDimensionality": dim}
    response = _predict(url, instances, **params)
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    values = np.array([p["embeddings"]["values"] for p in predictions], np.float32)
    assert values.shape == (len(DEFAULT_TASK_TYPES), dim or tiny_encoder.embedding_dim)
    assert _cosines(values, expected_values).min() >= 0.9999
    np.testing.assert_allclose(np.linalg.norm(values, axis=1), 1.0, atol=1e-5)
    # Same task string, other side: a document and a query of one text differ.
    assert _cosines(values[:1], values[1:2])[0] < 0.9999
    for p, instance in zip(predictions, instances):
        mapping = DEFAULT_TASK_TYPES[instance["task_type"]]
        tokens = tiny_encoder.tokenize(
            [instance["content"]],
            task=mapping.task,
            kind=mapping.kind,
            titles=[instance["title"]] if mapping.kind == "document" else None,
        )
        stats = p["embeddings"]["statistics"]
        assert stats == {"token_count": int(tokens.token_counts[0]), "truncated": False}


def test_vertex_default_task_type_and_extra_routes(url: str, tiny_encoder) -> None:  # type: ignore[no-untyped-def]
    response = _predict(url, [{"content": TEXTS[0]}], route="/vertex/predict")
    assert response.status_code == 200, response.text
    values = np.array([response.json()["predictions"][0]["embeddings"]["values"]])
    mapping = DEFAULT_TASK_TYPES["RETRIEVAL_QUERY"]
    expected = tiny_encoder.encode([TEXTS[0]], task=mapping.task, kind=mapping.kind)
    assert _cosines(values, expected)[0] >= 0.9999
    assert httpx.get(f"{url}/vertex/health").status_code == 200


@pytest.mark.parametrize("encoding_format", ["float", "base64"])
@pytest.mark.parametrize("dim", [None, 8])
def test_openai_matches_encode(url: str, tiny_encoder, encoding_format: str, dim) -> None:  # type: ignore[no-untyped-def]
    request = {"input": TEXTS, "model": "tiny-bert", "encoding_format": encoding_format}
    if dim is not None:
        request["dimensions"] = dim
    response = httpx.post(f"{url}/v1/embeddings", json=request)
    assert response.status_code == 200, response.text
    body = response.json()
    rows = [item["embedding"] for item in sorted(body["data"], key=lambda d: d["index"])]
    if encoding_format == "base64":
        values = np.stack([np.frombuffer(base64.b64decode(r), dtype="<f4") for r in rows])
    else:
        values = np.array(rows, np.float32)
    expected = tiny_encoder.encode(TEXTS, dim=dim, batch_size=MAX_BATCH_SIZE)
    assert values.shape == expected.shape == (len(TEXTS), dim or tiny_encoder.embedding_dim)
    assert _cosines(values, expected).min() >= 0.9999
    tokens = int(tiny_encoder.tokenize(TEXTS).token_counts.sum())
    assert body["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens}
    assert body["model"] == "tiny-bert" and body["object"] == "list"

    single = httpx.post(f"{url}/v1/embeddings", json={"input": TEXTS[0]}).json()
    assert len(single["data"]) == 1
    full = tiny_encoder.encode(TEXTS[:1])
    assert _cosines(np.array([single["data"][0]["embedding"]]), full)[0] >= 0.9999


def test_auto_truncate(url: str, tiny_encoder) -> None:  # type: ignore[no-untyped-def]
    instances = [{"content": "short"}, {"content": long_text(200)}]
    refused = _predict(url, instances, autoTruncate=False)
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert error["code"] == 400 and error["status"] == "INVALID_ARGUMENT"
    assert "instances[1]" in error["message"] and "autoTruncate" in error["message"]

    cut = _predict(url, instances)  # autoTruncate defaults to true
    assert cut.status_code == 200, cut.text
    stats = [p["embeddings"]["statistics"] for p in cut.json()["predictions"]]
    assert stats[1] == {"token_count": tiny_encoder.max_length, "truncated": True}
    assert stats[0]["truncated"] is False


def test_output_dimensionality_above_the_model(url: str, tiny_encoder) -> None:  # type: ignore[no-untyped-def]
    too_big = tiny_encoder.embedding_dim + 1
    response = _predict(url, [{"content": "x"}], outputDimensionality=too_big)
    assert response.status_code == 400
    message = response.json()["error"]["message"]
    assert (
        f"outputDimensionality={too_big}" in message and str(tiny_encoder.embedding_dim) in message
    )
    openai = httpx.post(f"{url}/v1/embeddings", json={"input": "x", "dimensions": too_big})
    assert openai.status_code == 400
    assert openai.json()["error"]["param"] == "dimensions"


BIG = "word " * 20_000
BAD_VERTEX_REQUESTS = {
    "malformed JSON": ({"content": b'{"instances": [', "headers": {}}, 400, "malformed JSON"),
    "missing instances": ({"json": {"parameters": {}}}, 400, "instances: Field required"),
    "empty instances": ({"json": {"instances": []}}, 400, "instances is empty"),
    "not an object": ({"json": [1, 2]}, 400, "request body"),
    "content not a string": (
        {"json": {"instances": [{"content": 3}]}},
        400,
        "instances[0].content",
    ),
    "unknown task type": (
        {"json": {"instances": [{"content": "a", "task_type": "POETRY"}]}},
        400,
        "instances[0].task_type",
    ),
    "title on a query": (
        {"json": {"instances": [{"content": "a", "title": "t"}]}},
        400,
        "instances[0].title",
    ),
    "wrong content type": (
        {
            "content": b'{"instances": [{"content": "a"}]}',
            "headers": {"content-type": "text/plain"},
        },
        415,
        "Content-Type",
    ),
    "too many instances": (
        {"json": {"instances": [{"content": "a"}] * 41}},
        400,
        "more than the limit of 40",
    ),
    "too many tokens": (
        {"json": {"instances": [{"content": long_text(100)}] * 35}},
        400,
        "more than the limit of 2000 per request",
    ),
    "body over the limit": ({"json": {"instances": [{"content": BIG}]}}, 413, "larger than"),
    "chunked body over the limit": (
        {"content": iter([b'{"instances": [{"content": "', BIG.encode(), b'"}]}'])},
        413,
        "larger than",
    ),
}


@pytest.mark.parametrize("case", list(BAD_VERTEX_REQUESTS))
def test_bad_requests_get_4xx_and_the_server_keeps_serving(url: str, case: str) -> None:
    kwargs, status, words = BAD_VERTEX_REQUESTS[case]
    response = httpx.post(f"{url}/v1/models/tiny-bert:predict", **kwargs)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert words in error["message"] and error["code"] == status
    assert _predict(url, [{"content": "still serving"}]).status_code == 200


@pytest.mark.parametrize(
    ("request_body", "words"),
    [
        ({"input": [[101, 2023, 102]]}, "token ids"),
        ({"input": [1, 2, 3]}, "token ids"),
        ({"input": []}, "input is empty"),
        ({"input": [1, "a"]}, "list of strings"),
        ({"model": "m"}, "input: Field required"),
        ({"input": "a", "encoding_format": "int8"}, "encoding_format"),
    ],
)
def test_openai_errors(url: str, request_body: dict, words: str) -> None:
    response = httpx.post(f"{url}/v1/embeddings", json=request_body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert words in error["message"] and error["type"] == "invalid_request_error"


def test_unknown_route_is_a_vertex_style_404(url: str) -> None:
    response = httpx.get(f"{url}/v1/nothing")
    assert response.status_code == 404
    assert response.json()["error"]["status"] == "NOT_FOUND"


def test_concurrent_requests_are_batched_and_correct(url: str, tiny_encoder) -> None:  # type: ignore[no-untyped-def]
    names = list(DEFAULT_TASK_TYPES)
    texts = [f"{TEXTS[i % len(TEXTS)]} (request {i})" for i in range(200)]
    before = _metric_samples(url)

    async def send_all() -> list[httpx.Response]:
        async with httpx.AsyncClient(
            base_url=url, limits=httpx.Limits(max_connections=200), timeout=60
        ) as client:
            return await asyncio.gather(
                *(
                    client.post(
                        "/v1/models/tiny-bert:predict",
                        json={"instances": [{"content": t, "task_type": names[i % len(names)]}]},
                    )
                    for i, t in enumerate(texts)
                )
            )

    responses = asyncio.run(send_all())
    assert [r.status_code for r in responses] == [200] * len(texts)
    values = np.array([r.json()["predictions"][0]["embeddings"]["values"] for r in responses])
    expected = np.zeros_like(values)
    for j, name in enumerate(names):
        rows = list(range(j, len(texts), len(names)))
        mapping = DEFAULT_TASK_TYPES[name]
        expected[rows] = tiny_encoder.encode(
            [texts[r] for r in rows], mapping.task, mapping.kind, batch_size=MAX_BATCH_SIZE
        )
    assert _cosines(values, expected).min() >= 0.9999

    after = _metric_samples(url)
    batches = after["gecko_serve_batch_size_count{}"] - before["gecko_serve_batch_size_count{}"]
    batched_texts = after["gecko_serve_batch_size_sum{}"] - before["gecko_serve_batch_size_sum{}"]
    assert batched_texts == len(texts)
    assert batched_texts / batches > 1.0, f"{batches} batches for {len(texts)} texts"
    key = 'gecko_serve_requests_total{"route": "/v1/models/{model}:predict", "status": "200"}'
    assert after[key] - before.get(key, 0.0) == len(texts)
    assert after["gecko_serve_texts_total{}"] - before["gecko_serve_texts_total{}"] == len(texts)


def test_access_log_lines_are_json(url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
    _predict(url, [{"content": "logged"}], route="/v1/models/logged-model:predict")
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == ACCESS_LOGGER]
    line = next(x for x in lines if x["path"] == "/v1/models/logged-model:predict")
    assert line["method"] == "POST" and line["status"] == 200 and line["duration_ms"] > 0


def test_health_is_503_until_loaded_and_warmed(tiny_encoder) -> None:  # type: ignore[no-untyped-def]
    released = threading.Event()

    def load_when_released() -> JaxBackend:
        released.wait(timeout=60)
        return JaxBackend(tiny_encoder, MAX_BATCH_SIZE)

    with ThreadedServer(create_app(load_when_released, CONFIG)) as server:
        health = httpx.get(f"{server.url}/health")
        assert health.status_code == 503 and health.json()["status"] == "loading"
        predict = _predict(server.url, [{"content": "early"}])
        assert predict.status_code == 503
        assert predict.json()["error"]["status"] == "UNAVAILABLE"
        early = httpx.post(f"{server.url}/v1/embeddings", json={"input": "early"})
        assert early.status_code == 503 and "not ready" in early.json()["error"]["message"]
        metrics = _metric_samples(server.url)
        assert metrics["gecko_serve_ready{}"] == 0.0
        assert metrics["gecko_serve_warmup_shapes{}"] == 0.0

        released.set()
        wait_healthy(server.url)
        metrics = _metric_samples(server.url)
        expected_shapes = packing.pass_shapes(
            MAX_BATCH_SIZE * packing.MIN_ROW_LENGTH,
            tiny_encoder.max_length,
            CONFIG.warmup_max_length,
        )
        # Packed rows of the tiny model's 64 tokens: passes of 1..8 rows.
        assert expected_shapes == [(rows, 64) for rows in range(1, 9)]
        assert metrics["gecko_serve_warmup_shapes{}"] == len(expected_shapes)
        assert metrics["gecko_serve_ready{}"] == 1.0
        assert _predict(server.url, [{"content": "late"}]).status_code == 200


def test_fastapi_opentelemetry_is_off_unless_asked(tiny_encoder) -> None:  # type: ignore[no-untyped-def]
    import inspect

    from fastapi import FastAPI

    # The test extra installs a FastAPI with native OpenTelemetry.
    assert "telemetry" in inspect.signature(FastAPI.__init__).parameters
    for asked in (False, True):
        config = dataclasses.replace(CONFIG, opentelemetry=asked)
        app = create_app(lambda: JaxBackend(tiny_encoder, MAX_BATCH_SIZE), config)
        assert {app._telemetry[k] for k in ("tracing", "metrics", "logs")} == {asked}


def test_a_failed_load_is_reported(tiny_model_dir: str) -> None:
    failures: list[BaseException] = []

    def load_broken() -> JaxBackend:
        raise ValueError(f"{tiny_model_dir}: broken checkpoint")

    app = create_app(load_broken, CONFIG, on_load_error=failures.append)
    with ThreadedServer(app) as server:
        for _ in range(200):
            body = httpx.get(f"{server.url}/health").json()
            if body["status"] != "loading":
                break
            threading.Event().wait(0.02)
        assert body["status"] == "failed" and "broken checkpoint" in body["error"]
        assert httpx.get(f"{server.url}/health").status_code == 503
        assert [str(e) for e in failures] == [f"{tiny_model_dir}: broken checkpoint"]
