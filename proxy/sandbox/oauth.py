"""`POST /oauth/token`: the code and refresh grants, answered as Doorkeeper does.

Parameters come from the form body (or a JSON body) and the query string,
as Rails gives Doorkeeper all of them; client credentials from the parameters
or HTTP Basic. Checks run in Doorkeeper's order: grant type, required
parameters, client, then the grant.
An `Authorization: Bearer` header on a refresh is counted, never required.
Knobs apply first: the delay is slept before the grant is processed (and the
grant is processed even if the client has gone, like a lost response), then
injected failures answer 503 without touching any token.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import Mapping

from aiohttp import web

from .grants import GrantError, TokenPair
from .state import SANDBOX, Sandbox

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
INVALID_CLIENT = (
    "Client authentication failed due to unknown client, no client authentication "
    "included, or unsupported authentication method."
)
UNSUPPORTED_GRANT = "The authorization grant type is not supported by the authorization server."
UNAVAILABLE = (
    "The authorization server is temporarily unable to handle the request due to a "
    "temporary overloading or maintenance of the authorization server."
)
_REQUIRED = {
    "authorization_code": ("code", "redirect_uri"),
    "refresh_token": ("refresh_token",),
}


async def token(request: web.Request) -> web.Response:
    sandbox = request.app[SANDBOX]
    params = await _params(request)
    grant_type = params.get("grant_type", "")
    _count_request(sandbox, request, grant_type)
    if sandbox.knobs.token_delay_ms:
        await asyncio.sleep(sandbox.knobs.token_delay_ms / 1000)
    if sandbox.knobs.take_token_failure(sandbox.now()):
        unavailable = _error_body("temporarily_unavailable", UNAVAILABLE)
        return _answer(sandbox, "unavailable", unavailable, 503)
    try:
        pair = _grant(sandbox, request, grant_type, params)
    except GrantError as error:
        return _answer(sandbox, _outcome(error.error), _error_body(error), error.status)
    return _answer(sandbox, "ok", _token_body(sandbox, pair), 200)


async def _params(request: web.Request) -> dict[str, str]:
    params = dict(request.query.items())
    if request.content_type == "application/json":
        # Rails turns a JSON body into params too; non-string values are ignored.
        try:
            body = await request.json()
        except ValueError:
            body = None
        if isinstance(body, dict):
            params |= {key: value for key, value in body.items() if isinstance(value, str)}
    elif request.can_read_body:
        form = await request.post()
        params |= {key: value for key, value in form.items() if isinstance(value, str)}
    return params


def _count_request(sandbox: Sandbox, request: web.Request, grant_type: str) -> None:
    if grant_type in sandbox.stats.token_requests:
        sandbox.stats.token_requests[grant_type] += 1
    scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
    bearer = scheme.lower() == "bearer" and sandbox.credentials.find(credential.strip())
    if grant_type == "refresh_token" and bearer:
        sandbox.stats.refresh_bearer_header += 1


def _grant(
    sandbox: Sandbox, request: web.Request, grant_type: str, params: Mapping[str, str]
) -> TokenPair:
    if not grant_type:
        raise _missing("grant_type")
    if grant_type not in _REQUIRED:
        raise GrantError("unsupported_grant_type", UNSUPPORTED_GRANT)
    for name in _REQUIRED[grant_type]:
        if not params.get(name):
            raise _missing(name)
    _authenticate_client(sandbox, request, params)
    now, ttl = sandbox.now(), sandbox.knobs.token_ttl
    if grant_type == "refresh_token":
        return sandbox.credentials.refresh(params["refresh_token"], now, ttl)
    code, redirect_uri = params["code"], params["redirect_uri"]
    sandbox.credentials.usable_code(code, redirect_uri, now)
    _check_otp(sandbox, params.get("captcha"))
    return sandbox.credentials.redeem_code(code, redirect_uri, now, ttl)


def _missing(name: str) -> GrantError:
    return GrantError("invalid_request", f"Missing required parameter: {name}.")


def _authenticate_client(sandbox: Sandbox, request: web.Request, params: Mapping[str, str]) -> None:
    client_id, client_secret = _basic_credentials(request)
    client_id = params.get("client_id", client_id)
    client_secret = params.get("client_secret", client_secret)
    settings = sandbox.settings
    if (client_id, client_secret) != (settings.client_id, settings.client_secret):
        raise GrantError("invalid_client", INVALID_CLIENT, 401)


def _basic_credentials(request: web.Request) -> tuple[str, str]:
    scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return "", ""
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return "", ""
    client_id, _, client_secret = decoded.partition(":")
    return client_id, client_secret


def _check_otp(sandbox: Sandbox, captcha: str | None) -> None:
    # Tower sends the one-time code when asked without one and answers 200 with
    # this error; a wrong code is answered the same way so the user can retry.
    expected = sandbox.settings.otp_code
    if expected is not None and captcha != expected:
        raise GrantError("otp_required", "", 200)


def _outcome(error: str) -> str:
    return error if error in ("invalid_grant", "otp_required") else "other_error"


def _error_body(error: GrantError | str, description: str = "") -> dict[str, object]:
    if isinstance(error, GrantError):
        return {"error": error.error, "error_description": error.description}
    return {"error": error, "error_description": description}


def _token_body(sandbox: Sandbox, pair: TokenPair) -> dict[str, object]:
    body: dict[str, object] = {
        "access_token": pair.access_token,
        "token_type": "bearer",
        "expires_in": pair.expires_in,
        "refresh_token": pair.refresh_token,
    }
    if pair.scopes:
        body["scope"] = " ".join(pair.scopes)
    body |= {"created_at": pair.created_at, "email": sandbox.store.user.email}
    return body


def _answer(sandbox: Sandbox, outcome: str, body: dict[str, object], status: int) -> web.Response:
    sandbox.stats.token_responses[outcome] += 1
    headers = dict(NO_STORE)
    if status == 401:
        error = body["error"]
        headers["WWW-Authenticate"] = f'Basic realm="Doorkeeper", error="{error}"'
    return web.json_response(body, status=status, headers=headers)
