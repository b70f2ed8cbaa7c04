"""The refresh grant and the token knobs: rotation, revocation, failures, delay."""

from __future__ import annotations

import asyncio

from proxy.sandbox.grants import INVALID_GRANT

from .conftest import HEX64


async def test_refresh_rotates_both_tokens_and_kills_the_old_access_token(harness):
    """A refresh gives a new pair; the old access token then answers 401."""
    old = await harness.token()
    response = await harness.refresh(old["refresh_token"])
    assert response.status == 200
    new = await response.json()
    assert HEX64.match(new["access_token"]) and new["access_token"] != old["access_token"]
    assert new["refresh_token"] != old["refresh_token"]
    assert (await harness.api("GET", "/user", old["access_token"])).status == 401
    assert (await harness.api("GET", "/user", new["access_token"])).status == 200


async def test_reused_refresh_token_is_invalid_grant(harness):
    """Refresh tokens are single-use; the second use is invalid_grant."""
    old = await harness.token()
    assert (await harness.refresh(old["refresh_token"])).status == 200
    again = await harness.refresh(old["refresh_token"])
    assert again.status == 400
    assert await again.json() == {"error": "invalid_grant", "error_description": INVALID_GRANT}
    stats = await harness.stats()
    assert stats["token_requests"]["refresh_token"] == 2
    assert stats["token_responses"]["invalid_grant"] == 1


async def test_unknown_refresh_token_is_invalid_grant(harness):
    """A refresh token the sandbox never issued is invalid_grant."""
    response = await harness.refresh("f" * 64)
    assert (await response.json())["error"] == "invalid_grant"


async def test_bearer_header_on_refresh_is_counted_not_required(harness):
    """The documented Bearer header is recorded in stats but optional."""
    first = await harness.token()
    with_header = await harness.refresh(
        first["refresh_token"], Authorization=f"Bearer {first['access_token']}"
    )
    second = await with_header.json()
    assert (await harness.refresh(second["refresh_token"])).status == 200
    assert (await harness.stats())["refresh_bearer_header"] == 1


async def test_access_token_expires_after_token_ttl(harness):
    """At created_at + expires_in the token answers 401 'expired'; a refresh revives access."""
    pair = await harness.token()
    harness.clock.now += 7198
    assert (await harness.api("GET", "/user", pair["access_token"])).status == 200
    harness.clock.now += 1
    expired = await harness.api("GET", "/user", pair["access_token"])
    assert expired.status == 401
    assert expired.headers["WWW-Authenticate"] == (
        'Bearer realm="Doorkeeper", error="invalid_token", '
        'error_description="The access token expired"'
    )
    fresh = await (await harness.refresh(pair["refresh_token"])).json()
    assert (await harness.api("GET", "/user", fresh["access_token"])).status == 200


async def test_token_ttl_knob_sets_expires_in(harness):
    """PATCH token_ttl changes expires_in of the next token."""
    await harness.client.patch("/_sandbox/knobs", json={"token_ttl": 30})
    pair = await harness.token()
    assert pair["expires_in"] == 30
    harness.clock.now += 30
    assert (await harness.api("GET", "/user", pair["access_token"])).status == 401


async def test_revoke_keeps_the_refresh_token_usable(harness):
    """POST /_sandbox/revoke kills access tokens; the refresh token still works."""
    pair = await harness.token()
    revoked = await harness.client.post("/_sandbox/revoke")
    assert await revoked.json() == {"revoked_access_tokens": 1, "refresh_tokens_revoked": False}
    response = await harness.api("GET", "/user", pair["access_token"])
    assert (
        'error_description="The access token was revoked"' in (response.headers["WWW-Authenticate"])
    )
    assert (await harness.refresh(pair["refresh_token"])).status == 200


async def test_revoke_with_refresh_tokens_forces_a_new_login(harness):
    """{"refresh_token": true} also revokes refresh tokens: the next refresh is invalid_grant."""
    pair = await harness.token()
    await harness.client.post("/_sandbox/revoke", json={"refresh_token": True})
    response = await harness.refresh(pair["refresh_token"])
    assert (await response.json())["error"] == "invalid_grant"


async def test_token_failures_answer_503_then_recover(harness):
    """token_failures=2: two 503s, then the refresh goes through with the same token."""
    pair = await harness.token()
    await harness.client.patch("/_sandbox/knobs", json={"token_failures": 2})
    for _ in range(2):
        failed = await harness.refresh(pair["refresh_token"])
        assert failed.status == 503
        assert (await failed.json())["error"] == "temporarily_unavailable"
    assert (await harness.refresh(pair["refresh_token"])).status == 200
    stats = await harness.stats()
    assert stats["token_responses"]["unavailable"] == 2
    assert stats["token_requests"]["refresh_token"] == 3


async def test_token_fail_seconds_is_a_window_on_the_sandbox_clock(harness):
    """token_fail_seconds=60: 503 until the clock passes 60 s from now."""
    pair = await harness.token()
    await harness.client.patch("/_sandbox/knobs", json={"token_fail_seconds": 60})
    assert (await harness.refresh(pair["refresh_token"])).status == 503
    harness.clock.now += 59.5
    assert (await harness.refresh(pair["refresh_token"])).status == 503
    harness.clock.now += 0.5
    assert (await harness.refresh(pair["refresh_token"])).status == 200


async def test_token_delay_holds_the_answer_after_counting_the_request(harness):
    """token_delay_ms: the request is counted at once, the answer comes after the delay."""
    pair = await harness.token()
    await harness.client.patch("/_sandbox/knobs", json={"token_delay_ms": 300})
    pending = asyncio.ensure_future(harness.refresh(pair["refresh_token"]))
    done, _ = await asyncio.wait([pending], timeout=0.1)
    assert done == set()
    stats = await harness.stats()
    assert stats["token_requests"]["refresh_token"] == 1
    assert stats["token_responses"]["ok"] == 1  # only the login so far
    assert (await pending).status == 200
