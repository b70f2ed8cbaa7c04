"""The 401 invariant (SPEC section 3) against a real sandbox upstream."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import time

from proxy.tokens import FileStore

from .conftest import login, wait_until


async def test_revoked_token_is_refreshed_once_and_post_replayed_with_same_body(proxy, sandbox):
    """A POST after revocation: one refresh, the replay carries byte-identical body."""
    body = json.dumps({"x": "y" * 5000}).encode()
    await sandbox.revoke()
    response = await proxy.post(
        "/api/v1/_test/echo", data=body, headers={"Content-Type": "application/json"}
    )
    assert response.status == 200
    assert await sandbox.refreshes() == 1
    posts = [r for r in await sandbox.requests() if r["raw_path"] == "/api/v1/_test/echo"]
    assert [r["status"] for r in posts] == [401, 200]
    digest = hashlib.sha256(body).hexdigest()
    assert [r["body_sha256"] for r in posts] == [digest, digest]
    assert posts[0]["token_fingerprint"] != posts[1]["token_fingerprint"]


async def test_concurrent_requests_after_revocation_cause_exactly_one_refresh(proxy, sandbox):
    """200 requests racing on a revoked token: one refresh, all succeed."""
    await sandbox.revoke()
    responses = await asyncio.gather(*(proxy.get("/api/v1/user") for _ in range(200)))
    assert [r.status for r in responses] == [200] * 200
    assert await sandbox.refreshes() == 1


async def test_requests_queued_for_a_connection_wait_for_the_refresh(
    make_proxy, config, sandbox, logged_in
):
    """Two connections, 20 requests on a revoked token: only the two sent at once
    carry the refused token; the 18 that waited for a connection go out with the new one."""
    config = dataclasses.replace(config, tower=dataclasses.replace(config.tower, max_connections=2))
    proxy = await make_proxy(config)
    await sandbox.revoke()
    responses = await asyncio.gather(*(proxy.get("/api/v1/user") for _ in range(20)))
    assert [r.status for r in responses] == [200] * 20
    assert await sandbox.refreshes() == 1
    statuses = [r["status"] for r in await sandbox.requests() if r["raw_path"] == "/api/v1/user"]
    assert sorted(statuses) == [200] * 20 + [401] * 2


async def test_request_always_401_reaches_upstream_exactly_twice(proxy, sandbox):
    """A 401 on the replay goes back to the client as Tower's 401; no loop."""
    response = await proxy.get("/api/v1/_test/always401")
    assert response.status == 401
    assert "X-Tower-Proxy-Error" not in response.headers
    assert "invalid_token" in response.headers["WWW-Authenticate"]
    hits = [r for r in await sandbox.requests() if r["raw_path"] == "/api/v1/_test/always401"]
    assert len(hits) == 2
    assert await sandbox.refreshes() == 1


async def test_insufficient_scope_is_not_refreshed(make_proxy, config, sandbox):
    """403 insufficient_scope passes through and never triggers a refresh."""
    await login(config, sandbox, scopes="read")
    proxy = await make_proxy(config)
    response = await proxy.post("/api/v1/teams", json={"team": {"name": "x"}})
    assert response.status == 403
    assert "insufficient_scope" in response.headers["WWW-Authenticate"]
    assert await sandbox.refreshes() == 0


async def test_newer_token_in_store_is_used_without_refreshing(
    make_proxy, config, sandbox, logged_in
):
    """A login done elsewhere (newer generation) is used for the retry: no refresh."""
    proxy = await make_proxy(config)
    assert (await proxy.get("/api/v1/user")).status == 200
    await login(config, sandbox)  # another process logs in: the old token is dead
    response = await proxy.get("/api/v1/user")
    assert response.status == 200
    assert await sandbox.refreshes() == 0
    assert proxy.app.tokens.current.generation == 2


async def test_invalid_grant_requires_reauthorization_without_touching_tower(
    proxy, sandbox, config
):
    """A dead refresh token → 401 reauthorization_required at once, then no Tower calls."""
    await sandbox.revoke(refresh_token=True)
    first = await proxy.get("/api/v1/user")
    assert first.status == 401
    assert first.headers["X-Tower-Proxy-Error"] == "reauthorization_required"
    before = len(await sandbox.requests())
    token_calls = (await sandbox.stats())["token_requests"]["refresh_token"]
    for _ in range(5):
        again = await proxy.get("/api/v1/user")
        assert again.headers["X-Tower-Proxy-Error"] == "reauthorization_required"
    assert len(await sandbox.requests()) == before
    assert (await sandbox.stats())["token_requests"]["refresh_token"] == token_calls == 1
    assert (await proxy.get("/-/readyz")).status == 503


async def test_login_elsewhere_clears_reauthorization_without_restart(proxy, sandbox, config):
    """After invalid_grant, a `login` storing a new token makes requests work again."""
    await sandbox.revoke(refresh_token=True)
    assert (await proxy.get("/api/v1/user")).status == 401
    await login(config, sandbox)
    proxy.app.tokens._next_recheck = 0  # skip the 1 s re-check throttle
    response = await proxy.get("/api/v1/user")
    assert response.status == 200
    assert (await proxy.get("/-/readyz")).status == 200


async def test_transient_refresh_failure_gives_503_with_retry_after_and_backs_off(proxy, sandbox):
    """Token endpoint 503 → client 503 token_unavailable + Retry-After; no call per request."""
    await sandbox.knobs(token_failures=100)
    await sandbox.revoke()
    first = await proxy.get("/api/v1/user")
    assert first.status == 503
    assert first.headers["X-Tower-Proxy-Error"] == "token_unavailable"
    assert int(first.headers["Retry-After"]) >= 1
    for _ in range(10):
        again = await proxy.get("/api/v1/user")
        assert again.headers["X-Tower-Proxy-Error"] == "token_unavailable"
    assert await sandbox.refreshes() == 1


async def test_expired_token_in_backoff_is_refused_at_once(make_proxy, config, sandbox, logged_in):
    """Once the token has expired during a backoff, requests get 503 without any call."""
    now = [time.time()]
    proxy = await make_proxy(config, clock=lambda: now[0])
    await sandbox.knobs(token_failures=100)
    now[0] = logged_in.expires_at + 1
    first = await proxy.get("/api/v1/user")
    assert first.headers["X-Tower-Proxy-Error"] == "token_unavailable"
    api_before = (await sandbox.stats())["api_requests"]
    for _ in range(5):
        again = await proxy.get("/api/v1/user")
        assert again.status == 503
    stats = await sandbox.stats()
    assert stats["token_requests"]["refresh_token"] == 1
    assert stats["api_requests"] == api_before


async def test_valid_token_keeps_flowing_while_refresh_backs_off(
    make_proxy, config, sandbox, logged_in
):
    """A failed proactive refresh does not stop requests while the token is valid."""
    now = [time.time()]
    proxy = await make_proxy(config, clock=lambda: now[0])
    await sandbox.knobs(token_failures=100)
    now[0] = logged_in.expires_at - 10  # inside the refresh margin
    assert await proxy.app.tokens.refresh_if_due() is False
    assert (await proxy.get("/api/v1/user")).status == 200
    assert await sandbox.refreshes() == 1


async def test_proactive_refresh_happens_before_expiry_once(make_proxy, config, sandbox, logged_in):
    """Inside the margin the manager refreshes once, keyed on the generation."""
    now = [time.time()]
    proxy = await make_proxy(config, clock=lambda: now[0])
    manager = proxy.app.tokens
    assert await manager.refresh_if_due() is False
    now[0] = logged_in.expires_at - 1  # e.g. the laptop woke up just before expiry
    results = await asyncio.gather(*(manager.refresh_if_due() for _ in range(5)))
    assert results.count(True) >= 1
    assert await sandbox.refreshes() == 1
    assert manager.current.generation == 2
    stored = await FileStore(config.token_path).load()
    assert stored is not None and stored.generation == 2


async def test_expired_token_is_refreshed_before_forwarding(make_proxy, config, sandbox, logged_in):
    """A token past expiry is refreshed first; the upstream sees one request."""
    now = [time.time()]
    proxy = await make_proxy(config, clock=lambda: now[0])
    now[0] = logged_in.expires_at + 5
    response = await proxy.get("/api/v1/user")
    assert response.status == 200
    assert await sandbox.refreshes() == 1
    statuses = [r["status"] for r in await sandbox.requests() if r["raw_path"] == "/api/v1/user"]
    assert statuses == [200]


async def test_refresh_sends_bearer_header_as_documented(proxy, sandbox):
    """The refresh grant carries Authorization: Bearer <current token>."""
    await sandbox.revoke()
    assert (await proxy.get("/api/v1/user")).status == 200
    assert (await sandbox.stats())["refresh_bearer_header"] == 1


async def test_refreshed_token_set_is_persisted_before_use(proxy, sandbox, config):
    """After a refresh the file holds generation 2 with the token that was used."""
    await sandbox.revoke()
    assert (await proxy.get("/api/v1/user")).status == 200
    stored = await FileStore(config.token_path).load()
    assert stored is not None and stored.generation == 2
    last = (await sandbox.requests())[-1]
    assert last["token_fingerprint"] == hashlib.sha256(stored.access_token.encode()).hexdigest()[:8]


async def test_proactive_loop_refreshes_by_itself_near_expiry(
    make_proxy, config, sandbox, logged_in
):
    """The background loop, on its own, refreshes once when the wall clock nears expiry."""
    holder = {}

    def clock() -> float:
        # Just before expiry (a machine waking up) until the refresh lands, then real time.
        current = holder["manager"].current if "manager" in holder else None
        if current is None or current.generation == 1:
            return logged_in.expires_at - 1
        return time.time()

    proxy = await make_proxy(config, clock=clock, proactive_tick=0.01)
    holder["manager"] = manager = proxy.app.tokens

    async def refreshed() -> bool:
        return manager.current is not None and manager.current.generation >= 2

    await wait_until(refreshed)
    for _ in range(20):  # let the loop run more ticks: the fresh token needs no refresh
        await asyncio.sleep(0.01)
    assert await sandbox.refreshes() == 1
    assert manager.current.generation == 2
