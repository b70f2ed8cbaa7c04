"""The aiohttp application: wiring, lifecycle and the one dispatch handler.

`create_app` does no I/O; the shared ClientSession and the token manager are
created in cleanup contexts when the app starts and closed when it stops.
Every request passes the guard first, then goes either to an admin endpoint
(`/-/...`) or to the forwarder, and ends with one canonical log line.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable

import aiohttp
import structlog
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from . import admin, pool
from .admin import Lifecycle
from .config import Config
from .egress import egress_for
from .errors import Refused
from .forward import Exchange, Forwarder
from .guard import Guard, is_preflight
from .limits import handler_args
from .log import SECRETS
from .metrics import Metrics
from .oauth import OAuthClient, ssl_context
from .responses import error_response
from .rewrite import LinkRewriter
from .target import PathPolicy, Upstream
from .tokens import TokenManager, TokenStore, make_store

log = structlog.get_logger("proxy.request")

CONFIG = web.AppKey("config", Config)
GUARD = web.AppKey("guard", Guard)
LIFECYCLE = web.AppKey("lifecycle", Lifecycle)
STORE = web.AppKey("store", TokenStore)
SESSION = web.AppKey("session", aiohttp.ClientSession)
FRESH_SESSION = web.AppKey("fresh_session", aiohttp.ClientSession)  # the one retry's
TOKENS = web.AppKey("tokens", TokenManager)
FORWARDER = web.AppKey("forwarder", Forwarder)
METRICS = web.AppKey("metrics", Metrics)
MAIN_APP = web.AppKey("main_app", web.Application)  # on the admin listener's app

# Probes answer without the guard: kubelet calls them by pod IP, with no key.
_PROBES = frozenset({"/-/healthz", "/-/readyz", "/-/startupz"})
# Not worth a request log line: polled every few seconds by machines.
_QUIET = _PROBES | {"/-/metrics"}


def create_app(
    config: Config,
    *,
    store: TokenStore | None = None,
    clock: Callable[[], float] = time.time,
    proactive_tick: float = 15.0,
) -> web.Application:
    app = web.Application(
        middlewares=[_every_target(dispatch)], handler_args=handler_args(config.server)
    )
    app[CONFIG] = config
    app[GUARD] = Guard.from_config(config.server)
    app[LIFECYCLE] = Lifecycle()
    app[STORE] = store if store is not None else make_store(config)
    lifecycle = app[LIFECYCLE]
    app[METRICS] = Metrics(
        tokens=lambda: app.get(TOKENS),
        ready=lambda: admin.not_ready_reason(lifecycle, app.get(TOKENS)) is None,
    )
    SECRETS.add(config.tower.client_secret, *(k.decode() for k in app[GUARD].keys))
    app.cleanup_ctx.append(_http_session)
    app.cleanup_ctx.append(_token_manager(clock, proactive_tick))
    app.on_response_prepare.append(_add_cors_headers)
    app.on_response_prepare.append(_close_while_draining)
    # Also a route that matches every origin-form target, only for speed: a
    # matched request reuses aiohttp's cached middleware chain, an unmatched
    # one builds a 404 exception and the chain anew (~10% of a proxied
    # request, bench/profile.py).  The middleware still answers the rest.
    app.router.add_route("*", "/{tail:.*}", dispatch)
    return app


def _every_target(answer: Handler) -> Middleware:
    """Send every request to `answer`, whatever its target.

    The router cannot match some targets (`*`, authority-form, a decoded
    newline) and would answer them with aiohttp's plain-text 404 instead of
    the proxy's own JSON refusal.
    """

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        return await answer(request)  # `handler` is the router's "no route" answer

    return middleware


async def _close_while_draining(request: web.Request, response: web.StreamResponse) -> None:
    """After SIGTERM each answer closes its connection, so clients reconnect elsewhere."""
    if request.app[LIFECYCLE].draining:
        response.force_close()
        response.headers["Connection"] = "close"  # the headers were built before this hook


async def _add_cors_headers(request: web.Request, response: web.StreamResponse) -> None:
    """An allowed browser origin may read the answer; any other origin gets no CORS header."""
    origin = request.headers.get("Origin")
    if origin is None:
        return
    response.headers.update(request.app[GUARD].cors_headers(origin))
    response.headers.add("Vary", "Origin")


async def _http_session(app: web.Application) -> AsyncIterator[None]:
    context = ssl_context(app[CONFIG].tower)
    session, fresh = pool.open_sessions(context, connect_timeout=app[CONFIG].server.connect_timeout)
    app[SESSION] = session
    app[FRESH_SESSION] = fresh
    yield
    await session.close()
    await fresh.close()


def _token_manager(
    clock: Callable[[], float], proactive_tick: float
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def context(app: web.Application) -> AsyncIterator[None]:
        config = app[CONFIG]
        oauth = OAuthClient(config.tower, app[SESSION], timeout=config.server.read_timeout)
        manager = TokenManager(
            app[STORE], oauth, refresh_margin=config.tokens.refresh_margin, clock=clock
        )
        app[TOKENS] = manager
        app[FORWARDER] = forwarder = _forwarder(
            config, app[SESSION], manager, app[METRICS], fresh=app[FRESH_SESSION]
        )
        await manager.load()
        await pool.warm(app[SESSION], config.tower.api_url, forwarder.egress)
        task = asyncio.create_task(manager.run_proactive(proactive_tick))
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await app[STORE].close()

    return context


def _forwarder(
    config: Config,
    session: aiohttp.ClientSession,
    tokens: TokenManager,
    metrics: Metrics,
    *,
    fresh: aiohttp.ClientSession,
) -> Forwarder:
    server = config.server
    egress = egress_for(config.tower.api_url, enabled=config.tower.use_env_proxy)
    log.info("upstream", api_url=config.tower.api_url, egress=egress.describe())
    return Forwarder(
        upstream=Upstream.from_config(
            config.tower.api_url,
            server.prefix,
            policy=PathPolicy.build(
                allow_paths=server.allow_paths,
                deny_paths=server.deny_paths,
                read_only=server.read_only,
            ),
        ),
        session=session,
        fresh_session=fresh,
        tokens=tokens,
        rewriter=LinkRewriter(config.tower.api_url),
        rewrite_bodies=server.rewrite_links,
        max_body_size=server.max_body_size,
        timeout=aiohttp.ClientTimeout(
            total=None, sock_connect=server.connect_timeout, sock_read=server.read_timeout
        ),
        metrics=metrics,
        egress=egress,
        body_stall_timeout=server.client_timeout,
    )


async def dispatch(request: web.Request) -> web.StreamResponse:
    app = request.app
    exchange = Exchange.begin(request)
    if exchange.path.startswith("/-/"):
        response = await _answer(request, app, exchange)
    else:
        response = await _answer_counted(request, app, exchange)
    _log_exchange(request, response, exchange)
    return response


async def _answer_counted(
    request: web.Request, app: web.Application, exchange: Exchange
) -> web.StreamResponse:
    metrics = app[METRICS]
    metrics.in_flight.inc()
    try:
        response = await _answer(request, app, exchange)
    finally:
        metrics.in_flight.dec()
    metrics.observe_request(
        request.method, response.status, replayed=exchange.replayed, error=exchange.error
    )
    return response


async def _answer(
    request: web.Request, app: web.Application, exchange: Exchange
) -> web.StreamResponse:
    path = exchange.path
    try:
        if is_preflight(request):
            return app[GUARD].preflight(request)
        if path not in _PROBES:
            app[GUARD].check_request(request)
    except Refused as exc:
        exchange.error = exc.code
        return error_response(exc.code, exc.description)
    if path.startswith("/-/"):
        if app[CONFIG].server.admin_listen:
            return error_response("not_found", "admin endpoints answer on server.admin_listen")
        return _admin(request, app, path)
    if app[LIFECYCLE].refusing:
        exchange.error = "shutting_down"
        return error_response("shutting_down", "the proxy is shutting down")
    return await app[FORWARDER].handle(request, exchange)


def _admin(request: web.Request, app: web.Application, path: str) -> web.StreamResponse:
    if path == "/-/quit":
        if request.method != "POST":
            return error_response("method_not_allowed", "/-/quit takes POST")
        return admin.quit_(request, app[LIFECYCLE])
    if request.method not in ("GET", "HEAD"):
        return error_response("method_not_allowed", f"{request.method} is not allowed here")
    if path == "/-/healthz":
        return admin.healthz(request)
    if path == "/-/readyz":
        return admin.readyz(app[LIFECYCLE], app.get(TOKENS))
    if path == "/-/startupz":
        return admin.startupz(app.get(TOKENS))
    if path == "/-/metrics":
        return admin.metrics(app[METRICS])
    if path == "/-/token":
        return admin.token_state(app.get(TOKENS))
    return error_response("not_found", f"no admin endpoint {path}")


def create_admin_app(main: web.Application) -> web.Application:
    """The app behind `server.admin_listen`: only `/-/` endpoints, sharing `main`'s state.

    Probes and metrics answer there without the Host/key guard (scrapers and
    kubelet address the pod IP; neither carries a secret); `/-/token` and
    `/-/quit` keep the guard, and quit also wants a loopback peer.
    """
    admin_app = web.Application(
        middlewares=[_every_target(_admin_listener_dispatch)],
        handler_args=handler_args(main[CONFIG].server),
    )
    admin_app[MAIN_APP] = main
    return admin_app


async def _admin_listener_dispatch(request: web.Request) -> web.StreamResponse:
    app = request.app[MAIN_APP]
    exchange = Exchange.begin(request)
    response: web.StreamResponse
    if not exchange.path.startswith("/-/"):
        exchange.error = "not_found"
        response = error_response("not_found", "only /-/ endpoints answer on this address")
    else:
        response = _admin_guarded(request, app, exchange)
    _log_exchange(request, response, exchange)
    return response


def _admin_guarded(
    request: web.Request, app: web.Application, exchange: Exchange
) -> web.StreamResponse:
    path = exchange.path
    try:
        if path not in _QUIET:
            app[GUARD].check_request(request)
    except Refused as exc:
        exchange.error = exc.code
        return error_response(exc.code, exc.description)
    return _admin(request, app, path)


def _log_exchange(request: web.Request, response: web.StreamResponse, exchange: Exchange) -> None:
    path = exchange.path
    if path in _QUIET:
        return
    log.info(
        "request",
        request_id=exchange.request_id,
        method=request.method,
        path=path[:512],
        status=response.status,
        upstream_status=exchange.upstream_status,
        bytes_in=exchange.bytes_in,
        bytes_out=exchange.bytes_out or response.content_length or 0,
        duration_ms=round((time.perf_counter() - exchange.started) * 1000, 2),
        refreshed=exchange.refreshed,
        replayed=exchange.replayed,
        error=exchange.error,
    )
