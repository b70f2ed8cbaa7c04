"""The authorization-code grant at /oauth/token, as Doorkeeper answers it."""

from __future__ import annotations

import base64

from proxy.sandbox.grants import INVALID_GRANT

from .conftest import CALLBACK, CLIENT, HEX64, OOB, START


def _form(code: str, redirect_uri: str = OOB, **extra: str) -> dict[str, str]:
    return {
        **CLIENT,
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        **extra,
    }


async def test_code_grant_answers_the_documented_token_response(harness):
    """A good code gives exactly Tower's fields, no-store headers and 64-hex tokens."""
    response = await harness.client.post("/oauth/token", data=_form(harness.state.issue_code()))
    assert response.status == 200
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Pragma"] == "no-cache"
    body = await response.json()
    assert list(body) == [
        "access_token",
        "token_type",
        "expires_in",
        "refresh_token",
        "created_at",
        "email",
    ]
    assert HEX64.match(body["access_token"]) and HEX64.match(body["refresh_token"])
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 7199
    assert body["created_at"] == int(START)
    assert body["email"] == "alice@example.com"


async def test_requested_scopes_are_returned(harness):
    """A code approved for scopes yields a token response with `scope`."""
    code = harness.state.issue_code("read write")
    body = await (await harness.client.post("/oauth/token", data=_form(code))).json()
    assert body["scope"] == "read write"


async def test_wrong_redirect_uri_is_invalid_grant(harness):
    """The redirect URI must equal the one used at authorize."""
    code = harness.state.issue_code(redirect_uri=OOB)
    response = await harness.client.post("/oauth/token", data=_form(code, CALLBACK))
    assert response.status == 400
    assert await response.json() == {"error": "invalid_grant", "error_description": INVALID_GRANT}


async def test_code_is_single_use(harness):
    """A second exchange of the same code is invalid_grant."""
    code = harness.state.issue_code()
    assert (await harness.client.post("/oauth/token", data=_form(code))).status == 200
    again = await harness.client.post("/oauth/token", data=_form(code))
    assert again.status == 400
    assert (await again.json())["error"] == "invalid_grant"
    stats = await harness.stats()
    assert stats["token_requests"]["authorization_code"] == 2
    assert stats["token_responses"] == {
        "ok": 1,
        "invalid_grant": 1,
        "otp_required": 0,
        "unavailable": 0,
        "other_error": 0,
    }


async def test_code_expires_after_ten_minutes(harness):
    """A code is good for 600 s of the sandbox clock, not one second more."""
    code = harness.state.issue_code()
    harness.clock.now += 600
    response = await harness.client.post("/oauth/token", data=_form(code))
    assert (await response.json())["error"] == "invalid_grant"


async def test_bad_client_secret_is_invalid_client(harness):
    """Wrong client credentials are 401 invalid_client."""
    form = _form(harness.state.issue_code(), client_secret="nope")
    response = await harness.client.post("/oauth/token", data=form)
    assert response.status == 401
    assert (await response.json())["error"] == "invalid_client"
    assert (await harness.stats())["token_responses"]["other_error"] == 1


async def test_client_may_authenticate_with_http_basic(harness):
    """Doorkeeper also takes client credentials from HTTP Basic."""
    form = {
        "grant_type": "authorization_code",
        "code": harness.state.issue_code(),
        "redirect_uri": OOB,
    }
    basic = base64.b64encode(b"sandbox-client:sandbox-secret").decode()
    response = await harness.client.post(
        "/oauth/token", data=form, headers={"Authorization": f"Basic {basic}"}
    )
    assert response.status == 200


async def test_parameters_in_the_query_string_are_accepted(harness):
    """Like Doorkeeper, parameters may come in the query string."""
    response = await harness.client.post("/oauth/token", params=_form(harness.state.issue_code()))
    assert response.status == 200


async def test_missing_code_is_invalid_request(harness):
    """A missing parameter is 400 invalid_request naming it."""
    form = {**CLIENT, "grant_type": "authorization_code", "redirect_uri": OOB}
    response = await harness.client.post("/oauth/token", data=form)
    assert response.status == 400
    assert await response.json() == {
        "error": "invalid_request",
        "error_description": "Missing required parameter: code.",
    }


async def test_unknown_grant_type_is_unsupported(harness):
    """A grant the sandbox does not offer is unsupported_grant_type."""
    response = await harness.client.post("/oauth/token", data={**CLIENT, "grant_type": "password"})
    assert response.status == 400
    assert (await response.json())["error"] == "unsupported_grant_type"


async def test_two_factor_login_needs_the_captcha(make_harness):
    """otp_required (200) until the request is repeated with captcha=<otp_code>."""
    harness = await make_harness(otp_code="424242")
    code = harness.state.issue_code()
    first = await harness.client.post("/oauth/token", data=_form(code))
    assert first.status == 200
    assert await first.json() == {"error": "otp_required", "error_description": ""}
    wrong = await harness.client.post("/oauth/token", data=_form(code, captcha="000000"))
    assert (await wrong.json())["error"] == "otp_required"
    right = await harness.client.post("/oauth/token", data=_form(code, captcha="424242"))
    assert right.status == 200
    assert HEX64.match((await right.json())["access_token"])
    responses = (await harness.stats())["token_responses"]
    assert (responses["otp_required"], responses["ok"]) == (2, 1)


async def test_new_code_grant_revokes_the_previous_access_token(harness):
    """Getting a new token invalidates the user's previous access token."""
    first = await harness.access_token()
    await harness.access_token()
    response = await harness.api("GET", "/user", first)
    assert response.status == 401
    assert "was revoked" in response.headers["WWW-Authenticate"]
