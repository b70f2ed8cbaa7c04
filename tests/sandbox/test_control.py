"""The /_sandbox control path: knobs, code shortcut, stats, request log, secrets."""

from __future__ import annotations

import hashlib

from .conftest import OOB


async def test_knobs_start_from_settings(make_harness):
    """GET /_sandbox/knobs shows the settings' values and no injected failures."""
    harness = await make_harness(token_ttl=60, latency_ms=5, error_rate=0.25, token_delay_ms=7)
    knobs = await (await harness.client.get("/_sandbox/knobs")).json()
    assert knobs == {
        "token_ttl": 60,
        "latency_ms": 5,
        "error_rate": 0.25,
        "token_delay_ms": 7,
        "token_failures": 0,
        "token_fail_seconds": 0.0,
    }


async def test_bad_knob_patch_changes_nothing(harness):
    """A patch with one bad value is 400 and leaves every knob as it was."""
    response = await harness.client.patch("/_sandbox/knobs", json={"token_ttl": 5, "error_rate": 2})
    assert response.status == 400
    assert "error_rate" in (await response.json())["error_description"]
    unknown = await harness.client.patch("/_sandbox/knobs", json={"bogus": 1})
    assert unknown.status == 400
    knobs = await (await harness.client.get("/_sandbox/knobs")).json()
    assert knobs["token_ttl"] == 7199


async def test_error_rate_one_makes_every_api_request_a_500(harness, token):
    """error_rate=1: every /api/v1 request answers 500 JSON; 0 restores service."""
    await harness.client.patch("/_sandbox/knobs", json={"error_rate": 1})
    response = await harness.api("GET", "/user", token)
    assert response.status == 500
    assert (await response.json())["errors"][0]["status"] == "500"
    await harness.client.patch("/_sandbox/knobs", json={"error_rate": 0})
    assert (await harness.api("GET", "/user", token)).status == 200


async def test_error_rate_is_repeatable_with_a_random_seed(make_harness):
    """The same random_seed gives the same sequence of injected 500s."""
    runs = []
    for _ in range(2):
        harness = await make_harness(random_seed=42, error_rate=0.5)
        token = await harness.access_token()
        runs.append([(await harness.api("GET", "/user", token)).status for _ in range(20)])
    assert runs[0] == runs[1]
    assert set(runs[0]) == {200, 500}


async def test_control_authorize_gives_a_usable_code(harness):
    """POST /_sandbox/authorize returns a code the token endpoint accepts."""
    answer = await (
        await harness.client.post("/_sandbox/authorize", json={"scopes": "read"})
    ).json()
    response = await harness.client.post(
        "/oauth/token",
        data={
            "client_id": "sandbox-client",
            "client_secret": "sandbox-secret",
            "grant_type": "authorization_code",
            "code": answer["code"],
            "redirect_uri": OOB,
        },
    )
    assert (await response.json())["scope"] == "read"
    bad = await harness.client.post("/_sandbox/authorize", json={"redirect_uri": "https://x/"})
    assert bad.status == 400


async def test_stats_reset_zeroes_every_counter(harness, token):
    """POST /_sandbox/stats/reset zeroes all counters."""
    await harness.api("GET", "/user", token)
    reset = await (await harness.client.post("/_sandbox/stats/reset")).json()
    assert reset == {
        "token_requests": {"authorization_code": 0, "refresh_token": 0},
        "token_responses": {
            "ok": 0,
            "invalid_grant": 0,
            "otp_required": 0,
            "unavailable": 0,
            "other_error": 0,
        },
        "refresh_bearer_header": 0,
        "api_requests": 0,
        "api_unauthorized": 0,
        "file_host_authorization_headers": 0,
    }


async def test_request_log_masks_the_token_and_keeps_the_raw_path(harness, token):
    """Logged requests keep the raw path and body hash; the token is only a fingerprint."""
    fingerprint = hashlib.sha256(token.encode()).hexdigest()[:8]
    body = b'{"todo": {"content": "caf\\u00e9"}}'
    await harness.api("POST", "/_test/echo/caf%C3%A9?page%5Bnumber%5D=2", token, data=body)
    await harness.api("GET", "/user", token)
    entries = await (await harness.client.get("/_sandbox/requests?limit=2")).json()
    assert [e["raw_path"] for e in entries] == [
        "/api/v1/_test/echo/caf%C3%A9?page%5Bnumber%5D=2",
        "/api/v1/user",
    ]
    first = entries[0]
    assert first["method"] == "POST" and first["status"] == 200
    assert first["headers"]["Authorization"] == f"Bearer {fingerprint}"
    assert first["token_fingerprint"] == fingerprint
    assert first["body_sha256"] == hashlib.sha256(body).hexdigest()
    assert first["body_size"] == len(body)
    assert token not in str(entries)


async def test_request_log_keeps_the_last_thousand(harness, token):
    """Only the newest 1000 requests are kept, newest last."""
    for n in range(1003):
        await harness.client.get(f"/api/v1/user?n={n}")
    entries = await (await harness.client.get("/_sandbox/requests?limit=5000")).json()
    assert len(entries) == 1000
    assert entries[-1]["raw_path"] == "/api/v1/user?n=1002"
    assert entries[0]["raw_path"] == "/api/v1/user?n=3"
    assert entries[-1]["token_fingerprint"] is None and entries[-1]["status"] == 401


async def test_secrets_lists_every_secret_issued(harness):
    """/_sandbox/secrets has the client secret, codes, access and refresh tokens."""
    first = await harness.token()
    code = harness.state.issue_code()
    secrets = await (await harness.client.get("/_sandbox/secrets")).json()
    assert set(secrets) >= {"sandbox-secret", code, first["access_token"], first["refresh_token"]}
    assert len(secrets) == 5  # client secret, two codes, one pair


async def test_clock_advance_expires_tokens_from_outside(harness):
    """POST /_sandbox/clock moves sandbox time, for tests in another process."""
    token = await harness.access_token()
    answer = await (await harness.client.post("/_sandbox/clock", json={"advance": 7199})).json()
    assert answer["offset"] == 7199
    assert (await harness.api("GET", "/user", token)).status == 401
