"""Probes: readiness from what the process knows (never Tower), start-up, quit's loopback rule."""

from __future__ import annotations

import dataclasses
import socket
import time

import aiohttp
import pytest

from ..conftest import free_port, wait_for_health, wait_until
from ..fleet.conftest import RedisServer, redis_config, redis_login
from .conftest import http_status, stop

_ADMIN_PATHS = ("/-/healthz", "/-/readyz", "/-/startupz", "/-/metrics", "/-/token")


def _tower_calls(stats) -> tuple[int, int]:
    """(API requests, token endpoint requests) the sandbox has answered."""
    return stats["api_requests"], sum(stats["token_requests"].values())


async def _probe_all(proxy, rounds: int = 5) -> list[int]:
    statuses = []
    for _ in range(rounds):
        for path in _ADMIN_PATHS:
            statuses.append((await proxy.get(path)).status)
    return statuses


async def test_readiness_never_calls_tower(make_proxy, config, sandbox, logged_in):
    """Probes, scrapes and token reads: zero Tower calls, with a fresh, expired or failing token."""
    now = [time.time()]
    proxy = await make_proxy(config, clock=lambda: now[0], proactive_tick=3600)
    before = _tower_calls(await sandbox.stats())
    assert set(await _probe_all(proxy)) == {200}
    now[0] = logged_in.expires_at + 1  # expired: a request would refresh, a probe must not
    assert set(await _probe_all(proxy)) == {200}
    assert _tower_calls(await sandbox.stats()) == before
    await sandbox.knobs(token_failures=1)
    response = await proxy.get("/api/v1/user")  # the one call: a refresh, which fails
    assert response.status == 503
    failing = await proxy.get("/-/readyz")
    assert failing.status == 503
    assert (await failing.json())["reason"] == "token expired and refresh is failing"
    await _probe_all(proxy)
    api_requests, token_requests = _tower_calls(await sandbox.stats())
    assert (api_requests, token_requests) == (before[0], before[1] + 1)


@pytest.fixture
def redis_server(tmp_path):
    """A redis-server the test starts and stops itself (same port and data each time)."""
    server = RedisServer(tmp_path / "redis")
    yield server
    server.stop()


async def test_not_ready_until_the_first_token_load(serve_process, sandbox, tmp_path, redis_server):
    """Redis down at start: alive, but startupz/readyz 503 and requests 503 until it loads."""
    redis_server.start()
    config = redis_config(sandbox, tmp_path, redis_server)
    await redis_login(config, sandbox)
    redis_server.stop()
    process = await serve_process(config, "ops-startup", wait_ready=False)
    await wait_for_health(process)
    before = await sandbox.stats()
    async with aiohttp.ClientSession() as session:
        async with session.get(process.base + "/-/startupz") as starting:
            assert starting.status == 503 and (await starting.json())["status"] == "starting"
        assert await http_status(session, process.base + "/-/readyz") == 503
        async with session.get(process.base + "/api/v1/user") as refused:
            assert refused.status == 503
            assert refused.headers["X-Tower-Proxy-Error"] == "token_unavailable"
        assert await sandbox.stats() == before  # nothing reached Tower meanwhile
        redis_server.start()

        async def started() -> bool:
            return await http_status(session, process.base + "/-/startupz") == 200

        await wait_until(started)
        assert await http_status(session, process.base + "/-/readyz") == 200
        assert await http_status(session, process.base + "/api/v1/user") == 200
    assert await stop(process) == 0


def _non_loopback_address() -> str | None:
    """This machine's address on its default route (no packet is sent), if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("198.51.100.1", 9))
        except OSError:
            return None
        address = str(probe.getsockname()[0])
    return None if address.startswith("127.") else address


async def test_quit_is_refused_from_a_non_loopback_peer(serve_process, config, logged_in):
    """POST /-/quit from another address: 403, still serving; from loopback: exit 0."""
    address = _non_loopback_address()
    if address is None:
        pytest.skip("this machine has no non-loopback address to call from")
    admin_port = free_port()
    server = dataclasses.replace(
        config.server, admin_listen=f"0.0.0.0:{admin_port}", allowed_hosts=(address,)
    )
    config = dataclasses.replace(config, server=server)
    process = await serve_process(config, "ops-quit-remote", wait_ready=False)
    async with aiohttp.ClientSession() as session:
        remote = f"http://{address}:{admin_port}"

        async def ready() -> bool:
            return await http_status(session, remote + "/-/readyz") == 200

        await wait_until(ready)
        async with session.post(remote + "/-/quit") as refused:
            assert refused.status == 403
            assert "loopback" in (await refused.json())["error_description"]
        assert await http_status(session, remote + "/-/token") == 200  # the guard let it through
        assert await http_status(session, remote + "/-/readyz") == 200  # not draining either
        assert process.proc.returncode is None
        async with session.post(f"http://127.0.0.1:{admin_port}/-/quit") as accepted:
            assert accepted.status == 200
    assert await process.proc.wait() == 0


async def test_draining_serves_then_refuses(proxy):
    """Draining: readiness 503, requests served with `Connection: close`; refusing: 503."""
    normal = await proxy.get("/api/v1/user")
    assert normal.status == 200 and normal.headers.get("Connection") != "close"
    lifecycle = proxy.app.lifecycle
    lifecycle.request_stop()
    assert (await proxy.get("/-/readyz")).status == 503
    served = await proxy.get("/api/v1/user")
    assert (served.status, served.headers["Connection"]) == (200, "close")
    lifecycle.refusing = True
    refused = await proxy.get("/api/v1/user")
    assert refused.status == 503
    assert refused.headers["X-Tower-Proxy-Error"] == "shutting_down"
    assert refused.headers["Connection"] == "close"
