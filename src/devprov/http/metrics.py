"""Prometheus metrics: the service layer's counters (``devprov.service.port.Metrics``), request
latency by API, open connections, and the ``/metrics`` page (docs/operations.md#metrics).

One registry per server process, of its own (not prometheus-client's global one), so that two
containers in one test process never share counts. With ``devprov serve --workers N`` each
process counts what it served: a scrape reaches one of them (docs/operations.md#metrics says
why not prometheus-client's multiprocess mode).

``/metrics`` answers only a caller with the admin token: the HTTPS port faces devices, and the
counts describe the fleet.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from devprov.service.port import Metrics

# Seconds; a registration takes a few milliseconds, a custom allocation webhook up to 10 s.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

# The first segment of a request path and the API it belongs to; a device's path starts with
# its ID scope, so whatever is not named here is the device API.
_APIS = {
    "subscriptions": "management",
    "enrollments": "service",
    "enrollmentgroups": "service",
    "registrations": "service",
}


class PrometheusMetrics:
    """The metrics of one server process, exported in Prometheus's text format."""

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=True)
        self._registrations = Counter(
            "devprov_registrations",
            "Registrations decided, by outcome, attestation type and protocol.",
            ["outcome", "attestation", "protocol"],
            registry=registry,
        )
        self._attestation_failures = Counter(
            "devprov_attestation_failures",
            "Devices that failed attestation, by reason.",
            ["reason"],
            registry=registry,
        )
        self._possession = Counter(
            "devprov_possession_attempts",
            "Proof-of-possession checks of CA certificates, by outcome.",
            ["outcome"],
            registry=registry,
        )
        self._duration = Histogram(
            "devprov_request_duration_seconds",
            "Time to answer a request, by API and status class (2xx, 4xx...).",
            ["api", "status"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self._open = Gauge(
            "devprov_open_connections",
            "Connections holding a slot of the connection gate (HTTPS, MQTT and AMQP).",
            registry=registry,
        )

    # --- the service layer's port (devprov.service.port.Metrics) -------------------------------

    def registration(self, *, outcome: str, attestation: str, protocol: str) -> None:
        self._registrations.labels(outcome, attestation, protocol).inc()

    def attestation_failure(self, reason: str) -> None:
        self._attestation_failures.labels(reason).inc()

    def possession_attempt(self, outcome: str) -> None:
        self._possession.labels(outcome).inc()

    def observe_request(self, api: str, status: int, seconds: float) -> None:
        self._duration.labels(api, f"{status // 100}xx").observe(seconds)

    # --- the adapters' own ----------------------------------------------------------------------

    def count_connections(self, open_connections: Callable[[], int]) -> None:
        """Read the open connections from ``open_connections`` at each scrape (the gate's count)."""
        self._open.set_function(lambda: float(open_connections()))

    def render(self) -> tuple[bytes, str]:
        """The page and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def api_of(path: str) -> str:
    """Which API a request path belongs to: device, service or management."""
    first = path.lstrip("/").split("/", 1)[0].lower()
    return _APIS.get(first, "device")


class RequestTimer:
    """ASGI middleware: each HTTP request's time to its last response byte, by API and status.

    The health and metrics endpoints are left out: probes would drown the devices' figures.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in UNTIMED_PATHS:
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        status = 500

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            elapsed = time.monotonic() - started
            self.metrics.observe_request(api_of(scope["path"]), status, elapsed)


UNTIMED_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
