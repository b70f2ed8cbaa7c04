"""The gate in front of every /api/v1 route: knobs, Doorkeeper auth, the log.

Order, as Tower's stack would apply it: the latency knob; Rails routing (an
unknown route is 404 before any auth); the error-rate knob (500); then
Doorkeeper: a missing, unknown, expired or revoked token is 401 with an empty
body and a `WWW-Authenticate` header, and a token granted scopes without
`write` gets 403 insufficient_scope on anything but reads. Every request,
whatever its answer, is counted and logged with its secrets masked.
"""

from __future__ import annotations

import asyncio

from aiohttp import web
from aiohttp.typedefs import Handler

from .errors import ApiError, NotFound, error_response
from .grants import TokenProblem
from .payload import ReceivedBody, receive
from .state import SANDBOX, Sandbox
from .stats import LoggedRequest, fingerprint, mask_headers

INSUFFICIENT_SCOPE = "The request requires higher privileges than provided by the access token."
_READS = frozenset({"GET", "HEAD", "OPTIONS"})
# A client that went away mid-answer has no status; nginx logs these as 499.
_CLIENT_GONE = 499


def presented_token(request: web.Request) -> str | None:
    """The access token as Doorkeeper looks for it: Bearer header, then parameters."""
    scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credential.strip():
        return credential.strip()
    return request.query.get("access_token") or request.query.get("bearer_token")


def doorkeeper_401(problem: TokenProblem) -> web.Response:
    challenge = _challenge("invalid_token", problem.value)
    return web.Response(status=401, headers={"WWW-Authenticate": challenge})


def _challenge(error: str, description: str) -> str:
    return f'Bearer realm="Doorkeeper", error="{error}", error_description="{description}"'


@web.middleware
async def api_gate(request: web.Request, handler: Handler) -> web.StreamResponse:
    sandbox = request.config_dict[SANDBOX]
    body = await receive(request)
    token = presented_token(request)
    status = _CLIENT_GONE
    try:
        response = await _answer(sandbox, request, handler, token)
        status = response.status
        return response
    finally:
        _record(sandbox, request, body, token, status)


async def _answer(
    sandbox: Sandbox, request: web.Request, handler: Handler, token: str | None
) -> web.StreamResponse:
    if sandbox.knobs.latency_ms:
        await asyncio.sleep(sandbox.knobs.latency_ms / 1000)
    if request.match_info.http_exception is not None:
        return NotFound(f'No route matches [{request.method}] "{request.path}"').response()
    if sandbox.roll_error():
        return error_response(500, "Internal Server Error", "Injected by the error_rate knob")
    checked = sandbox.credentials.check(token, sandbox.now())
    if isinstance(checked, TokenProblem):
        return doorkeeper_401(checked)
    if request.method not in _READS and not checked.allows_writes():
        challenge = _challenge("insufficient_scope", INSUFFICIENT_SCOPE)
        return web.Response(status=403, headers={"WWW-Authenticate": challenge})
    try:
        return await handler(request)
    except ApiError as error:
        return error.response()


def _record(
    sandbox: Sandbox, request: web.Request, body: ReceivedBody, token: str | None, status: int
) -> None:
    sandbox.stats.api_requests += 1
    if status == 401:
        sandbox.stats.api_unauthorized += 1
    entry = LoggedRequest(
        method=request.method,
        raw_path=request.raw_path,
        headers=mask_headers(request.headers.items()),
        token_fingerprint=fingerprint(token) if token else None,
        body_sha256=body.sha256,
        body_size=body.size,
        status=status,
    )
    sandbox.requests.add(entry)
