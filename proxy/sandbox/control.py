"""The control path under /_sandbox/: knobs, shortcuts, counters, the request log.

Plain JSON, no authentication, never under /api/v1 so a proxy never forwards
to it by accident. Bad input answers 400 `{"error": ...}`.

    GET   /_sandbox/knobs            current knobs
    PATCH /_sandbox/knobs            change any of them (all or nothing)
    POST  /_sandbox/authorize        {"scopes"?, "redirect_uri"?} -> {"code"}
    POST  /_sandbox/revoke           revoke access tokens ({"refresh_token": true}: and
                                     refresh tokens)
    POST  /_sandbox/clock            {"advance": seconds} moves the sandbox clock forward
    GET   /_sandbox/stats            counters; POST /_sandbox/stats/reset zeroes them
    GET   /_sandbox/requests?limit=N the last N (<= 1000) /api/v1 requests, newest last
    GET   /_sandbox/secrets          every secret configured or issued so far
"""

from __future__ import annotations

import json

from aiohttp import web

from .knobs import KnobError
from .state import SANDBOX
from .stats import REQUEST_LOG_SIZE

routes = web.RouteTableDef()


class _BadInput(Exception):
    pass


def _bad(message: str) -> web.Response:
    return web.json_response({"error": "bad_request", "error_description": message}, status=400)


async def _body(request: web.Request) -> dict[str, object]:
    text = await request.text()
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        raise _BadInput("the body is not JSON") from None
    if not isinstance(value, dict):
        raise _BadInput("the body must be a JSON object")
    return value


@routes.get("/_sandbox/knobs")
async def get_knobs(request: web.Request) -> web.Response:
    sandbox = request.app[SANDBOX]
    return web.json_response(sandbox.knobs.as_json(sandbox.now()))


@routes.patch("/_sandbox/knobs")
async def patch_knobs(request: web.Request) -> web.Response:
    sandbox = request.app[SANDBOX]
    try:
        sandbox.knobs.apply(await _body(request), sandbox.now())
    except (_BadInput, KnobError) as error:
        return _bad(str(error))
    return web.json_response(sandbox.knobs.as_json(sandbox.now()))


@routes.post("/_sandbox/authorize")
async def authorize(request: web.Request) -> web.Response:
    sandbox = request.app[SANDBOX]
    try:
        body = await _body(request)
        scopes, redirect_uri = body.get("scopes", ""), body.get("redirect_uri")
        if not isinstance(scopes, str) or not isinstance(redirect_uri, str | None):
            raise _BadInput("scopes and redirect_uri must be strings")
        code = sandbox.issue_code(scopes, redirect_uri)
    except (_BadInput, ValueError) as error:
        return _bad(str(error))
    return web.json_response({"code": code})


@routes.post("/_sandbox/revoke")
async def revoke(request: web.Request) -> web.Response:
    sandbox = request.app[SANDBOX]
    try:
        refresh = (await _body(request)).get("refresh_token", False) is True
    except _BadInput as error:
        return _bad(str(error))
    revoked = sandbox.credentials.revoke(refresh_tokens=refresh)
    return web.json_response({"revoked_access_tokens": revoked, "refresh_tokens_revoked": refresh})


@routes.post("/_sandbox/clock")
async def advance_clock(request: web.Request) -> web.Response:
    sandbox = request.app[SANDBOX]
    try:
        advance = (await _body(request)).get("advance", 0)
        if isinstance(advance, bool) or not isinstance(advance, int | float) or advance < 0:
            raise _BadInput("advance must be a non-negative number of seconds")
    except _BadInput as error:
        return _bad(str(error))
    sandbox.clock_offset += advance
    return web.json_response({"now": sandbox.now(), "offset": sandbox.clock_offset})


@routes.get("/_sandbox/stats")
async def stats(request: web.Request) -> web.Response:
    return web.json_response(request.app[SANDBOX].stats.as_json())


@routes.post("/_sandbox/stats/reset")
async def reset_stats(request: web.Request) -> web.Response:
    sandbox = request.app[SANDBOX]
    sandbox.stats.reset()
    return web.json_response(sandbox.stats.as_json())


@routes.get("/_sandbox/requests")
async def recent_requests(request: web.Request) -> web.Response:
    try:
        limit = int(request.query.get("limit", REQUEST_LOG_SIZE))
    except ValueError:
        return _bad("limit must be an integer")
    entries = request.app[SANDBOX].requests.last(min(limit, REQUEST_LOG_SIZE))
    return web.json_response([entry.as_json() for entry in entries])


@routes.get("/_sandbox/secrets")
async def list_secrets(request: web.Request) -> web.Response:
    return web.json_response(request.app[SANDBOX].secrets())
