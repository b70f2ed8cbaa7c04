"""Doorkeeper's gate in front of /api/v1: 401s, scopes, where tokens are read."""

from __future__ import annotations

from proxy.sandbox.guard import INSUFFICIENT_SCOPE

from .conftest import TEAM


def _challenge(description: str) -> str:
    return f'Bearer realm="Doorkeeper", error="invalid_token", error_description="{description}"'


async def test_missing_token_is_a_401_with_an_empty_body(harness):
    """No token: 401, empty body, Doorkeeper's WWW-Authenticate."""
    response = await harness.client.get("/api/v1/user")
    assert response.status == 401
    assert await response.read() == b""
    assert response.headers["WWW-Authenticate"] == _challenge("The access token is invalid")


async def test_unknown_token_is_invalid(harness):
    """A token the sandbox never issued is 'is invalid'."""
    response = await harness.api("GET", "/user", "0" * 64)
    assert response.status == 401
    assert response.headers["WWW-Authenticate"] == _challenge("The access token is invalid")


async def test_access_token_query_parameter_is_accepted(harness, token):
    """Like Doorkeeper, ?access_token= authenticates too."""
    response = await harness.client.get("/api/v1/user", params={"access_token": token})
    assert response.status == 200


async def test_read_only_token_gets_insufficient_scope_on_writes(harness):
    """A token granted 'read' may GET but a POST is 403 insufficient_scope."""
    token = await harness.access_token("read")
    assert (await harness.api("GET", "/teams", token)).status == 200
    response = await harness.api("POST", "/teams", token, json={"team": {"name": "X"}})
    assert response.status == 403
    assert await response.read() == b""
    assert response.headers["WWW-Authenticate"] == (
        'Bearer realm="Doorkeeper", error="insufficient_scope", '
        f'error_description="{INSUFFICIENT_SCOPE}"'
    )


async def test_write_scope_and_empty_scopes_may_write(harness):
    """'read write' and no scopes at all both allow writes."""
    for scopes in ("read write", ""):
        token = await harness.access_token(scopes)
        response = await harness.api(
            "POST", "/teams", token, json={"team": {"name": f"T {scopes}"}}
        )
        assert response.status == 200


async def test_unknown_route_is_404_before_authentication(harness):
    """Rails routes before Doorkeeper: an unknown path is 404 even without a token."""
    response = await harness.client.get("/api/v1/projects")
    assert response.status == 404
    assert (await response.json())["errors"][0]["title"] == "Not Found"


async def test_stats_count_api_requests_and_401s(harness, token):
    """api_requests counts every /api/v1 request, api_unauthorized the 401s."""
    await harness.api("GET", f"/teams/{TEAM}", token)  # a 404: no such route
    await harness.api("GET", "/user", token)
    await harness.client.get("/api/v1/user")
    stats = await harness.stats()
    assert (stats["api_requests"], stats["api_unauthorized"]) == (3, 1)
