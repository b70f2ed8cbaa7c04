"""The proxy application: its state, its lifecycle and the dispatch handlers.

`create_app` does no I/O; `start()` opens the upstream pool and the token
endpoint's session, loads the token set and warms the pool; `close()` undoes
that.  Every request passes the guard first, then goes either to an admin
endpoint (`/-/...`) or to the forwarder, and ends with one canonical log line.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

import structlog

from . import admin, pool
from .admin import Lifecycle
from .config import Config
from .errors import Refused
from .forward import Exchange, Forwarder, StreamAborted
from .guard import Guard, is_preflight
from .log import SECRETS, EventLine
from .messages import Request, Response
from .metrics import Metrics
from .oauth import OAuthClient, ssl_context
from .responses import error_response
from .rewrite import LinkRewriter
from .target import PathPolicy, Upstream
from .tokens import TokenManager, TokenStore, make_store
from .upstream import UpstreamPool

log = structlog.get_logger("proxy.request")

# Probes answer without the guard: kubelet calls them by pod IP, with no key.
_PROBES = frozenset({"/-/healthz", "/-/readyz", "/-/startupz"})
# Not worth a request log line: polled every few seconds by machines.
_QUIET = _PROBES | {"/-/metrics"}


class ProxyApp:
    """One proxy: what it holds, and the handlers of its two listeners."""

    def __init__(
        self,
        config: Config,
        *,
        store: TokenStore | None = None,
        clock: Callable[[], float] = time.time,
        proactive_tick: float = 15.0,
    ) -> None:
        self.config = config
        self.guard = Guard.from_config(config.server)
        self.lifecycle = Lifecycle()
        self.store = store if store is not None else make_store(config)
        self.metrics = Metrics(
            tokens=lambda: self.tokens,
            ready=lambda: admin.not_ready_reason(self.lifecycle, self.tokens) is None,
        )
        self.tokens: TokenManager | None = None
        self.forwarder: Forwarder | None = None
        self._clock = clock
        self._proactive_tick = proactive_tick
        self._oauth: OAuthClient | None = None
        self._pool: UpstreamPool | None = None
        self._proactive: asyncio.Task[None] | None = None
        SECRETS.add(config.tower.client_secret, *(k.decode() for k in self.guard.keys))

    async def start(self) -> None:
        config = self.config
        context = ssl_context(config.tower)
        self._pool = pool.open_pool(config, context)
        oauth = self._oauth = OAuthClient(
            config.tower, context=context, timeout=config.server.read_timeout
        )
        manager = TokenManager(
            self.store, oauth, refresh_margin=config.tokens.refresh_margin, clock=self._clock
        )
        self.tokens = manager
        self.forwarder = _forwarder(config, self._pool, manager, self.metrics)
        await manager.load()
        await pool.warm(self._pool)
        self._proactive = asyncio.create_task(manager.run_proactive(self._proactive_tick))

    async def close(self) -> None:
        if self._proactive is not None:
            self._proactive.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._proactive
        if self._pool is not None:
            await self._pool.close()
        if self._oauth is not None:
            await self._oauth.close()
        await self.store.close()

    # -- the data listener ----------------------------------------------------

    async def dispatch(self, request: Request) -> None:
        exchange = Exchange.begin(request)
        if exchange.path.startswith("/-/"):
            response = await self._answer(request, exchange)
            await self._send(request, response, exchange)
            return
        metrics = self.metrics
        metrics.in_flight.inc()
        try:
            response = await self._answer(request, exchange)
            await self._send(request, response, exchange)
        finally:
            metrics.in_flight.dec()
        metrics.observe_request(
            request.method, response.status, replayed=exchange.replayed, error=exchange.error
        )

    async def _answer(self, request: Request, exchange: Exchange) -> Response:
        path = exchange.path
        try:
            if is_preflight(request):
                return self.guard.preflight(request)
            if path not in _PROBES:
                self.guard.check_request(request)
        except Refused as exc:
            exchange.error = exc.code
            return error_response(exc.code, exc.description)
        if path.startswith("/-/"):
            if self.config.server.admin_listen:
                return error_response("not_found", "admin endpoints answer on server.admin_listen")
            return self._admin(request, path)
        if self.lifecycle.refusing or self.forwarder is None:
            exchange.error = "shutting_down"
            return error_response("shutting_down", "the proxy is shutting down")
        return await self.forwarder.handle(request, exchange)

    # -- the admin listener (`server.admin_listen`) ---------------------------

    async def dispatch_admin(self, request: Request) -> None:
        """Only `/-/` endpoints, sharing this app's state.

        Probes and metrics answer there without the Host/key guard (scrapers
        and kubelet address the pod IP; neither carries a secret);
        `/-/token` and `/-/quit` keep the guard, and quit also wants a
        loopback peer.
        """
        exchange = Exchange.begin(request)
        response: Response
        if not exchange.path.startswith("/-/"):
            exchange.error = "not_found"
            response = error_response("not_found", "only /-/ endpoints answer on this address")
        else:
            response = self._admin_guarded(request, exchange)
        await self._send(request, response, exchange)

    def _admin_guarded(self, request: Request, exchange: Exchange) -> Response:
        path = exchange.path
        try:
            if path not in _QUIET:
                self.guard.check_request(request)
        except Refused as exc:
            exchange.error = exc.code
            return error_response(exc.code, exc.description)
        return self._admin(request, path)

    def _admin(self, request: Request, path: str) -> Response:
        if path == "/-/quit":
            if request.method != "POST":
                return error_response("method_not_allowed", "/-/quit takes POST")
            return admin.quit_(request, self.lifecycle)
        if request.method not in ("GET", "HEAD"):
            return error_response("method_not_allowed", f"{request.method} is not allowed here")
        if path == "/-/healthz":
            return admin.healthz(request)
        if path == "/-/readyz":
            return admin.readyz(self.lifecycle, self.tokens)
        if path == "/-/startupz":
            return admin.startupz(self.tokens)
        if path == "/-/metrics":
            return admin.metrics(self.metrics)
        if path == "/-/token":
            return admin.token_state(self.tokens)
        return error_response("not_found", f"no admin endpoint {path}")

    # -- every answer ---------------------------------------------------------

    async def _send(self, request: Request, response: Response, exchange: Exchange) -> None:
        origin = request.headers.get("Origin")
        if origin is not None:
            # An allowed browser origin may read the answer; any other gets no CORS header.
            response.headers.update(self.guard.cors_headers(origin))
            response.headers.add("Vary", "Origin")
        if self.lifecycle.draining:
            # After SIGTERM each answer closes its connection, so clients reconnect elsewhere.
            response.headers["Connection"] = "close"
        try:
            await request.respond(response)
        except StreamAborted as exc:
            exchange.error = "upstream_broken_stream"
            log.warning(
                "upstream_stream_failed", request_id=exchange.request_id, reason=exc.args[0]
            )
        except ConnectionError:  # the client left
            exchange.error = exchange.error or "client_disconnected"
        finally:
            _log_exchange(request, response, exchange)


def create_app(
    config: Config,
    *,
    store: TokenStore | None = None,
    clock: Callable[[], float] = time.time,
    proactive_tick: float = 15.0,
) -> ProxyApp:
    return ProxyApp(config, store=store, clock=clock, proactive_tick=proactive_tick)


def _forwarder(
    config: Config, upstream_pool: UpstreamPool, tokens: TokenManager, metrics: Metrics
) -> Forwarder:
    server = config.server
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
        pool=upstream_pool,
        tokens=tokens,
        rewriter=LinkRewriter(config.tower.api_url, proxy_prefix=server.prefix),
        rewrite_bodies=server.rewrite_links,
        max_body_size=server.max_body_size,
        metrics=metrics,
        body_stall_timeout=server.client_timeout,
    )


_REQUEST_LINE = EventLine("proxy.request", "request")


def _log_exchange(request: Request, response: Response, exchange: Exchange) -> None:
    path = exchange.path
    if path in _QUIET:
        return
    _REQUEST_LINE(
        {
            "request_id": exchange.request_id,
            "method": request.method,
            "path": path[:512],
            "status": response.status,
            "upstream_status": exchange.upstream_status,
            "bytes_in": exchange.bytes_in,
            "bytes_out": response.sent,
            "duration_ms": round((time.perf_counter() - exchange.started) * 1000, 2),
            "refreshed": exchange.refreshed,
            "replayed": exchange.replayed,
            "error": exchange.error,
        }
    )
