"""Prometheus metrics for /metrics: requests, errors, latency, batch sizes.

Each app has its own registry (several apps can live in one process, as in the tests). With
`--workers N` every worker process keeps its own counts; a scrape reaches one of them.
"""

from __future__ import annotations

import time

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class ServingMetrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        labels = ("route", "method", "status")
        self.requests = Counter("polyhead_requests", "HTTP requests answered", labels, registry=self.registry)
        self.errors = Counter("polyhead_request_errors", "HTTP requests answered with a 4xx or 5xx status", labels,
                              registry=self.registry)
        self.latency = Histogram("polyhead_request_latency_seconds", "Time from request to response",
                                 ("route", "method"), buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.images = Counter("polyhead_images", "Images run through the model", registry=self.registry)
        self.batch_size = Histogram("polyhead_batch_size", "Images per forward pass", buckets=_BATCH_BUCKETS,
                                    registry=self.registry)

    def observe_batch(self, size: int) -> None:
        self.batch_size.observe(size)
        self.images.inc(size)

    def render(self) -> tuple[bytes, str]:
        """(body, content type) of the Prometheus text exposition."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class MetricsMiddleware:
    """ASGI middleware counting every HTTP request by route template (not raw path, which would let
    clients create unbounded label values), method and status."""

    def __init__(self, app, metrics: ServingMetrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), 500

        async def send_and_watch(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_watch)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            method = scope.get("method", "")
            self.metrics.latency.labels(route, method).observe(time.perf_counter() - start)
            self.metrics.requests.labels(route, method, str(status)).inc()
            if status >= 400:
                self.metrics.errors.labels(route, method, str(status)).inc()
