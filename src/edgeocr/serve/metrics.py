"""Prometheus metrics of one app, in its own registry (several apps may live in one process, as in tests)."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: Paths reported by name; anything else is counted as "other" (bounded label values).
KNOWN_PATHS = frozenset({"/", "/v1/read", "/v1/read/batch", "/health", "/metrics", "/docs", "/redoc", "/openapi.json"})
READ_PATHS = frozenset({"/v1/read", "/v1/read/batch"})
LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class ServiceMetrics:
    """Requests by endpoint and status, request latency, images and lines read, read requests in flight, reads
    cancelled, request body bytes held."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "edgeocr_http_requests",
            "HTTP requests answered, by endpoint and status.",
            ("endpoint", "method", "status"),
            registry=self.registry,
        )
        self.latency = Histogram(
            "edgeocr_http_request_duration_seconds",
            "Time to answer a request, by endpoint.",
            ("endpoint",),
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.images = Counter("edgeocr_images_read", "Images read.", registry=self.registry)
        self.lines = Counter("edgeocr_lines_read", "Text lines read.", registry=self.registry)
        self.in_flight = Gauge(
            "edgeocr_read_requests_in_flight", "Read requests being handled now.", registry=self.registry
        )
        self.cancelled = Counter(
            "edgeocr_reads_cancelled",
            "Reads stopped part-way because their request ran out of time (the work stops, not just the wait).",
            registry=self.registry,
        )
        self.body_bytes_held = Gauge(
            "edgeocr_request_body_bytes_reserved",
            "Request body bytes reserved now, against max_bodies_bytes.",
            registry=self.registry,
        )


class MetricsMiddleware:
    """Counts every HTTP answer (errors included, whichever layer produced them) and times it."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        endpoint = path if path in KNOWN_PATHS else "other"
        status = 500  # what the client gets if the app fails before answering

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        reading = path in READ_PATHS
        if reading:
            self.metrics.in_flight.inc()
        start = time.perf_counter()
        try:
            await self.app(scope, receive, send_and_note)
        finally:
            if reading:
                self.metrics.in_flight.dec()
            self.metrics.requests.labels(endpoint, scope["method"], str(status)).inc()
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - start)
