"""The forwarding path (SPEC sections 2 and 3).

One client request → at most two upstream requests: the first with the
current token, and — only when Tower answers 401 other than
`insufficient_scope` — one replay of the same kept body with a token newer
than the one that failed.  This is the only module that turns exceptions
into HTTP answers for forwarded requests.
"""

from __future__ import annotations

import itertools
import os
import secrets
import time
from dataclasses import dataclass, field

import aiohttp
import structlog
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from .body import BodyTooLarge, ReplayableBody
from .egress import DIRECT, Egress
from .errors import (
    NoToken,
    ReauthorizationRequired,
    Refused,
    StoreError,
    TokenUnavailable,
)
from .headers import client_response_headers, upstream_request_headers
from .limits import progress_deadline
from .metrics import Metrics
from .responses import error_response
from .rewrite import MAX_REWRITE, LinkRewriter, is_rewritable
from .target import Upstream
from .tokens.manager import TokenManager
from .tokens.model import TokenSet

log = structlog.get_logger("proxy.forward")

_SKIP_AUTO = frozenset({"Accept", "Accept-Encoding", "User-Agent", "Content-Type"})
_FORBIDDEN_METHODS = frozenset({"CONNECT", "TRACE"})
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


@dataclass(slots=True)
class Exchange:
    """What happened to one client request: the canonical log line's fields."""

    request_id: str
    path: str  # the target without its query (which may hold secrets)
    started: float = field(default_factory=time.perf_counter)
    upstream_status: int | None = None
    bytes_in: int = 0
    bytes_out: int = 0
    refreshed: bool = False
    replayed: bool = False
    error: str | None = None
    generation: int | None = None

    @classmethod
    def begin(cls, request: web.Request) -> Exchange:
        request_id = incoming_request_id(request.headers) or new_request_id()
        return cls(request_id=request_id, path=request.raw_path.partition("?")[0])


@dataclass(frozen=True, slots=True)
class Forwarder:
    upstream: Upstream
    session: aiohttp.ClientSession
    fresh_session: aiohttp.ClientSession  # never reuses a connection: for the one retry
    tokens: TokenManager
    rewriter: LinkRewriter
    rewrite_bodies: bool
    max_body_size: int
    timeout: aiohttp.ClientTimeout
    metrics: Metrics
    egress: Egress = DIRECT  # resolved once: no environment lookup per request
    body_stall_timeout: float = 30.0  # a client body silent this long: 408

    async def handle(self, request: web.Request, exchange: Exchange) -> web.StreamResponse:
        try:
            return await self._forward(request, exchange)
        except Refused as exc:
            exchange.error = exc.code
            return error_response(exc.code, exc.description)
        except BodyTooLarge as exc:
            exchange.error = "body_too_large"
            return error_response("body_too_large", f"request body exceeds {exc.limit} bytes")
        except (ReauthorizationRequired, NoToken) as exc:
            exchange.error = "reauthorization_required"
            return error_response("reauthorization_required", str(exc))
        except TokenUnavailable as exc:
            exchange.error = "token_unavailable"
            return error_response("token_unavailable", str(exc), retry_after=exc.retry_after)
        except StoreError as exc:
            exchange.error = "token_unavailable"
            return error_response("token_unavailable", str(exc), retry_after=5)
        except TimeoutError:
            exchange.error = "upstream_timeout"
            return error_response("upstream_timeout", "Tower did not answer in time")
        except aiohttp.ClientError as exc:
            exchange.error = "upstream_unreachable"
            return error_response(
                "upstream_unreachable", f"cannot reach Tower ({type(exc).__name__})"
            )

    async def _forward(self, request: web.Request, exchange: Exchange) -> web.StreamResponse:
        if request.method in _FORBIDDEN_METHODS:
            raise Refused("method_not_allowed", f"{request.method} is not proxied")
        url = self.upstream.url_for(request.raw_path, method=request.method)
        body = await self._read_body(request)
        exchange.bytes_in = body.size
        try:
            headers = upstream_request_headers(request.headers)
            headers["X-Request-ID"] = exchange.request_id
            upstream = await self._send_with_replay(request.method, url, headers, body, exchange)
        finally:
            body.close()
        return await self._relay(request, upstream, exchange)

    async def _read_body(self, request: web.Request) -> ReplayableBody:
        if request.content_length is not None and request.content_length > self.max_body_size:
            raise BodyTooLarge(self.max_body_size)
        if not request.body_exists:
            return ReplayableBody()
        async with progress_deadline(request.content, self.body_stall_timeout):
            return await ReplayableBody.read(request.content, max_size=self.max_body_size)

    async def _send_with_replay(
        self,
        method: str,
        url: URL,
        headers: CIMultiDict[str],
        body: ReplayableBody,
        exchange: Exchange,
    ) -> aiohttp.ClientResponse:
        token = await self.tokens.token()
        upstream = await self._send(method, url, headers, body, token)
        if not _token_rejected(upstream):
            exchange.generation = token.generation
            return upstream
        upstream.release()
        held = self.tokens.current  # newer already when another request refreshed meanwhile
        newer = await self.tokens.refresh(token.generation)
        picked_up = held is not None and held.generation > token.generation
        exchange.refreshed = not picked_up and self.tokens.refreshed_here(newer)
        exchange.replayed = True
        exchange.generation = newer.generation
        return await self._send(method, url, headers, body, newer)

    async def _send(
        self,
        method: str,
        url: URL,
        headers: CIMultiDict[str],
        body: ReplayableBody,
        token: TokenSet,
    ) -> aiohttp.ClientResponse:
        outgoing = CIMultiDict(headers)
        outgoing["Authorization"] = f"Bearer {token.access_token}"
        if body.size or method in ("POST", "PUT", "PATCH"):
            outgoing["Content-Length"] = str(body.size)
        started = time.perf_counter()
        try:
            response = await self._request(self.session, method, url, outgoing, body)
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
            # The connection died before the response began: typically a kept-alive
            # one that Tower closed while idle.  Safe to send once more when the
            # method is idempotent (RFC 9110 9.2.2), on a connection of its own.
            if isinstance(exc, aiohttp.ClientConnectorError) or method not in _IDEMPOTENT:
                raise
            log.info(
                "upstream_connection_lost_retrying",
                request_id=headers.get("X-Request-ID"),
                reason=type(exc).__name__,
            )
            response = await self._request(self.fresh_session, method, url, outgoing, body)
        self.metrics.upstream_latency.observe(time.perf_counter() - started)
        return response

    async def _request(
        self,
        session: aiohttp.ClientSession,
        method: str,
        url: URL,
        headers: CIMultiDict[str],
        body: ReplayableBody,
    ) -> aiohttp.ClientResponse:
        return await session.request(
            method,
            url,
            headers=headers,
            data=body.payload(),
            allow_redirects=False,
            timeout=self.timeout,
            skip_auto_headers=_SKIP_AUTO,
            proxy=self.egress.proxy,
            proxy_headers=self.egress.proxy_headers,
        )

    async def _relay(
        self, request: web.Request, upstream: aiohttp.ClientResponse, exchange: Exchange
    ) -> web.StreamResponse:
        exchange.upstream_status = upstream.status
        headers = client_response_headers(upstream.headers)
        headers["X-Request-ID"] = exchange.request_id
        proxy_base = f"{request.scheme}://{request.host}{self.upstream.prefix.rstrip('/')}"
        if "Location" in headers:
            headers["Location"] = self.rewriter.location(headers["Location"], proxy_base)
        try:
            if self._should_rewrite(request, upstream):
                return await self._relay_rewritten(request, upstream, headers, proxy_base, exchange)
            return await self._stream(request, upstream, headers, b"", exchange)
        finally:
            upstream.release()

    def _should_rewrite(self, request: web.Request, upstream: aiohttp.ClientResponse) -> bool:
        return (
            self.rewrite_bodies
            and request.method != "HEAD"
            and is_rewritable(
                upstream.headers.get("Content-Type", ""),
                upstream.headers.get("Content-Encoding", ""),
                upstream.content_length,
            )
        )

    async def _relay_rewritten(
        self,
        request: web.Request,
        upstream: aiohttp.ClientResponse,
        headers: CIMultiDict[str],
        proxy_base: str,
        exchange: Exchange,
    ) -> web.StreamResponse:
        head = await _read_at_most(upstream, MAX_REWRITE + 1)
        if len(head) > MAX_REWRITE:  # too large to rewrite: stream it as it is
            return await self._stream(request, upstream, headers, head, exchange)
        encoding = headers.get("Content-Encoding", "")
        body, decoded = self.rewriter.body(head, encoding, proxy_base)
        if decoded:
            headers.popall("Content-Encoding", None)
        exchange.bytes_out = len(body)
        return web.Response(
            status=upstream.status, reason=upstream.reason, headers=headers, body=body
        )

    async def _stream(
        self,
        request: web.Request,
        upstream: aiohttp.ClientResponse,
        headers: CIMultiDict[str],
        head: bytes,
        exchange: Exchange,
    ) -> web.StreamResponse:
        response = web.StreamResponse(
            status=upstream.status, reason=upstream.reason, headers=headers
        )
        if upstream.content_length is not None:
            response.content_length = upstream.content_length
        await response.prepare(request)
        try:
            if head:
                await response.write(head)
                exchange.bytes_out += len(head)
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
                exchange.bytes_out += len(chunk)
            await response.write_eof()
        except (aiohttp.ClientError, TimeoutError) as exc:
            # The status line is gone already: log, and cut the connection so the
            # client sees a truncated body rather than a complete-looking one.
            exchange.error = "upstream_broken_stream"
            log.warning(
                "upstream_stream_failed", request_id=exchange.request_id, reason=type(exc).__name__
            )
            if request.transport is not None:
                request.transport.close()
        return response


def _token_rejected(upstream: aiohttp.ClientResponse) -> bool:
    if upstream.status != 401:
        return False
    challenge = upstream.headers.get("WWW-Authenticate", "")
    return "insufficient_scope" not in challenge


async def _read_at_most(upstream: aiohttp.ClientResponse, limit: int) -> bytes:
    buffer = bytearray()
    while len(buffer) < limit:
        chunk = await upstream.content.read(limit - len(buffer))
        if not chunk:
            break
        buffer += chunk
    return bytes(buffer)


class _RequestIds:
    """32 hex digits like a uuid4 — a random per-process half and a counter —
    without reading os.urandom on every request.  Reseeded in forked workers."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._prefix = secrets.token_hex(8)
        self._counter = itertools.count(1)

    def next(self) -> str:
        return f"{self._prefix}{next(self._counter):016x}"


_REQUEST_IDS = _RequestIds()
os.register_at_fork(after_in_child=_REQUEST_IDS.reset)


def new_request_id() -> str:
    return _REQUEST_IDS.next()


def incoming_request_id(headers: CIMultiDictProxy[str]) -> str | None:
    value = headers.get("X-Request-ID", "")
    if 0 < len(value) <= 128 and value.isprintable() and " " not in value:
        return value
    return None
