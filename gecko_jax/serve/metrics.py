"""The service's Prometheus metrics (``GET /metrics``)."""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

PREFIX = "gecko_serve"
# Seconds: from a millisecond to a minute.
_TIME_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0)
_TOKEN_BUCKETS = tuple(float(2**k) for k in range(3, 18))


def _size_buckets(max_batch_size: int) -> tuple[float, ...]:
    sizes, size = [], 1
    while size < max_batch_size:
        sizes.append(float(size))
        size *= 2
    return (*sizes, float(max_batch_size))


class ServiceMetrics:
    """Counters and histograms of one app, in a registry of their own (so several apps
    can live in one process, as in tests).

    Args:
      max_batch_size: the largest batch, the top of the batch-size histogram.
    """

    def __init__(self, max_batch_size: int) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            f"{PREFIX}_requests",
            "HTTP requests by route and status",
            ["route", "status"],
            registry=r,
        )
        self.request_seconds = Histogram(
            f"{PREFIX}_request_duration_seconds",
            "HTTP request latency by route",
            ["route"],
            buckets=_TIME_BUCKETS,
            registry=r,
        )
        self.texts = Counter(f"{PREFIX}_texts", "texts embedded", registry=r)
        self.tokens = Counter(
            f"{PREFIX}_tokens", "tokens embedded (special tokens included)", registry=r
        )
        self.batch_size = Histogram(
            f"{PREFIX}_batch_size",
            "texts per model batch",
            buckets=_size_buckets(max_batch_size),
            registry=r,
        )
        self.batch_tokens = Histogram(
            f"{PREFIX}_batch_tokens", "tokens per model batch", buckets=_TOKEN_BUCKETS, registry=r
        )
        self.queue_seconds = Histogram(
            f"{PREFIX}_queue_seconds",
            "time a text waits before its batch runs",
            buckets=_TIME_BUCKETS,
            registry=r,
        )
        self.inference_seconds = Histogram(
            f"{PREFIX}_inference_seconds", "model time per batch", buckets=_TIME_BUCKETS, registry=r
        )
        self.queue_depth = Gauge(f"{PREFIX}_queue_texts", "texts waiting for a batch", registry=r)
        self.ready = Gauge(f"{PREFIX}_ready", "1 once the model is loaded and warmed", registry=r)
        self.warmup_shapes = Gauge(
            f"{PREFIX}_warmup_shapes", "forward-pass shapes run during warm-up", registry=r
        )
        self.warmup_seconds = Gauge(f"{PREFIX}_warmup_seconds", "warm-up time", registry=r)

    def observe_batch(self, texts: int, tokens: int, seconds: float) -> None:
        """Records one model batch."""
        self.texts.inc(texts)
        self.tokens.inc(tokens)
        self.batch_size.observe(texts)
        self.batch_tokens.observe(tokens)
        self.inference_seconds.observe(seconds)

    def render(self) -> tuple[bytes, str]:
        """The Prometheus text exposition and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
