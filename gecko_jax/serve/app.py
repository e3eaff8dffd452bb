"""The FastAPI app: routes, readiness, warm-up, errors.

The server listens at once; the model loads and warms up on the model thread in the
background, and until then ``/health`` answers 503 and embedding routes 503 UNAVAILABLE
(Vertex AI sends traffic only once the health route answers 200).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import inspect
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from gecko_jax.serve import openai, vertex
from gecko_jax.serve.access_log import AccessLogMiddleware
from gecko_jax.serve.backends import Backend
from gecko_jax.serve.batching import Batcher
from gecko_jax.serve.bodies import OrjsonResponse, read_json_body
from gecko_jax.serve.errors import ServiceError, openai_error_body, vertex_error_body
from gecko_jax.serve.metrics import ServiceMetrics
from gecko_jax.serve.service import EmbeddingService, Limits

logger = logging.getLogger(__name__)

VERTEX_PREDICT_ROUTE = "/v1/models/{model}:predict"
OPENAI_ROUTE = "/v1/embeddings"
HEALTH_ROUTE = "/health"
WARMUP_TEXT = "Gecko embeds text for retrieval, similarity and classification."


@dataclasses.dataclass(frozen=True)
class ServeConfig:
    """What the app serves and its limits.

    Attributes:
      model_name: the served model's name (OpenAI ``model``, ``/v1/models``).
      task_types: Vertex task type -> Gecko task and side.
      openai_task_type: task type the OpenAI route embeds with; None: texts unchanged.
      limits: per-request limits (texts, tokens).
      max_body_bytes: largest request body.
      max_batch_tokens: token budget of what the model thread takes at once (the texts'
        bucketed lengths, summed).
      max_batch_size: most texts the model thread takes at once; it packs them (JAX) or
        sorts them by length (SavedModel) into forward passes of ``model_batch_size`` rows.
      model_batch_size: rows of one forward pass (see the backends: the JAX one packs
        several texts a row).
      warmup_max_length: every forward-pass shape of texts up to this many tokens runs
        once before the service reports healthy.
      predict_routes: extra Vertex predict routes (``AIP_PREDICT_ROUTE``).
      health_routes: extra health routes (``AIP_HEALTH_ROUTE``).
      tokenizer_threads: threads tokenizing requests as they arrive.
      opentelemetry: FastAPI's native OpenTelemetry spans and metrics (FastAPI 0.16x
        and later, when a provider is configured). Off by default: ``/metrics`` has the
        service's own, and FastAPI's check for a provider costs a loaded server about
        half a millisecond of CPU per request.
    """

    model_name: str
    task_types: Mapping[str, vertex.TaskMapping] = dataclasses.field(
        default_factory=lambda: dict(vertex.DEFAULT_TASK_TYPES)
    )
    openai_task_type: str | None = None
    limits: Limits = Limits()
    max_body_bytes: int = 4 << 20
    max_batch_tokens: int = 16_384
    max_batch_size: int = 256
    model_batch_size: int = 32
    warmup_max_length: int = 128
    predict_routes: Sequence[str] = ()
    health_routes: Sequence[str] = ()
    tokenizer_threads: int = 2
    opentelemetry: bool = False

    def __post_init__(self) -> None:
        if self.openai_task_type is not None and self.openai_task_type not in self.task_types:
            raise ValueError(
                f"openai_task_type {self.openai_task_type!r} is not one of "
                f"{', '.join(sorted(self.task_types))}"
            )


def warm_up(backend: Backend, config: ServeConfig) -> int:
    """Traces the tokenizer for each side and runs every forward-pass shape of texts up to
    ``config.warmup_max_length`` tokens once, so that no request pays for a compilation.
    Returns the number of shapes run."""
    kinds = [vertex.QUERY, vertex.DOCUMENT]
    tokens = backend.tokenize([WARMUP_TEXT] * 2, ["search result"] * 2, kinds, [None, "title"])
    sample = tokens.token_ids[0]
    shapes = backend.warmup_shapes(config.warmup_max_length)
    for rows, length in shapes:
        backend.embed([np.resize(sample, length).astype(np.int32)] * rows)
    return len(shapes)


def _telemetry_option(enabled: bool) -> dict[str, Any]:
    """FastAPI's ``telemetry`` keyword, on releases that have native OpenTelemetry."""
    if "telemetry" not in inspect.signature(FastAPI.__init__).parameters:
        return {}
    return {"telemetry": {"tracing": enabled, "metrics": enabled, "logs": enabled}}


class _State:
    """What the routes need, filled in once the model is ready."""

    def __init__(self) -> None:
        self.service: EmbeddingService | None = None
        self.error: str | None = None

    def require_service(self) -> EmbeddingService:
        if self.service is None:
            reason = f"the model failed to load: {self.error}" if self.error else "loading"
            raise ServiceError(503, f"the model is not ready ({reason})")
        return self.service


def _error_response(request: Request, error: ServiceError) -> Response:
    if request.url.path == OPENAI_ROUTE:
        body = openai_error_body(error.status_code, error.message, error.param)
    else:
        body = vertex_error_body(error.status_code, error.message)
    return OrjsonResponse(body, status_code=error.status_code)


def create_app(
    load_backend: Callable[[], Backend],
    config: ServeConfig,
    on_load_error: Callable[[BaseException], None] | None = None,
) -> FastAPI:
    """The service's ASGI app.

    Args:
      load_backend: loads the model; runs on the model thread when the app starts.
      config: routes, limits and batching.
      on_load_error: called (on the event loop) when loading or warm-up fails, e.g. to
        stop the server; the app then answers 503 naming the error.
    """
    state = _State()
    metrics = ServiceMetrics(config.max_batch_size)
    model_thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="gecko-model")
    tokenizers = concurrent.futures.ThreadPoolExecutor(
        config.tokenizer_threads, thread_name_prefix="gecko-tokenize"
    )

    def load_and_warm() -> tuple[Backend, int, float]:
        backend = load_backend()
        start = time.perf_counter()
        shapes = warm_up(backend, config)
        return backend, shapes, time.perf_counter() - start

    async def start_serving() -> None:
        loop = asyncio.get_running_loop()
        try:
            backend, shapes, seconds = await loop.run_in_executor(model_thread, load_and_warm)
            batcher = Batcher(
                backend.embed,
                backend.embedding_dim,
                model_thread,
                config.max_batch_tokens,
                config.max_batch_size,
                backend.max_length,
                metrics,
                full_pass=config.model_batch_size,
            )
        except Exception as e:
            state.error = f"{type(e).__name__}: {e}"
            logger.error("gecko-serve: the model failed to load: %s", state.error)
            if on_load_error is not None:
                on_load_error(e)
            return
        batcher.start()
        state.service = EmbeddingService(
            backend, batcher, config.limits, tokenizers, config.tokenizer_threads
        )
        metrics.warmup_shapes.set(shapes)
        metrics.warmup_seconds.set(seconds)
        metrics.ready.set(1)
        logger.info(
            "gecko-serve: ready (%d warm-up shapes in %.1f s, embedding size %d, max length %d)",
            shapes,
            seconds,
            backend.embedding_dim,
            backend.max_length,
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loading = asyncio.get_running_loop().create_task(start_serving())
        try:
            yield
        finally:
            # Uvicorn has finished the in-flight requests (or given up on them) by now.
            if not loading.done():
                loading.cancel()
            if state.service is not None:
                await state.service.batcher.stop()
            model_thread.shutdown(wait=False, cancel_futures=True)
            tokenizers.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(
        title="gecko-serve",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        **_telemetry_option(config.opentelemetry),
    )
    app.state.serving = state
    app.state.metrics = metrics
    app.add_middleware(AccessLogMiddleware, metrics=metrics)

    @app.exception_handler(ServiceError)
    async def service_error(request: Request, error: ServiceError) -> Response:
        return _error_response(request, error)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> Response:
        return _error_response(request, ServiceError(error.status_code, str(error.detail)))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError) -> Response:
        return _error_response(request, ServiceError(400, str(error)))

    @app.exception_handler(Exception)
    async def internal_error(request: Request, error: Exception) -> Response:
        logger.exception("gecko-serve: %s %s failed", request.method, request.url.path)
        return _error_response(request, ServiceError(500, f"internal error: {error}"))

    async def health() -> Response:
        if state.service is not None:
            return OrjsonResponse({"status": "ok"})
        status = "failed" if state.error else "loading"
        return OrjsonResponse({"status": status, "error": state.error}, status_code=503)

    async def vertex_predict(request: Request) -> Response:
        body = await read_json_body(request, config.max_body_bytes)
        parsed = vertex.parse_request(body)
        service = state.require_service()
        service.check_count(len(parsed.instances), "instances")
        dim = parsed.parameters.output_dimensionality
        service.check_dim(dim, "outputDimensionality")
        rows = vertex.request_rows(parsed, config.task_types)
        result = await service.embed(
            rows.texts,
            rows.tasks,
            rows.kinds,
            rows.titles,
            dim=dim,
            auto_truncate=parsed.parameters.auto_truncate,
            field="instances",
        )
        return OrjsonResponse(vertex.predict_response(result))

    async def openai_embeddings(request: Request) -> Response:
        body = await read_json_body(request, config.max_body_bytes)
        parsed = openai.parse_request(body)
        texts = openai.input_texts(parsed.input)
        service = state.require_service()
        service.check_dim(parsed.dimensions, "dimensions")
        mapping = (
            config.task_types[config.openai_task_type]
            if config.openai_task_type
            else vertex.TaskMapping(None)
        )
        result = await service.embed(
            texts,
            [mapping.task] * len(texts),
            [mapping.kind] * len(texts),
            [None] * len(texts),
            dim=parsed.dimensions,
            auto_truncate=True,
            field="input",
        )
        return OrjsonResponse(
            openai.embeddings_response(result, config.model_name, parsed.encoding_format)
        )

    async def list_models() -> Response:
        return OrjsonResponse(
            {
                "object": "list",
                "data": [{"id": config.model_name, "object": "model", "owned_by": "gecko_jax"}],
            }
        )

    async def prometheus_metrics() -> Response:
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    for path in dict.fromkeys([HEALTH_ROUTE, *config.health_routes]):
        app.add_api_route(path, health, methods=["GET"], include_in_schema=False)
    for path in dict.fromkeys([VERTEX_PREDICT_ROUTE, *config.predict_routes]):
        app.add_api_route(path, vertex_predict, methods=["POST"])
    app.add_api_route(OPENAI_ROUTE, openai_embeddings, methods=["POST"])
    app.add_api_route("/v1/models", list_models, methods=["GET"])
    app.add_api_route("/metrics", prometheus_metrics, methods=["GET"], include_in_schema=False)
    return app
