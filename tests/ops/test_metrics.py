"""`/-/metrics`: exact counter deltas as requests, replays and refreshes happen."""

from __future__ import annotations

import asyncio
import re

from prometheus_client.parser import text_string_to_metric_families

from ..conftest import ROOT


async def scrape(proxy) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = await proxy.get("/-/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    samples = {}
    for family in text_string_to_metric_families(await response.text()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def delta(before, after, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


async def test_counters_move_with_requests_replays_and_refreshes(proxy, sandbox):
    """3 GETs, a 404, a POST and a revoked token: every counter moves by exactly that much."""
    before = await scrape(proxy)
    for _ in range(3):
        assert (await proxy.get("/api/v1/user")).status == 200
    assert (await proxy.get("/elsewhere")).status == 404
    assert (await proxy.post("/api/v1/_test/echo", data=b"x" * 10)).status == 200
    await sandbox.revoke()
    assert (await proxy.get("/api/v1/teams")).status == 200
    after = await scrape(proxy)
    requests = "tower_proxy_requests_total"
    assert delta(before, after, requests, method="GET", status_class="2xx") == 4
    assert delta(before, after, requests, method="GET", status_class="4xx") == 1
    assert delta(before, after, requests, method="POST", status_class="2xx") == 1
    assert delta(before, after, "tower_proxy_replays_total") == 1
    assert delta(before, after, "tower_proxy_errors_total", code="not_found") == 1
    assert delta(before, after, "tower_proxy_token_refreshes_total", outcome="ok") == 1
    # 3 + 1 POST + the revoked first try and its replay; the 404 never went upstream.
    assert delta(before, after, "tower_proxy_upstream_latency_seconds_count") == 6
    assert value(after, "tower_proxy_in_flight_requests") == 0
    assert value(after, "tower_proxy_token_generation") == 2
    assert 7000 < value(after, "tower_proxy_token_expires_in_seconds") <= 7200
    assert value(after, "tower_proxy_ready") == 1
    assert await sandbox.refreshes() == 1


async def test_admin_requests_are_not_counted(proxy):
    """Probes, scrapes and token reads stay out of the request counters."""
    before = await scrape(proxy)
    for path in ("/-/healthz", "/-/readyz", "/-/startupz", "/-/token", "/-/metrics"):
        assert (await proxy.get(path)).status == 200
    after = await scrape(proxy)
    assert delta(before, after, "tower_proxy_requests_total", method="GET", status_class="2xx") == 0


async def test_failed_refresh_is_counted_by_outcome(proxy, sandbox):
    """A token endpoint failing once: outcome `unavailable` 1, one 503 token_unavailable."""
    await sandbox.knobs(token_failures=1)
    await sandbox.revoke()
    response = await proxy.get("/api/v1/user")
    assert response.status == 503
    after = await scrape(proxy)
    assert value(after, "tower_proxy_token_refreshes_total", outcome="unavailable") == 1
    assert value(after, "tower_proxy_token_refreshes_total", outcome="ok") == 0
    assert value(after, "tower_proxy_errors_total", code="token_unavailable") == 1
    assert value(after, "tower_proxy_requests_total", method="GET", status_class="5xx") == 1
    assert value(after, "tower_proxy_replays_total") == 0


async def test_in_flight_counts_an_open_stream(proxy):
    """While a streaming response is open, in-flight is exactly 1; after it, 0."""
    async with proxy.get("/api/v1/_test/slow?seconds=1") as slow:
        assert await slow.content.readline() == b"tick 0\n"
        assert value(await scrape(proxy), "tower_proxy_in_flight_requests") == 1
        await slow.read()
    assert value(await scrape(proxy), "tower_proxy_in_flight_requests") == 0


async def test_readiness_gauge_follows_draining(proxy):
    """tower_proxy_ready reads 0 once the app drains, like /-/readyz."""
    assert value(await scrape(proxy), "tower_proxy_ready") == 1
    proxy.app.lifecycle.request_stop()
    assert value(await scrape(proxy), "tower_proxy_ready") == 0
    assert (await proxy.get("/-/readyz")).status == 503


async def test_each_app_has_its_own_registry(make_proxy, config, logged_in):
    """Two apps in one process count separately (no global registry clash)."""
    first, second = await make_proxy(config), await make_proxy(config)
    await asyncio.gather(*(first.get("/api/v1/user") for _ in range(2)))
    count = "tower_proxy_requests_total"
    assert value(await scrape(first), count, method="GET", status_class="2xx") == 2
    assert value(await scrape(second), count, method="GET", status_class="2xx") == 0


async def test_build_info_and_no_secrets(proxy, sandbox, logged_in, config):
    """build_info carries the version; no token or client secret appears in the text."""
    await proxy.get("/api/v1/user")
    text = await (await proxy.get("/-/metrics")).text()
    assert 'tower_proxy_build_info{python="' in text and 'version="' in text
    secrets = await sandbox.control("GET", "/_sandbox/secrets")
    for secret in [*secrets, config.tower.client_secret, logged_in.access_token]:
        assert secret not in text


async def test_exported_names_are_the_documented_ones(proxy):
    """Every metric family scraped is in the README's table, and every row is scraped."""
    text = await (await proxy.get("/-/metrics")).text()
    scraped = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}
    readme = (ROOT / "README.md").read_text()
    documented = set(re.findall(r"^\| `(tower_proxy_[a-z_]+)", readme, re.MULTILINE))
    assert scraped == documented
    assert "_created" not in text  # no shadow series per counter


async def test_unusual_methods_share_one_label(proxy):
    """An arbitrary method is counted as `other`: labels stay bounded."""
    assert (await proxy.request("PROPFIND", "/api/v1/user")).status in (404, 405)
    after = await scrape(proxy)
    assert (
        sum(
            v
            for (name, labels), v in after.items()
            if name == "tower_proxy_requests_total" and ("method", "other") in labels
        )
        == 1
    )
