# ruff: noqa: E501  # the expected exposition is quoted verbatim, HELP lines and all
"""The exact `/-/metrics` text `Metrics` renders, checked without a running proxy.

The proxy keeps its per-request counters as plain ints and builds metric
families only at scrape time; these tests pin that the text is what
prometheus-client's own Counter/Gauge/Histogram printed: same series, same
zeros up front, cumulative buckets with inclusive `le` bounds.
"""

from __future__ import annotations

import math
import platform
import random
from dataclasses import dataclass, field

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from proxy import version
from proxy.metrics import LATENCY_BUCKETS, Metrics, PlainHistogram

LATENCY = "tower_proxy_upstream_latency_seconds"

FRESH = """\
# HELP tower_proxy_requests_total Client requests answered on the data path, by method and status class.
# TYPE tower_proxy_requests_total counter
tower_proxy_requests_total{method="GET",status_class="1xx"} 0.0
tower_proxy_requests_total{method="GET",status_class="2xx"} 0.0
tower_proxy_requests_total{method="GET",status_class="3xx"} 0.0
tower_proxy_requests_total{method="GET",status_class="4xx"} 0.0
tower_proxy_requests_total{method="GET",status_class="5xx"} 0.0
tower_proxy_requests_total{method="HEAD",status_class="1xx"} 0.0
tower_proxy_requests_total{method="HEAD",status_class="2xx"} 0.0
tower_proxy_requests_total{method="HEAD",status_class="3xx"} 0.0
tower_proxy_requests_total{method="HEAD",status_class="4xx"} 0.0
tower_proxy_requests_total{method="HEAD",status_class="5xx"} 0.0
tower_proxy_requests_total{method="POST",status_class="1xx"} 0.0
tower_proxy_requests_total{method="POST",status_class="2xx"} 0.0
tower_proxy_requests_total{method="POST",status_class="3xx"} 0.0
tower_proxy_requests_total{method="POST",status_class="4xx"} 0.0
tower_proxy_requests_total{method="POST",status_class="5xx"} 0.0
tower_proxy_requests_total{method="PUT",status_class="1xx"} 0.0
tower_proxy_requests_total{method="PUT",status_class="2xx"} 0.0
tower_proxy_requests_total{method="PUT",status_class="3xx"} 0.0
tower_proxy_requests_total{method="PUT",status_class="4xx"} 0.0
tower_proxy_requests_total{method="PUT",status_class="5xx"} 0.0
tower_proxy_requests_total{method="PATCH",status_class="1xx"} 0.0
tower_proxy_requests_total{method="PATCH",status_class="2xx"} 0.0
tower_proxy_requests_total{method="PATCH",status_class="3xx"} 0.0
tower_proxy_requests_total{method="PATCH",status_class="4xx"} 0.0
tower_proxy_requests_total{method="PATCH",status_class="5xx"} 0.0
tower_proxy_requests_total{method="DELETE",status_class="1xx"} 0.0
tower_proxy_requests_total{method="DELETE",status_class="2xx"} 0.0
tower_proxy_requests_total{method="DELETE",status_class="3xx"} 0.0
tower_proxy_requests_total{method="DELETE",status_class="4xx"} 0.0
tower_proxy_requests_total{method="DELETE",status_class="5xx"} 0.0
tower_proxy_requests_total{method="OPTIONS",status_class="1xx"} 0.0
tower_proxy_requests_total{method="OPTIONS",status_class="2xx"} 0.0
tower_proxy_requests_total{method="OPTIONS",status_class="3xx"} 0.0
tower_proxy_requests_total{method="OPTIONS",status_class="4xx"} 0.0
tower_proxy_requests_total{method="OPTIONS",status_class="5xx"} 0.0
tower_proxy_requests_total{method="other",status_class="1xx"} 0.0
tower_proxy_requests_total{method="other",status_class="2xx"} 0.0
tower_proxy_requests_total{method="other",status_class="3xx"} 0.0
tower_proxy_requests_total{method="other",status_class="4xx"} 0.0
tower_proxy_requests_total{method="other",status_class="5xx"} 0.0
# HELP tower_proxy_in_flight_requests Client requests being answered right now (streams included).
# TYPE tower_proxy_in_flight_requests gauge
tower_proxy_in_flight_requests 0.0
# HELP tower_proxy_upstream_latency_seconds Time from sending a request to Tower until its response headers arrived.
# TYPE tower_proxy_upstream_latency_seconds histogram
tower_proxy_upstream_latency_seconds_bucket{le="0.005"} 0.0
tower_proxy_upstream_latency_seconds_bucket{le="0.01"} 0.0
tower_proxy_upstream_latency_seconds_bucket{le="0.025"} 0.0
tower_proxy_upstream_latency_seconds_bucket{le="0.05"} 0.0
tower_proxy_upstream_latency_seconds_bucket{le="0.1"} 0.0
tower_proxy_upstream_latency_seconds_bucket{le="0.25"} 0.0
tower_proxy_upstream_latency_seconds_bucket{le="0.5"} 0.0
tower_proxy_upstream_latency_seconds_bucket{le="1.0"} 0.0
tower_proxy_upstream_latency_seconds_bucket{le="2.5"} 0.0
tower_proxy_upstream_latency_seconds_bucket{le="5.0"} 0.0
tower_proxy_upstream_latency_seconds_bucket{le="10.0"} 0.0
tower_proxy_upstream_latency_seconds_bucket{le="30.0"} 0.0
tower_proxy_upstream_latency_seconds_bucket{le="60.0"} 0.0
tower_proxy_upstream_latency_seconds_bucket{le="+Inf"} 0.0
tower_proxy_upstream_latency_seconds_count 0.0
tower_proxy_upstream_latency_seconds_sum 0.0
# HELP tower_proxy_replays_total Client requests replayed once with a newer token after Tower answered 401.
# TYPE tower_proxy_replays_total counter
tower_proxy_replays_total 0.0
# HELP tower_proxy_errors_total The proxy's own error answers (X-Tower-Proxy-Error), by code.
# TYPE tower_proxy_errors_total counter
# HELP tower_proxy_build_info Version of tower-proxy and Python.
# TYPE tower_proxy_build_info gauge
{build_info}
# HELP tower_proxy_token_refreshes_total Token refreshes by outcome (ok, invalid_grant, unavailable, store_unavailable, or the OAuth error Tower named).
# TYPE tower_proxy_token_refreshes_total counter
tower_proxy_token_refreshes_total{outcome="invalid_grant"} 0.0
tower_proxy_token_refreshes_total{outcome="ok"} 0.0
tower_proxy_token_refreshes_total{outcome="store_unavailable"} 0.0
tower_proxy_token_refreshes_total{outcome="unavailable"} 0.0
# HELP tower_proxy_ready 1 when /-/readyz answers 200 (usable token, not draining), else 0.
# TYPE tower_proxy_ready gauge
tower_proxy_ready 0.0
"""


@dataclass
class _Token:
    generation: int = 3

    def expires_in(self, now: float) -> float:
        return 7200.4567 - now


@dataclass
class _Tokens:
    outcomes: dict[str, int] = field(default_factory=dict)
    current: _Token | None = field(default_factory=_Token)

    def now(self) -> float:
        return 1.0


def _samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = metrics.render().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _buckets(metrics: Metrics) -> list[float]:
    samples = _samples(metrics)
    edges = [*(str(bound) for bound in LATENCY_BUCKETS), "+Inf"]
    return [samples[(f"{LATENCY}_bucket", (("le", edge),))] for edge in edges]


def _build_info_line() -> str:
    labels = f'python="{platform.python_version()}",version="{version()}"'
    return f"tower_proxy_build_info{{{labels}}} 1.0"


def _family_text(text: str, name: str) -> list[str]:
    return [line for line in text.splitlines() if name in line]


def test_fresh_registry_renders_exactly_the_documented_text():
    """A new Metrics renders every pre-created series at 0, in registration order."""
    assert Metrics().render().decode() == FRESH.replace("{build_info}", _build_info_line())


def test_known_calls_render_exactly():
    """A fixed sequence of hot-path calls moves exactly the series it should."""
    metrics = Metrics(tokens=lambda: _Tokens({"ok": 2, "invalid_client": 1}), ready=lambda: True)
    metrics.in_flight.inc()
    metrics.in_flight.inc()
    metrics.in_flight.dec()
    for seconds in (0.004, 0.01, 0.3, 0.3, 75.0):
        metrics.upstream_latency.observe(seconds)
    metrics.observe_request("GET", 200, replayed=False, error=None)
    metrics.observe_request("GET", 200, replayed=True, error=None)
    metrics.observe_request("POST", 404, replayed=False, error="not_found")
    metrics.observe_request("GET", 503, replayed=False, error="token_unavailable")
    metrics.observe_request("PROPFIND", 405, replayed=False, error="not_found")
    text = metrics.render().decode()
    moved = [line for line in text.splitlines() if not line.startswith("#") and " 0.0" not in line]
    assert moved == [
        'tower_proxy_requests_total{method="GET",status_class="2xx"} 2.0',
        'tower_proxy_requests_total{method="GET",status_class="5xx"} 1.0',
        'tower_proxy_requests_total{method="POST",status_class="4xx"} 1.0',
        'tower_proxy_requests_total{method="other",status_class="4xx"} 1.0',
        "tower_proxy_in_flight_requests 1.0",
        'tower_proxy_upstream_latency_seconds_bucket{le="0.005"} 1.0',
        'tower_proxy_upstream_latency_seconds_bucket{le="0.01"} 2.0',
        'tower_proxy_upstream_latency_seconds_bucket{le="0.025"} 2.0',
        'tower_proxy_upstream_latency_seconds_bucket{le="0.05"} 2.0',
        'tower_proxy_upstream_latency_seconds_bucket{le="0.1"} 2.0',
        'tower_proxy_upstream_latency_seconds_bucket{le="0.25"} 2.0',
        'tower_proxy_upstream_latency_seconds_bucket{le="0.5"} 4.0',
        'tower_proxy_upstream_latency_seconds_bucket{le="1.0"} 4.0',
        'tower_proxy_upstream_latency_seconds_bucket{le="2.5"} 4.0',
        'tower_proxy_upstream_latency_seconds_bucket{le="5.0"} 4.0',
        'tower_proxy_upstream_latency_seconds_bucket{le="10.0"} 4.0',
        'tower_proxy_upstream_latency_seconds_bucket{le="30.0"} 4.0',
        'tower_proxy_upstream_latency_seconds_bucket{le="60.0"} 4.0',
        'tower_proxy_upstream_latency_seconds_bucket{le="+Inf"} 5.0',
        "tower_proxy_upstream_latency_seconds_count 5.0",
        "tower_proxy_upstream_latency_seconds_sum 75.614",
        "tower_proxy_replays_total 1.0",
        'tower_proxy_errors_total{code="not_found"} 2.0',
        'tower_proxy_errors_total{code="token_unavailable"} 1.0',
        _build_info_line(),
        'tower_proxy_token_refreshes_total{outcome="invalid_client"} 1.0',
        'tower_proxy_token_refreshes_total{outcome="ok"} 2.0',
        "tower_proxy_token_expires_in_seconds 7199.457",
        "tower_proxy_token_generation 3.0",
        "tower_proxy_ready 1.0",
    ]


def test_a_value_equal_to_a_bound_counts_in_that_bucket():
    """`le` is inclusive: observing each bound once puts one value in each bucket."""
    metrics = Metrics()
    for bound in LATENCY_BUCKETS:
        metrics.upstream_latency.observe(bound)
    assert _buckets(metrics) == [*range(1, len(LATENCY_BUCKETS) + 1), len(LATENCY_BUCKETS)]


def test_a_value_just_above_a_bound_counts_in_the_next_bucket():
    """0.005 + a hair is not <= 0.005: it shows from le=0.01 on, and past 60 only in +Inf."""
    metrics = Metrics()
    metrics.upstream_latency.observe(math.nextafter(0.005, 1.0))
    metrics.upstream_latency.observe(math.nextafter(60.0, math.inf))
    assert _buckets(metrics) == [0, *[1] * (len(LATENCY_BUCKETS) - 1), 2]


def test_buckets_are_cumulative_and_inf_is_the_count():
    """Each bucket includes every smaller one; +Inf equals _count; _sum adds the values."""
    metrics = Metrics()
    values = [0.0, 0.003, 0.02, 0.02, 0.7, 3.0, 45.0, 1e6]
    for seconds in values:
        metrics.upstream_latency.observe(seconds)
    buckets = _buckets(metrics)
    samples = _samples(metrics)
    assert buckets == sorted(buckets)
    assert buckets == [2, 2, 4, 4, 4, 4, 4, 5, 5, 6, 6, 6, 7, 8]
    assert samples[(f"{LATENCY}_count", ())] == buckets[-1] == len(values)
    assert samples[(f"{LATENCY}_sum", ())] == pytest.approx(sum(values))


def test_histogram_matches_prometheus_clients_own_for_random_values():
    """Seeded random latencies (and the edge cases) render as prometheus-client's Histogram does."""
    reference = CollectorRegistry()
    theirs = Histogram(
        "upstream_latency_seconds",
        "Time from sending a request to Tower until its response headers arrived.",
        namespace="tower_proxy",
        buckets=LATENCY_BUCKETS,
        registry=reference,
    )
    metrics = Metrics()
    rng = random.Random(20240611)
    values = [rng.expovariate(4.0) for _ in range(2000)]
    for seconds in [*values, *LATENCY_BUCKETS, 0.0, -1.0, math.inf, 7]:
        theirs.observe(seconds)
        metrics.upstream_latency.observe(seconds)
    expected = _family_text(generate_latest(reference).decode(), LATENCY)
    assert _family_text(metrics.render().decode(), LATENCY) == [
        line for line in expected if "_created" not in line
    ]


def test_in_flight_goes_up_and_down():
    """inc/dec move the gauge by one each; it reads 0 once every request is done."""
    metrics = Metrics()
    gauge = "tower_proxy_in_flight_requests"
    for _ in range(3):
        metrics.in_flight.inc()
    assert _samples(metrics)[(gauge, ())] == 3
    metrics.in_flight.dec()
    assert _samples(metrics)[(gauge, ())] == 2
    metrics.in_flight.dec()
    metrics.in_flight.dec()
    assert _samples(metrics)[(gauge, ())] == 0


def test_status_outside_1xx_to_5xx_counts_only_its_error_and_replay():
    """No status_class series exists for 0 or 600; the error and replay still count."""
    metrics = Metrics()
    before = _samples(metrics)
    metrics.observe_request("GET", 600, replayed=True, error="upstream_bad_response")
    metrics.observe_request("GET", 0, replayed=False, error=None)
    after = _samples(metrics)
    changed = {key: value for key, value in after.items() if before.get(key) != value}
    assert changed == {
        ("tower_proxy_replays_total", ()): 1,
        ("tower_proxy_errors_total", (("code", "upstream_bad_response"),)): 1,
    }


def test_unknown_and_lowercase_methods_count_as_other():
    """Only the seven standard upper-case methods get their own label value."""
    metrics = Metrics()
    for method in ("get", "PROPFIND", "TRACE", ""):
        metrics.observe_request(method, 200, replayed=False, error=None)
    key = ("tower_proxy_requests_total", (("method", "other"), ("status_class", "2xx")))
    assert _samples(metrics)[key] == 4


def test_two_instances_count_separately_and_never_emit_created():
    """Each Metrics has its own registry and state; no `_created` series anywhere."""
    first, second = Metrics(), Metrics()
    first.observe_request("GET", 200, replayed=True, error="x")
    first.upstream_latency.observe(0.1)
    assert _samples(second) == _samples(Metrics())
    assert first.registry is not second.registry
    assert first.render() == generate_latest(first.registry)
    assert b"_created" not in first.render()


def test_histogram_bounds_must_increase():
    """Bounds out of order, repeated or infinite are refused when the histogram is built."""
    for bounds in ((0.1, 0.05), (0.1, 0.1), (0.1, math.inf)):
        with pytest.raises(ValueError, match="strictly increasing"):
            PlainHistogram(bounds)
