"""Access logs (one JSON object per line) and per-route request metrics."""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gecko_jax.serve.metrics import ServiceMetrics

ACCESS_LOGGER = "gecko_jax.serve.access"


class AccessLogMiddleware:
    """Logs each HTTP request as a JSON line and counts it by route and status.

    The route label is the matched route's template (``/v1/models/{model}:predict``), so
    arbitrary paths cannot grow the metrics without bound.
    """

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics
        self.logger = logging.getLogger(ACCESS_LOGGER)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500
        sent = 0

        async def send_and_record(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            seconds = time.perf_counter() - start
            route = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.requests.labels(route, str(status)).inc()
            self.metrics.request_seconds.labels(route).observe(seconds)
            if self.logger.isEnabledFor(logging.INFO):
                self.logger.info(_access_line(scope, status, sent, seconds))


def _access_line(scope: Scope, status: int, sent: int, seconds: float) -> str:
    client = scope.get("client")
    record: dict[str, Any] = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "client": f"{client[0]}:{client[1]}" if client else None,
        "method": scope.get("method"),
        "path": scope.get("path"),
        "status": status,
        "response_bytes": sent,
        "duration_ms": round(seconds * 1000.0, 3),
    }
    return orjson.dumps(record).decode()
