"""Prometheus collectors for `/-/metrics`, one registry per application.

A registry per app (not the process-global default) lets many apps live in
one process — tests build dozens — without "duplicated timeseries" errors.

The hot path pays for two counter increments, one gauge up/down and one
histogram observation per request: labelled children are bound once here,
so a request never builds label tuples or looks names up.  Everything about
the token (refresh outcomes, seconds until expiry, generation, readiness) is
read from the token manager when Prometheus scrapes, never on requests.
No label ever carries a path, a header or a secret.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable, Iterator, Mapping
from importlib import metadata
from typing import Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

# No `*_created` series next to each counter and histogram: they double what
# is scraped and no dashboard or alert here reads them (a process-wide switch).
disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped in prometheus-client

NAMESPACE = "tower_proxy"
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")
# Outcomes always exported (as 0 until seen) so alerts can use rate() at once.
BASE_OUTCOMES = ("ok", "invalid_grant", "unavailable", "store_unavailable")
# Tower answers in ~50-500 ms; the tail buckets catch slow lists and uploads.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class TokenView(Protocol):
    """What the token collector reads from the token manager at scrape time."""

    @property
    def outcomes(self) -> Mapping[str, int]: ...

    @property
    def current(self) -> _TokenLike | None: ...

    def now(self) -> float: ...


class _TokenLike(Protocol):
    @property
    def generation(self) -> int: ...

    def expires_in(self, now: float) -> float: ...


class Metrics:
    """The collectors of one app; `observe_request` is the per-request call."""

    def __init__(
        self,
        *,
        tokens: Callable[[], TokenView | None] = lambda: None,
        ready: Callable[[], bool] = lambda: False,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self._define(self.registry)
        self.registry.register(TokenCollector(tokens, ready))
        self._by_method_class = {
            (method, index + 1): self._requests.labels(method=method, status_class=klass)
            for method in (*METHODS, "other")
            for index, klass in enumerate(STATUS_CLASSES)
        }
        self.started_at = time.time()

    def _define(self, registry: CollectorRegistry) -> None:
        self._requests = Counter(
            "requests",
            "Client requests answered on the data path, by method and status class.",
            ["method", "status_class"],
            namespace=NAMESPACE,
            registry=registry,
        )
        self.in_flight = Gauge(
            "in_flight_requests",
            "Client requests being answered right now (streams included).",
            namespace=NAMESPACE,
            registry=registry,
        )
        self.upstream_latency = Histogram(
            "upstream_latency_seconds",
            "Time from sending a request to Tower until its response headers arrived.",
            namespace=NAMESPACE,
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self._replays = Counter(
            "replays",
            "Client requests replayed once with a newer token after Tower answered 401.",
            namespace=NAMESPACE,
            registry=registry,
        )
        self._errors = Counter(
            "errors",
            "The proxy's own error answers (X-Tower-Proxy-Error), by code.",
            ["code"],
            namespace=NAMESPACE,
            registry=registry,
        )
        Info(
            "build", "Version of tower-proxy and Python.", namespace=NAMESPACE, registry=registry
        ).info({"version": _version(), "python": platform.python_version()})

    def observe_request(
        self, method: str, status: int, *, replayed: bool, error: str | None
    ) -> None:
        klass = status // 100
        child = self._by_method_class.get((method, klass))
        if child is None:
            child = self._by_method_class.get(("other", klass))
        if child is not None:
            child.inc()
        if replayed:
            self._replays.inc()
        if error is not None:
            self._errors.labels(code=error).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


class TokenCollector(Collector):
    """Token state, read from the manager when scraped (zero cost per request)."""

    def __init__(self, tokens: Callable[[], TokenView | None], ready: Callable[[], bool]):
        self._tokens = tokens
        self._ready = ready

    def collect(self) -> Iterator[Metric]:
        manager = self._tokens()
        refreshes = CounterMetricFamily(
            f"{NAMESPACE}_token_refreshes",
            "Token refreshes by outcome (ok, invalid_grant, unavailable, store_unavailable, "
            "or the OAuth error Tower named).",
            labels=["outcome"],
        )
        outcomes = dict.fromkeys(BASE_OUTCOMES, 0)
        if manager is not None:
            outcomes.update(manager.outcomes)
        for outcome, count in sorted(outcomes.items()):
            refreshes.add_metric([outcome], count)
        yield refreshes
        yield from self._token_gauges(manager)

    def _token_gauges(self, manager: TokenView | None) -> Iterator[Metric]:
        current = manager.current if manager is not None else None
        if current is not None and manager is not None:
            yield GaugeMetricFamily(
                f"{NAMESPACE}_token_expires_in_seconds",
                "Seconds until the held access token expires (negative once expired).",
                value=round(current.expires_in(manager.now()), 3),
            )
            yield GaugeMetricFamily(
                f"{NAMESPACE}_token_generation",
                "Generation of the held token set (grows by one per login or refresh).",
                value=current.generation,
            )
        yield GaugeMetricFamily(
            f"{NAMESPACE}_ready",
            "1 when /-/readyz answers 200 (usable token, not draining), else 0.",
            value=1 if self._ready() else 0,
        )


def _version() -> str:
    try:
        return metadata.version("tower-proxy")
    except metadata.PackageNotFoundError:
        return "unknown"
