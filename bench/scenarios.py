# ruff: noqa: RUF002, S310
"""The six scenarios of issue 7, each returning plain data for the report.

Scenarios 1–3 measure every target back to back in interleaved rounds (the
order rotates each round) so that the machine's noise hits all of them
alike; ratios are taken within a round, then the median over rounds.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from . import load
from .stack import (
    ROOT,
    Stack,
    cpu_seconds,
    free_port,
    rss_kib,
    start_relay,
    start_sandbox,
    start_tower_proxy,
    write_proxy_config,
    write_token_file,
)

API_PATH = "/api/v1/projects"
FILE_PATH = "/api/v1/files/big.bin"
STORM_PATH = "/api/v1/_test/echo"  # the sandbox's
REFERENCE = "nginx-proxy"


@dataclass(frozen=True, slots=True)
class Settings:
    rounds: int
    seconds: float  # per wrk run
    download_bytes: int
    distant_calls: int
    idle_seconds: float  # 0: skip the "after an idle minute" call
    storm_requests: int


def _rotated(names: list[str], round_index: int) -> list[str]:
    shift = round_index % len(names)
    return names[shift:] + names[:shift]


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def throughput(
    targets: dict[str, str], proxies: dict[str, int], settings: Settings
) -> dict[str, object]:
    """(1) requests/s at 32 connections; ratio to nginx-as-proxy within each round.

    Also the CPU each proxy (its whole process tree) spent per request: on a
    machine whose cores the load generator and the upstream share, that is
    the figure that does not depend on how the scheduler split them.
    """
    runs: dict[str, list[load.WrkResult]] = {name: [] for name in targets}
    cpu_us: dict[str, list[float]] = {name: [] for name in proxies}
    for index in range(settings.rounds):
        for name in _rotated(list(targets), index):
            url = targets[name] + API_PATH
            before = cpu_seconds(proxies[name]) if name in proxies else 0.0
            result = load.wrk(url, connections=32, threads=2, seconds=settings.seconds)
            runs[name].append(result)
            if name in proxies:
                spent = cpu_seconds(proxies[name]) - before
                cpu_us[name].append(spent / max(1, result.requests) * 1e6)
    return {
        name: {
            "rps": [r.requests_per_s for r in results],
            "median_rps": _median([r.requests_per_s for r in results]),
            "cpu_us_per_request": _median(cpu_us[name]) if cpu_us.get(name) else None,
            "ratio": _median(
                [
                    r.requests_per_s / ref.requests_per_s
                    for r, ref in zip(results, runs[REFERENCE], strict=True)
                ]
            ),
            "bad": sum(r.bad for r in results),
        }
        for name, results in runs.items()
    }


def latency(targets: dict[str, str], settings: Settings) -> dict[str, object]:
    """(2) sequential requests on one keep-alive connection: p50/p99 added over direct."""
    runs: dict[str, list[load.WrkResult]] = {name: [] for name in targets}
    for index in range(settings.rounds):
        for name in _rotated(list(targets), index):
            url = targets[name] + API_PATH
            runs[name].append(load.wrk(url, connections=1, threads=1, seconds=settings.seconds))
    direct = runs["direct"]
    return {
        name: {
            "p50_ms": _median([r.p50_ms for r in results]),
            "p99_ms": _median([r.p99_ms for r in results]),
            "added_p50_ms": _median(
                [r.p50_ms - d.p50_ms for r, d in zip(results, direct, strict=True)]
            ),
            "added_p99_ms": _median(
                [r.p99_ms - d.p99_ms for r, d in zip(results, direct, strict=True)]
            ),
            "bad": sum(r.bad for r in results),
        }
        for name, results in runs.items()
    }


def streaming(
    targets: dict[str, str], pids: dict[str, int], settings: Settings
) -> dict[str, object]:
    """(3) one large streamed download per target and round: MB/s and RSS growth."""
    runs: dict[str, list[load.Download]] = {name: [] for name in targets}
    for index in range(max(1, min(settings.rounds, 3))):
        for name in _rotated(list(targets), index):
            runs[name].append(load.download(targets[name] + FILE_PATH, pid=pids.get(name)))
    reference = runs[REFERENCE]
    return {
        name: {
            "median_mb_per_s": _median([r.mb_per_s for r in results]),
            "ratio": _median(
                [r.mb_per_s / ref.mb_per_s for r, ref in zip(results, reference, strict=True)]
            ),
            "rss_growth_mib": max(r.rss_growth_kib for r in results) / 1024
            if name in pids
            else None,
        }
        for name, results in runs.items()
    }


def distant(
    stack: Stack, tls_port: int, cert: Path, settings: Settings, *, workers: int = 0
) -> dict[str, object]:
    """(4) one-shot curl: direct HTTPS over a 50 ms RTT vs plain HTTP to the proxy."""
    relay = start_relay(stack, free_port(), tls_port, delay_ms=25)
    direct_url = f"https://127.0.0.1:{relay.port}{API_PATH}"
    port = free_port()
    token_path = stack.work / "distant" / "token.json"
    write_token_file(token_path)
    config = write_proxy_config(
        stack.work / "distant.toml",
        api_url=f"https://127.0.0.1:{relay.port}/api/v1",
        oauth_url=f"https://127.0.0.1:{relay.port}/oauth",
        port=port,
        token_path=token_path,
        ca_file=str(cert),
        workers=workers,
    )
    proxy, _ = start_tower_proxy(stack, "tower-proxy-distant", config, port)
    proxy_url = f"http://127.0.0.1:{port}{API_PATH}"
    first = load.curl_time(proxy_url)  # the first call after start-up
    direct, through = [], []
    for index in range(settings.distant_calls):
        pair = [(direct, direct_url, str(cert)), (through, proxy_url, None)]
        for samples, url, cacert in pair if index % 2 == 0 else pair[::-1]:
            samples.append(load.curl_time(url, cacert=cacert))
    after_idle = None
    if settings.idle_seconds:
        time.sleep(settings.idle_seconds)  # the point of this call is the idle gap
        after_idle = load.curl_time(proxy_url)
    direct_median = _median(direct)
    stack.stop(proxy)
    stack.stop(relay)
    return {
        "direct_ms": direct_median,
        "proxy_ms": _median(through),
        "ratio": _median(through) / direct_median,
        "first_call_ms": first,
        "first_call_ratio": first / direct_median,
        "after_idle_ms": after_idle,
        "after_idle_ratio": after_idle / direct_median if after_idle is not None else None,
        "idle_seconds": settings.idle_seconds,
        "calls": settings.distant_calls,
    }


# -- (5) refresh storm ---------------------------------------------------------


def _control(base: str, method: str, path: str, body: object | None = None) -> object:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base + path, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def _counts(base: str) -> tuple[int, int]:
    """(refresh grants, 401 answers) the sandbox has counted so far."""
    stats = _control(base, "GET", "/_sandbox/stats")
    assert isinstance(stats, dict)
    return int(stats["token_requests"]["refresh_token"]), int(stats["api_unauthorized"])


async def _concurrent(
    url: str, count: int, headers: dict[str, str]
) -> tuple[list[float], dict[int, int]]:
    """`count` requests at once, each on its own connection: latencies (ms), non-200 statuses."""
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one() -> tuple[float, int]:
            started = time.perf_counter()
            async with session.get(url, headers=headers) as response:
                await response.read()
                return (time.perf_counter() - started) * 1000, response.status

        results = await asyncio.gather(*(one() for _ in range(count)))
    failed = Counter(status for _, status in results if status != 200)
    return [ms for ms, _ in results], dict(failed)


def _p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98] if len(values) >= 2 else values[0]


def _token_round_trip(base: str) -> float:
    """One authorization_code exchange against the sandbox, in ms."""
    code = _control(base, "POST", "/_sandbox/authorize", {})
    assert isinstance(code, dict)
    form = (
        f"grant_type=authorization_code&code={code['code']}&client_id=sandbox-client"
        "&client_secret=sandbox-secret&redirect_uri=urn:ietf:wg:oauth:2.0:oob"
    ).encode()
    started = time.perf_counter()
    with urllib.request.urlopen(base + "/oauth/token", data=form, timeout=10) as response:
        response.read()
    return (time.perf_counter() - started) * 1000


def storm(stack: Stack, settings: Settings) -> dict[str, object]:
    """(5) `storm_requests` concurrent requests on a revoked token: refreshes and p99.

    Each round measures the same burst straight to the sandbox (with the
    valid token) and then through the proxy (its token just revoked), so the
    budget and the p99 come from the same minute; medians over rounds.
    """
    sandbox = start_sandbox(stack, free_port())
    base = f"http://127.0.0.1:{sandbox.port}"
    port = free_port()
    token_path = stack.work / "storm" / "token.json"
    config = write_proxy_config(
        stack.work / "storm.toml",
        api_url=f"{base}/api/v1",
        oauth_url=f"{base}/oauth",
        port=port,
        token_path=token_path,
        client_id="sandbox-client",
        client_secret="sandbox-secret",
        max_connections=settings.storm_requests + 64,  # every storm request on its own connection
    )
    code = _control(base, "POST", "/_sandbox/authorize", {})
    assert isinstance(code, dict)
    subprocess.run(
        [*stack.tower_proxy, "login", "--config", str(config), "--code", code["code"]],
        check=True,
        capture_output=True,
        cwd=ROOT,
    )
    proxy, _ = start_tower_proxy(stack, "tower-proxy-storm", config, port)
    asyncio.run(_concurrent(f"http://127.0.0.1:{port}{STORM_PATH}", 1, {}))  # warm
    rounds = [
        _storm_round(base, proxy.pid, port, token_path, settings) for _ in range(settings.rounds)
    ]
    stack.stop(proxy)
    stack.stop(sandbox)
    p99, direct, valid, rtt, cpu = (
        _median([r[key] for r in rounds]) for key in ("p99", "direct", "valid", "rtt", "cpu_ms")
    )
    return {
        "requests": settings.storm_requests,
        "rounds": len(rounds),
        "refreshes": [r["refreshes"] for r in rounds],  # one per round is the target
        "upstream_401s": [r["upstream_401s"] for r in rounds],  # sent with the revoked token
        "failed": sum(r["failed"] for r in rounds),
        "p99_ms": p99,
        "p99_rounds_ms": [r["p99"] for r in rounds],
        "upstream_p99_ms": direct,
        "upstream_p99_rounds_ms": [r["direct"] for r in rounds],
        # The same burst through the proxy before the revoke: what the proxy alone adds.
        "valid_p99_ms": valid,
        "proxy_cpu_ms": cpu,  # the proxy's CPU for the revoked burst
        "token_round_trip_ms": rtt,
        "budget_ms": direct + rtt + 20,
    }


def _storm_round(
    base: str, pid: int, port: int, token_path: Path, settings: Settings
) -> dict[str, float]:
    token = json.loads(token_path.read_text())["access_token"]  # the proxy's latest refresh
    burst = settings.storm_requests
    direct, _ = asyncio.run(
        _concurrent(base + STORM_PATH, burst, {"Authorization": f"Bearer {token}"})
    )
    through = f"http://127.0.0.1:{port}{STORM_PATH}"
    valid, _ = asyncio.run(_concurrent(through, burst, {}))
    rtt = _token_round_trip(base)
    before = _counts(base)
    _control(base, "POST", "/_sandbox/revoke", {})
    cpu_before = cpu_seconds(pid)
    latencies, failed = asyncio.run(_concurrent(through, burst, {}))
    cpu = cpu_seconds(pid) - cpu_before
    after = _counts(base)
    return {
        "p99": _p99(latencies),
        "direct": _p99(direct),
        "valid": _p99(valid),
        "rtt": rtt,
        "cpu_ms": cpu * 1000,
        "refreshes": after[0] - before[0],
        "upstream_401s": after[1] - before[1],
        "failed": sum(failed.values()),
    }


# -- (6) footprint -----------------------------------------------------------------


def footprint(stack: Stack, upstream_port: int, settings: Settings) -> dict[str, object]:
    """(6) idle RSS and start-to-ready of `serve`; wall time of `tower-proxy token`."""
    token_path = stack.work / "footprint" / "token.json"
    write_token_file(token_path)
    ready, idle = [], []
    config = stack.work / "footprint.toml"
    for _ in range(3 if settings.rounds > 1 else 1):
        port = free_port()
        write_proxy_config(
            config,
            api_url=f"http://127.0.0.1:{upstream_port}/api/v1",
            oauth_url=f"http://127.0.0.1:{upstream_port}/oauth",
            port=port,
            token_path=token_path,
        )
        proxy, seconds = start_tower_proxy(stack, "tower-proxy-footprint", config, port)
        ready.append(seconds)
        time.sleep(1.0)  # idle, as after start-up; RSS is read once it has settled
        idle.append(rss_kib(proxy.pid) / 1024)
        stack.stop(proxy)
    token_times = []
    for _ in range(5):
        started = time.monotonic()
        subprocess.run(
            [*stack.tower_proxy, "token", "--config", str(config)],
            check=True,
            capture_output=True,
            cwd=ROOT,
        )
        token_times.append(time.monotonic() - started)
    return {
        "ready_s": _median(ready),
        "idle_rss_mib": _median(idle),
        "token_command_s": _median(token_times),
    }
