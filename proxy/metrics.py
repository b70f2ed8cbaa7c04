"""Prometheus collectors for `/-/metrics`, one registry per application.

A registry per app (not the process-global default) lets many apps live in
one process — tests build dozens — without "duplicated timeseries" errors.

The hot path (per request: one gauge up/down, one or two latency
observations, one `observe_request`) touches plain Python ints, a dict and
a list of bucket counts — no locks, no label lookups, no metric objects.
prometheus-client's own Counter/Gauge/Histogram take a lock on every
increment, which costs more than all of this together.  The values become
metric families only when Prometheus scrapes (`_TrafficCollector`), and the
token state (refresh outcomes, seconds until expiry, generation, readiness)
is read from the token manager at scrape time too (`TokenCollector`).

Invariants:

- One thread owns a `Metrics`: the event loop that answers its requests and
  its scrapes.  Worker processes each have their own.  Nothing here locks.
- The exposition is what prometheus-client's Counter/Gauge/Histogram would
  print for the same calls: same names, HELP, TYPE, label order, series
  created at 0 up front (every method x status class, the replay counter,
  every bucket), histogram buckets cumulative with inclusive `le` bounds.
- No `*_created` series: families are built without a created timestamp,
  since no dashboard or alert here reads them and they double what is scraped.
- No label ever carries a path, a header or a secret; error codes are the
  proxy's own fixed vocabulary, unknown methods collapse into `other`.
"""

from __future__ import annotations

import platform
import time
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from itertools import accumulate, pairwise
from math import inf as INF
from typing import Protocol

from prometheus_client import CollectorRegistry, Info, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from . import version

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


class PlainGauge:
    """A gauge that is one int: `inc`/`dec` are an attribute add, no lock."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0

    def inc(self, amount: int = 1) -> None:
        self.value += amount

    def dec(self, amount: int = 1) -> None:
        self.value -= amount


class PlainHistogram:
    """A histogram kept as per-bucket counts; cumulated only when scraped.

    `_counts[i]` holds the observations in (bound[i-1], bound[i]]; the last
    slot is the `+Inf` bucket.  `bisect_left` finds the first bound >= the
    value, so a value equal to a bound lands in that bound's bucket, as
    Prometheus's `le` ("less than or equal") requires.
    """

    __slots__ = ("_bounds", "_counts", "_labels", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        if not all(low < high < INF for low, high in pairwise(bounds)):
            raise ValueError("histogram bounds must be finite and strictly increasing")
        self._bounds = tuple(float(bound) for bound in bounds)
        self._counts = [0] * (len(bounds) + 1)
        # Same `le` spelling as prometheus-client's Histogram ("1.0", "+Inf").
        self._labels: list[str] = [
            floatToGoString(bound)  # type: ignore[no-untyped-call]  # untyped in prometheus-client
            for bound in (*self._bounds, INF)
        ]
        self.sum = 0.0

    def observe(self, amount: float) -> None:
        self.sum += amount
        if amount == amount:  # NaN goes in no bucket (only the sum), as in prometheus-client
            self._counts[bisect_left(self._bounds, amount)] += 1

    def buckets(self) -> list[tuple[str, float]]:
        """(`le` label, cumulative count) pairs, `+Inf` last (it is the count)."""
        return list(zip(self._labels, accumulate(self._counts), strict=True))


class Metrics:
    """The collectors of one app; `observe_request` is the per-request call."""

    def __init__(
        self,
        *,
        tokens: Callable[[], TokenView | None] = lambda: None,
        ready: Callable[[], bool] = lambda: False,
    ) -> None:
        self.in_flight = PlainGauge()
        self.upstream_latency = PlainHistogram(LATENCY_BUCKETS)
        # One row of counts per method, indexed by status class - 1 (1xx..5xx).
        self._by_method = {method: [0] * len(STATUS_CLASSES) for method in (*METHODS, "other")}
        self._other = self._by_method["other"]
        self._replays = 0
        self._errors: defaultdict[str, int] = defaultdict(int)
        self.registry = CollectorRegistry(auto_describe=False)
        # Registration order is exposition order: traffic, build info, token state.
        self.registry.register(_TrafficCollector(self._traffic_families))
        Info(
            "build",
            "Version of tower-proxy and Python.",
            namespace=NAMESPACE,
            registry=self.registry,
        ).info({"version": version(), "python": platform.python_version()})
        self.registry.register(TokenCollector(tokens, ready))
        self.started_at = time.time()

    def observe_request(
        self, method: str, status: int, *, replayed: bool, error: str | None
    ) -> None:
        klass = status // 100
        if 0 < klass <= len(STATUS_CLASSES):  # a status outside 1xx-5xx has no series
            self._by_method.get(method, self._other)[klass - 1] += 1
        if replayed:
            self._replays += 1
        if error is not None:
            self._errors[error] += 1

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def _traffic_families(self) -> Iterator[Metric]:
        yield _requests_family(self._by_method)
        yield GaugeMetricFamily(
            f"{NAMESPACE}_in_flight_requests",
            "Client requests being answered right now (streams included).",
            value=self.in_flight.value,
        )
        yield HistogramMetricFamily(
            f"{NAMESPACE}_upstream_latency_seconds",
            "Time from sending a request to Tower until its response headers arrived.",
            buckets=self.upstream_latency.buckets(),
            sum_value=self.upstream_latency.sum,
        )
        yield CounterMetricFamily(
            f"{NAMESPACE}_replays",
            "Client requests replayed once with a newer token after Tower answered 401.",
            value=self._replays,
        )
        yield _errors_family(self._errors)


def _requests_family(by_method: Mapping[str, Sequence[int]]) -> Metric:
    family = CounterMetricFamily(
        f"{NAMESPACE}_requests",
        "Client requests answered on the data path, by method and status class.",
        labels=["method", "status_class"],
    )
    for method, counts in by_method.items():
        for klass, count in zip(STATUS_CLASSES, counts, strict=True):
            family.add_metric([method, klass], count)
    return family


def _errors_family(errors: Mapping[str, int]) -> Metric:
    family = CounterMetricFamily(
        f"{NAMESPACE}_errors",
        "The proxy's own error answers (X-Tower-Proxy-Error), by code.",
        labels=["code"],
    )
    for code, count in errors.items():  # first-seen order, like labelled children
        family.add_metric([code], count)
    return family


class _TrafficCollector(Collector):
    """Turns `Metrics`' plain counters into families when scraped."""

    def __init__(self, families: Callable[[], Iterable[Metric]]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families()

    def describe(self) -> Iterable[Metric]:
        # Lets the registry know these names (clash checks, restricted
        # registries), as it did when they were prometheus-client metrics.
        return self._families()


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
