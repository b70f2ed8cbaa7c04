"""A real `tower-proxy serve` process: log lines, shutdown, quit, admin listener, healthcheck."""

from __future__ import annotations

import asyncio
import dataclasses
import signal

import aiohttp
import pytest

from proxy.sandbox.api_test import SLOW_INTERVAL

from ..conftest import free_port, login, run_cli, wait_until, write_config
from .conftest import http_status, json_lines, stop, with_server


def _log(config, **values):
    return dataclasses.replace(config, log=dataclasses.replace(config.log, **values))


# -- logs --------------------------------------------------------------------


async def test_request_log_line_carries_the_fields(serve_process, config, sandbox, logged_in):
    """One JSON `request` line per request: id, method, path without query, sizes, replay."""
    process = await serve_process(config, "ops-log-fields")
    async with aiohttp.ClientSession() as session:
        headers = {"X-Request-ID": "ops-req-1"}
        url = process.base + "/api/v1/_test/echo?page=2&secretish=abc"
        async with session.post(url, data=b"y" * 123, headers=headers) as response:
            assert response.status == 200
            assert response.headers["X-Request-ID"] == "ops-req-1"
            echoed = await response.json()
        assert echoed["headers"]["X-Request-ID"] == "ops-req-1"  # sent upstream too
        await sandbox.revoke()
        async with session.get(process.base + "/api/v1/user") as replayed:
            assert replayed.status == 200
            generated = replayed.headers["X-Request-ID"]
    assert await stop(process) == 0
    lines = json_lines(process.log_path)  # every line is JSON
    requests = {line["request_id"]: line for line in lines if line["event"] == "request"}
    first = requests["ops-req-1"]
    assert first["method"] == "POST" and first["path"] == "/api/v1/_test/echo"
    assert (first["status"], first["upstream_status"], first["bytes_in"]) == (200, 200, 123)
    assert first["bytes_out"] > 0 and first["duration_ms"] >= 0
    assert (first["refreshed"], first["replayed"], first["error"]) == (False, False, None)
    assert first["level"] == "info" and first["timestamp"].endswith("Z")
    second = requests[generated]
    assert len(generated) == 32 and (second["refreshed"], second["replayed"]) == (True, True)
    refreshed = [line for line in lines if line["event"] == "token_refreshed"]
    assert [line["generation"] for line in refreshed] == [2]
    assert refreshed[0]["fingerprint"].startswith("sha256:") and refreshed[0]["expires_in"] > 0


async def test_token_lifecycle_events_are_logged(serve_process, config, sandbox, logged_in):
    """refresh failed (reason), reauthorization required, store changed by another process."""
    process = await serve_process(config, "ops-log-lifecycle")
    async with aiohttp.ClientSession() as session:
        await sandbox.knobs(token_failures=1)
        await sandbox.revoke()
        assert await http_status(session, process.base + "/api/v1/user") == 503
        await sandbox.revoke(refresh_token=True)

        async def reauthorization_required() -> bool:
            return await http_status(session, process.base + "/api/v1/user") == 401

        await wait_until(reauthorization_required)  # once the back-off has passed
        relogged = await login(config, sandbox)  # a `tower-proxy login` elsewhere

        async def picked_up() -> bool:
            return await http_status(session, process.base + "/api/v1/user") == 200

        await wait_until(picked_up)
    assert await stop(process) == 0
    events = {}
    for line in json_lines(process.log_path):
        events.setdefault(line["event"], []).append(line)
    failed = events["token_refresh_failed"]
    assert failed[0]["reason"] == "unavailable" and failed[0]["level"] == "warning"
    reauth = events["token_reauthorization_required"]
    assert len(reauth) == 1 and reauth[0]["reason"] == "invalid_grant"
    assert reauth[0]["level"] == "error"
    changed = events["token_store_changed"]
    assert len(changed) == 1 and changed[0]["generation"] == relogged.generation == 2


async def test_log_level_comes_from_config(serve_process, config, sandbox, logged_in):
    """log.level = warning: no info lines at all, the warning still there."""
    process = await serve_process(_log(config, level="warning"), "ops-log-level")
    async with aiohttp.ClientSession() as session:
        assert await http_status(session, process.base + "/api/v1/user") == 200
        await sandbox.knobs(token_failures=1)
        await sandbox.revoke()
        assert await http_status(session, process.base + "/api/v1/user") == 503
    assert await stop(process) == 0
    lines = json_lines(process.log_path)
    assert {line["level"] for line in lines} == {"warning"}
    assert [line["event"] for line in lines] == ["token_refresh_failed"]


# -- shutdown ----------------------------------------------------------------


async def test_sigterm_lets_a_three_second_stream_finish(serve_process, config, sandbox, logged_in):
    """SIGTERM mid-stream: readiness 503 at once, served for the delay, stream done, exit 0."""
    process = await serve_process(with_server(config, shutdown_delay=1.0), "ops-term")
    ticks = int(3 / SLOW_INTERVAL)
    async with aiohttp.ClientSession() as session:
        async with session.get(process.base + "/api/v1/_test/slow?seconds=3") as slow:
            assert await slow.content.readline() == b"tick 0\n"
            process.proc.send_signal(signal.SIGTERM)
            await wait_until(lambda: _not_ready(session, process.base))
            async with session.get(process.base + "/api/v1/user") as late:
                assert late.status == 200  # the delay is for clients still arriving
                assert late.headers["Connection"] == "close"
            assert not slow.content.at_eof()  # readiness failed while the stream was open
            await wait_until(lambda: _refused(process.base))  # after shutdown_delay
            assert not slow.content.at_eof()  # the listener closed, the stream goes on
            rest = await slow.read()
    assert rest.decode().splitlines() == [f"tick {n}" for n in range(1, ticks)]
    assert await asyncio.wait_for(process.proc.wait(), 30) == 0
    events = [line["event"] for line in json_lines(process.log_path)]
    assert events.index("signal_received") < events.index("draining") < events.index("stopped")


async def _not_ready(session, base) -> bool:
    return await http_status(session, base + "/-/readyz") == 503


async def _refused(base) -> bool:
    """A new connection (never a pooled one) is refused: the listener has closed."""
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        try:
            async with session.get(base + "/-/healthz"):
                return False
        except aiohttp.ClientConnectorError:
            return True


async def test_drain_timeout_cuts_a_longer_stream_and_exits_zero(
    serve_process, config, sandbox, logged_in
):
    """drain_timeout = 1: a 20 s stream is cut (truncated, not completed) and the exit is 0."""
    process = await serve_process(with_server(config, drain_timeout=1.0), "ops-drain-cut")
    ticks = []
    async with aiohttp.ClientSession() as session:
        async with session.get(process.base + "/api/v1/_test/slow?seconds=20") as slow:
            ticks.append(await slow.content.readline())
            process.proc.send_signal(signal.SIGTERM)
            try:
                async for line in slow.content:
                    ticks.append(line)
            except aiohttp.ClientPayloadError:
                ticks.append(b"<cut>")
    assert await asyncio.wait_for(process.proc.wait(), 30) == 0
    assert ticks[0] == b"tick 0\n" and ticks[-1] == b"<cut>"
    assert len(ticks) < int(20 / SLOW_INTERVAL)


@pytest.mark.parametrize("second", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
async def test_second_signal_exits_at_once(serve_process, config, sandbox, logged_in, second):
    """SIGTERM, then SIGTERM or SIGINT while a 20 s stream drains: exit 128+signal at once."""
    process = await serve_process(with_server(config, shutdown_delay=1.0), "ops-twice")
    async with aiohttp.ClientSession() as session:
        async with session.get(process.base + "/api/v1/_test/slow?seconds=20") as slow:
            assert slow.status == 200
            process.proc.send_signal(signal.SIGTERM)
            await wait_until(lambda: _not_ready(session, process.base))
            process.proc.send_signal(second)
            code = await asyncio.wait_for(process.proc.wait(), 10)  # the stream had 20 s left
    assert code == 128 + second


# -- quit --------------------------------------------------------------------


async def test_quit_from_loopback_drains_and_exits_zero(serve_process, config, sandbox, logged_in):
    """POST /-/quit: 200, then the same drain as SIGTERM and exit 0; GET is refused."""
    process = await serve_process(config, "ops-quit")
    async with aiohttp.ClientSession() as session:
        async with session.get(process.base + "/-/quit") as wrong:
            assert wrong.status == 405
        async with session.post(process.base + "/-/quit") as response:
            assert response.status == 200
            assert await response.json() == {"status": "quitting"}
        assert await asyncio.wait_for(process.proc.wait(), 30) == 0
    events = [line["event"] for line in json_lines(process.log_path)]
    assert "quit_requested" in events and events[-1] == "stopped"


async def test_quit_then_signal_exits_at_once(serve_process, config, sandbox, logged_in):
    """After a quit started the drain, a signal ends the process at once."""
    process = await serve_process(with_server(config, shutdown_delay=5.0), "ops-quit-signal")
    async with aiohttp.ClientSession() as session:
        async with session.post(process.base + "/-/quit") as response:
            assert response.status == 200
        await wait_until(lambda: _not_ready(session, process.base))
    process.proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(process.proc.wait(), 10) == 128 + signal.SIGTERM


# -- admin listener ----------------------------------------------------------


async def test_admin_listen_separates_probes_from_the_data_port(
    serve_process, config, sandbox, logged_in
):
    """With admin_listen, /-/ answers only there (even to a pod-IP Host); data only on listen."""
    admin = f"127.0.0.1:{free_port()}"
    process = await serve_process(
        with_server(config, admin_listen=admin), "ops-admin", wait_ready=False
    )
    admin_base = f"http://{admin}"
    async with aiohttp.ClientSession() as session:
        await wait_until(lambda: _ready(session, admin_base))
        assert await http_status(session, process.base + "/api/v1/user") == 200
        assert await http_status(session, process.base + "/-/readyz") == 404
        assert await http_status(session, process.base + "/-/metrics") == 404
        assert await http_status(session, admin_base + "/api/v1/user") == 404
        pod_ip = {"Host": "10.1.2.3:9901"}  # kubelet and Prometheus use the pod IP
        for path in ("/-/healthz", "/-/readyz", "/-/startupz", "/-/metrics"):
            assert await http_status(session, admin_base + path, headers=pod_ip) == 200
        assert await http_status(session, admin_base + "/-/token", headers=pod_ip) == 403
        assert await http_status(session, admin_base + "/-/token") == 200
        async with session.get(admin_base + "/-/metrics") as response:
            text = await response.text()
        assert 'tower_proxy_requests_total{method="GET",status_class="2xx"} 1.0' in text
        assert 'tower_proxy_requests_total{method="GET",status_class="4xx"} 0.0' in text
    assert await stop(process) == 0


async def _ready(session, base) -> bool:
    return await http_status(session, base + "/-/readyz") == 200


# -- healthcheck -------------------------------------------------------------


async def test_healthcheck_command(serve_process, config, sandbox, logged_in, tmp_path):
    """Exit 0 while ready (listen or admin_listen), 1 when not ready or nobody answers."""
    admin = f"127.0.0.1:{free_port()}"
    process = await serve_process(
        with_server(config, admin_listen=admin), "ops-hc", wait_ready=False
    )
    async with aiohttp.ClientSession() as session:
        await wait_until(lambda: _ready(session, f"http://{admin}"))
    path = write_config(
        with_server(config, listen=f"127.0.0.1:{process.port}", admin_listen=admin),
        tmp_path / "hc.toml",
    )
    code, out, _err = await run_cli("healthcheck", "--config", str(path), log_name="ops-hc-cli")
    assert (code, out.strip()) == (0, "/-/readyz: 200 ready")
    code, out, _err = await run_cli(
        "healthcheck", "--live", "--config", str(path), log_name="ops-hc-cli"
    )
    assert (code, out.strip()) == (0, "/-/healthz: 200 ok")
    await sandbox.revoke(refresh_token=True)
    async with aiohttp.ClientSession() as session:
        assert await http_status(session, process.base + "/api/v1/user") == 401
    code, out, _err = await run_cli("healthcheck", "--config", str(path), log_name="ops-hc-cli")
    assert code == 1 and out.startswith("/-/readyz: 503 not ready (reauthorization required")
    assert await stop(process) == 0
    code, out, _err = await run_cli("healthcheck", "--config", str(path), log_name="ops-hc-cli")
    assert code == 1 and out.startswith(f"/-/readyz: no answer from {admin}")


async def test_healthcheck_on_the_data_port(serve_process, config, sandbox, logged_in, tmp_path):
    """Without admin_listen, healthcheck asks `listen` (0.0.0.0 is reached via loopback)."""
    process = await serve_process(config, "ops-hc-data")
    path = write_config(
        with_server(config, listen=f"127.0.0.1:{process.port}"), tmp_path / "d.toml"
    )
    code, out, _err = await run_cli("healthcheck", "--config", str(path), log_name="ops-hc-cli")
    assert (code, out.strip()) == (0, "/-/readyz: 200 ready")
    assert await stop(process) == 0
