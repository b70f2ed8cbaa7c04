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
import uuid
from collections.abc import AsyncIterator, Callable

import aiohttp
import structlog
from aiohttp import web

from . import admin
from .admin import Lifecycle
from .config import Config
from .egress import egress_for
from .errors import Refused
from .forward import Exchange, Forwarder, incoming_request_id
from .guard import Guard
from .log import SECRETS
from .metrics import Metrics
from .oauth import OAuthClient, ssl_context
from .responses import error_response
from .rewrite import LinkRewriter
from .target import Upstream
from .tokens import TokenManager, TokenStore, make_store

log = structlog.get_logger("proxy.request")

CONFIG = web.AppKey("config", Config)
GUARD = web.AppKey("guard", Guard)
LIFECYCLE = web.AppKey("lifecycle", Lifecycle)
STORE = web.AppKey("store", TokenStore)
SESSION = web.AppKey("session", aiohttp.ClientSession)
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
    app = web.Application(handler_args={"max_field_size": 16384})
    app[CONFIG] = config
    app[GUARD] = Guard.build(
        allowed_hosts=config.server.allowed_hosts,
        allowed_origins=config.server.allowed_origins,
        inbound_keys_file=config.server.inbound_keys_file,
    )
    app[LIFECYCLE] = Lifecycle()
    app[STORE] = store if store is not None else make_store(config)
    lifecycle = app[LIFECYCLE]
    app[METRICS] = Metrics(tokens=lambda: app.get(TOKENS), draining=lambda: lifecycle.draining)
    SECRETS.add(config.tower.client_secret, *(k.decode() for k in app[GUARD].keys))
    app.cleanup_ctx.append(_http_session)
    app.cleanup_ctx.append(_token_manager(clock, proactive_tick))
    app.router.add_route("*", "/{tail:.*}", dispatch)
    return app


async def _http_session(app: web.Application) -> AsyncIterator[None]:
    server = app[CONFIG].server
    connector = aiohttp.TCPConnector(
        ssl=ssl_context(app[CONFIG].tower), limit=0, ttl_dns_cache=300, enable_cleanup_closed=True
    )
    session = aiohttp.ClientSession(
        connector=connector,
        auto_decompress=False,
        cookie_jar=aiohttp.DummyCookieJar(),
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=server.connect_timeout),
    )
    app[SESSION] = session
    yield
    await session.close()


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
        app[FORWARDER] = _forwarder(config, app[SESSION], manager, app[METRICS])
        await manager.load()
        task = asyncio.create_task(manager.run_proactive(proactive_tick))
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await app[STORE].close()

    return context


def _forwarder(
    config: Config, session: aiohttp.ClientSession, tokens: TokenManager, metrics: Metrics
) -> Forwarder:
    server = config.server
    egress = egress_for(config.tower.api_url, enabled=config.tower.use_env_proxy)
    log.info("upstream", api_url=config.tower.api_url, egress=egress.describe())
    return Forwarder(
        upstream=Upstream.from_config(config.tower.api_url, server.prefix),
        session=session,
        tokens=tokens,
        rewriter=LinkRewriter(config.tower.api_url),
        rewrite_bodies=server.rewrite_links,
        max_body_size=server.max_body_size,
        timeout=aiohttp.ClientTimeout(
            total=None, sock_connect=server.connect_timeout, sock_read=server.read_timeout
        ),
        metrics=metrics,
        egress=egress,
    )


async def dispatch(request: web.Request) -> web.StreamResponse:
    app = request.app
    exchange = Exchange(request_id=incoming_request_id(request.headers) or uuid.uuid4().hex)
    if request.raw_path.startswith("/-/"):
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
    raw_path = request.raw_path
    try:
        if raw_path.split("?", 1)[0] not in _PROBES:
            app[GUARD].check(request.headers)
    except Refused as exc:
        exchange.error = exc.code
        return error_response(exc.code, exc.description)
    if raw_path.startswith("/-/"):
        if app[CONFIG].server.admin_listen:
            return error_response("not_found", "admin endpoints answer on server.admin_listen")
        return _admin(request, app, raw_path.split("?", 1)[0])
    if app[LIFECYCLE].draining:
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
    admin_app = web.Application()
    admin_app[MAIN_APP] = main
    admin_app.router.add_route("*", "/{tail:.*}", _admin_listener_dispatch)
    return admin_app


async def _admin_listener_dispatch(request: web.Request) -> web.StreamResponse:
    app = request.app[MAIN_APP]
    path = request.raw_path.split("?", 1)[0]
    exchange = Exchange(request_id=incoming_request_id(request.headers) or uuid.uuid4().hex)
    response: web.StreamResponse
    if not path.startswith("/-/"):
        exchange.error = "not_found"
        response = error_response("not_found", "only /-/ endpoints answer on this address")
    else:
        response = _admin_guarded(request, app, path, exchange)
    _log_exchange(request, response, exchange)
    return response


def _admin_guarded(
    request: web.Request, app: web.Application, path: str, exchange: Exchange
) -> web.StreamResponse:
    try:
        if path not in _QUIET:
            app[GUARD].check_request(request)
    except Refused as exc:
        exchange.error = exc.code
        return error_response(exc.code, exc.description)
    return _admin(request, app, path)


def _log_exchange(request: web.Request, response: web.StreamResponse, exchange: Exchange) -> None:
    path = request.raw_path.split("?", 1)[0]
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
