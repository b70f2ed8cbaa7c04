"""A fleet of `tower-proxy serve` processes sharing one identity through a real redis-server."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Awaitable, Callable

import aiohttp
import pytest

from proxy.config import Config
from proxy.tokens import TokenSet, make_store

from ..conftest import SandboxHandle, ServeProcess, login, run_cli, wait_until, write_config
from .conftest import redis_config, redis_login, status_of, wait_ready

pytestmark = pytest.mark.slow

Serve = Callable[..., Awaitable[ServeProcess]]


async def get_statuses(
    session: aiohttp.ClientSession, replicas: list[ServeProcess], count: int
) -> list[int]:
    """`count` concurrent GETs through the replicas, round robin."""

    async def one(process: ServeProcess) -> int:
        async with session.get(process.base + "/api/v1/user") as response:
            await response.read()
            return response.status

    return list(await asyncio.gather(*(one(replicas[i % len(replicas)]) for i in range(count))))


async def start_fleet(serve: Serve, config: Config, count: int) -> list[ServeProcess]:
    return [await serve(config, f"fleet-{i}") for i in range(count)]


async def stored_in_redis(config: Config) -> TokenSet | None:
    store = make_store(config)
    try:
        return await store.load()
    finally:
        await store.close()


async def refresh_outcomes(sandbox: SandboxHandle) -> tuple[int, int, int]:
    """(refresh requests received, ok answers, invalid_grant answers) at the sandbox.

    The sandbox counts answers by outcome over both grants: the one login's
    code grant is taken off the "ok" count.
    """
    stats = await sandbox.stats()
    responses, logins = stats["token_responses"], stats["token_requests"]["authorization_code"]
    return (
        stats["token_requests"]["refresh_token"],
        responses["ok"] - logins,
        responses["invalid_grant"],
    )


async def test_three_replicas_revoked_token_300_requests_one_refresh(
    serve_process, sandbox, shared_redis, tmp_path
):
    """3 replicas, token revoked, 300 concurrent requests: all 200, exactly one refresh."""
    config = redis_config(sandbox, tmp_path, shared_redis)
    await redis_login(config, sandbox)
    replicas = await start_fleet(serve_process, config, 3)
    await sandbox.revoke()
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        statuses = await get_statuses(session, replicas, 300)
    assert statuses == [200] * 300
    assert await sandbox.refreshes() == 1
    stored = await stored_in_redis(config)
    assert stored is not None and stored.generation == 2


async def test_lock_holder_killed_mid_refresh_fleet_recovers_with_one_refresh(
    serve_process, sandbox, shared_redis, tmp_path
):
    """SIGKILL the replica holding the lock mid-refresh: one further refresh, no invalid_grant."""
    config = redis_config(sandbox, tmp_path, shared_redis)
    await redis_login(config, sandbox)
    holder, *others = await start_fleet(serve_process, config, 3)
    await sandbox.knobs(token_delay_ms=60_000)  # the holder's token call hangs until killed
    await sandbox.revoke()
    async with aiohttp.ClientSession() as session:
        doomed = asyncio.create_task(get_statuses(session, [holder], 1))

        async def refresh_started() -> bool:
            return await sandbox.refreshes() == 1

        await wait_until(refresh_started)
        waiting = asyncio.create_task(get_statuses(session, others, 40))
        holder.proc.send_signal(signal.SIGKILL)
        await holder.proc.wait()
        await sandbox.knobs(token_delay_ms=0)
        statuses = await waiting
        with pytest.raises(aiohttp.ClientError):
            await doomed
    assert statuses == [200] * 40
    assert await refresh_outcomes(sandbox) == (2, 1, 0)  # the killed call, then one that worked


async def test_redis_lost_keeps_serving_refuses_to_refresh_and_recovers(
    serve_process, sandbox, make_redis, tmp_path
):
    """Redis stopped: valid token still serves, readiness 503, no refresh; restarted: ready."""
    redis = make_redis()
    config = redis_config(sandbox, tmp_path, redis)
    await redis_login(config, sandbox)
    replicas = await start_fleet(serve_process, config, 2)
    async with aiohttp.ClientSession() as session:
        for replica in replicas:
            await wait_ready(session, replica)
        redis.stop()
        for replica in replicas:
            await wait_ready(session, replica, ready=False)
        assert await get_statuses(session, replicas, 20) == [200] * 20
        await sandbox.revoke()
        assert set(await get_statuses(session, replicas, 10)) == {503}
        assert await sandbox.refreshes() == 0  # never a refresh without the fleet's lock
        redis.start()  # same port, same data
        for replica in replicas:
            await wait_ready(session, replica)
        assert await get_statuses(session, replicas, 20) == [200] * 20
    assert all(replica.proc.returncode is None for replica in replicas)
    assert await refresh_outcomes(sandbox) == (1, 1, 0)


async def test_redis_down_at_start_up_not_ready_then_ready_when_it_comes_up(
    serve_process, sandbox, make_redis, tmp_path
):
    """Started with Redis down: healthy but not ready, one clear log line, ready once it is up."""
    redis = make_redis()
    config = redis_config(sandbox, tmp_path, redis)
    await redis_login(config, sandbox)
    redis.stop()
    replica = await serve_process(config, "fleet-early")
    async with aiohttp.ClientSession() as session:
        assert await status_of(session, replica, "/-/readyz") == 503
        assert await status_of(session, replica, "/-/healthz") == 200
        async with session.get(replica.base + "/api/v1/user") as response:
            assert response.status == 503
            assert response.headers["X-Tower-Proxy-Error"] == "token_unavailable"
        redis.start()
        await wait_ready(session, replica)
        assert await get_statuses(session, [replica], 5) == [200] * 5
    events = [json.loads(line) for line in replica.log_path.read_text().splitlines()]
    warnings = [e for e in events if e["level"] in ("warning", "error", "critical")]
    assert [e["event"] for e in warnings] == ["token_store_unavailable"]
    assert f"127.0.0.1:{redis.port}" in warnings[0]["store"]
    assert "backoff" in warnings[0]["hint"]
    assert [e["event"] for e in events].count("token_store_available") == 1


async def test_login_and_status_work_against_the_redis_store(sandbox, shared_redis, tmp_path):
    """`login --code` stores into Redis; `status` reads it back, without the token."""
    config = redis_config(sandbox, tmp_path, shared_redis)
    path = write_config(config, tmp_path / "redis.toml")
    code = sandbox.state.issue_code(scopes="")
    rc, out, err = await run_cli("login", "--config", str(path), "--code", code)
    assert rc == 0, err
    assert "token stored in redis redis://127.0.0.1" in out and "generation 1" in out
    rc, out, err = await run_cli("status", "--config", str(path))
    assert rc == 0, err
    assert "generation 1" in out and f"redis redis://127.0.0.1:{shared_redis.port}/0" in out
    stored = await stored_in_redis(config)
    assert stored is not None and stored.fingerprint in out


async def test_a_login_elsewhere_reaches_every_replica_without_a_restart(
    serve_process, sandbox, shared_redis, tmp_path
):
    """A second `login` while 2 replicas serve: both use generation 2, no refresh at all."""
    config = redis_config(sandbox, tmp_path, shared_redis)
    path = write_config(config, tmp_path / "redis.toml")
    await redis_login(config, sandbox)
    replicas = await start_fleet(serve_process, config, 2)
    code = sandbox.state.issue_code(scopes="")  # the new login revokes generation 1's token
    rc, _out, err = await run_cli("login", "--config", str(path), "--code", code)
    assert rc == 0, err
    async with aiohttp.ClientSession() as session:
        assert await get_statuses(session, replicas, 20) == [200] * 20
        for replica in replicas:
            async with session.get(replica.base + "/-/token") as response:
                assert (await response.json())["generation"] == 2
    assert await sandbox.refreshes() == 0


async def test_migrate_store_moves_the_token_set_without_a_new_login(
    serve_process, sandbox, shared_redis, tmp_path
):
    """file → redis keeps the same token and removes the file; a redis replica serves with it."""
    config = redis_config(sandbox, tmp_path, shared_redis)
    path = write_config(config, tmp_path / "redis.toml")
    held = await login(config, sandbox)  # into the file store
    rc, out, err = await run_cli(
        "migrate-store", "--config", str(path), "--from", "file", "--to", "redis"
    )
    assert rc == 0, err
    assert "Moved token set" in out and held.fingerprint in out
    assert not config.token_path.exists()
    stored = await stored_in_redis(config)
    assert stored is not None and stored.access_token == held.access_token
    replica = await serve_process(config, "fleet-migrated")
    async with aiohttp.ClientSession() as session:
        assert await get_statuses(session, [replica], 3) == [200] * 3
    stats = await sandbox.stats()
    assert stats["token_requests"] == {"authorization_code": 1, "refresh_token": 0}


async def test_migrate_store_refuses_to_overwrite_a_stored_token_set(
    sandbox, shared_redis, tmp_path
):
    """A target that already holds a set is left alone, and the message says so."""
    config = redis_config(sandbox, tmp_path, shared_redis)
    path = write_config(config, tmp_path / "redis.toml")
    in_redis = await redis_login(config, sandbox)
    await login(config, sandbox)  # a second, different set in the file store
    rc, _out, err = await run_cli(
        "migrate-store", "--config", str(path), "--from", "file", "--to", "redis"
    )
    assert rc != 0
    assert "already holds a token set" in err and "--force" in err
    stored = await stored_in_redis(config)
    assert stored is not None and stored.access_token == in_redis.access_token
    assert config.token_path.exists()  # the source is kept when nothing moved
