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
from dataclasses import dataclass

import structlog
from multidict import CIMultiDict, CIMultiDictProxy
from mypy_extensions import mypyc_attr

from .body import BodyTooLarge, ReplayableBody
from .errors import (
    NoToken,
    ReauthorizationRequired,
    Refused,
    StoreError,
    TokenUnavailable,
)
from .headers import client_response_headers, upstream_request_headers
from .limits import progress_deadline
from .messages import Request, Response
from .metrics import Metrics
from .responses import error_response
from .rewrite import MAX_REWRITE, LinkRewriter, is_rewritable
from .target import Upstream
from .tokens.manager import TokenManager
from .tokens.model import TokenSet
from .upstream import (
    BrokenResponse,
    ConnectionLost,
    UpstreamError,
    UpstreamPool,
    UpstreamResponse,
)

log = structlog.get_logger("proxy.forward")

_FORBIDDEN_METHODS = frozenset({"CONNECT", "TRACE"})
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
_WITH_BODY = frozenset({"POST", "PUT", "PATCH"})
# A body this small that is whole already goes back in one write, not streamed.
_BUFFER_AT_ONCE = 64 * 1024


@dataclass(slots=True)
class Exchange:
    """What happened to one client request: the canonical log line's fields."""

    request_id: str
    path: str  # the target without its query (which may hold secrets)
    started: float  # time.perf_counter()
    upstream_status: int | None = None
    bytes_in: int = 0
    refreshed: bool = False
    replayed: bool = False
    error: str | None = None

    @classmethod
    def begin(cls, request: Request) -> Exchange:
        request_id = incoming_request_id(request.headers) or new_request_id()
        return cls(request_id, request.path, time.perf_counter())


@mypyc_attr(native_class=False)  # a builtin exception's subclass
class StreamAborted(ConnectionError):
    """Tower's body broke off after the head went to the client (args: the reason)."""


_NO_BODY = ReplayableBody()  # GET and friends: nothing to keep (close() is a no-op)


@dataclass(frozen=True, slots=True)
class Forwarder:
    upstream: Upstream
    pool: UpstreamPool
    tokens: TokenManager
    rewriter: LinkRewriter
    rewrite_bodies: bool
    max_body_size: int
    metrics: Metrics
    body_stall_timeout: float = 30.0  # a client body silent this long: 408

    async def handle(self, request: Request, exchange: Exchange) -> Response:
        """The answer for `request` (Tower's, or the proxy's own error), not yet sent."""
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
        except TimeoutError:  # UpstreamTimeout is one
            exchange.error = "upstream_timeout"
            return error_response("upstream_timeout", "Tower did not answer in time")
        except UpstreamError as exc:
            exchange.error = "upstream_unreachable"
            return error_response(
                "upstream_unreachable", f"cannot reach Tower ({type(exc).__name__})"
            )

    async def _forward(self, request: Request, exchange: Exchange) -> Response:
        method = request.method
        if method in _FORBIDDEN_METHODS:
            raise Refused("method_not_allowed", f"{method} is not proxied")
        target = self.upstream.target_for(request.raw_path, method=method)
        body = await self._read_body(request) if request.body_exists else _NO_BODY
        exchange.bytes_in = body.size
        headers = upstream_request_headers(request.headers)
        headers.append(("X-Request-ID", exchange.request_id))
        try:
            upstream = await self._send_with_replay(method, target, headers, body, exchange)
        finally:
            body.close()
        try:
            return await self._relay(request, upstream, exchange)
        except BaseException:
            upstream.release()
            raise

    async def _read_body(self, request: Request) -> ReplayableBody:
        if request.content_length is not None and request.content_length > self.max_body_size:
            raise BodyTooLarge(self.max_body_size)
        async with progress_deadline(request.body, self.body_stall_timeout):
            return await ReplayableBody.read(request.body, max_size=self.max_body_size)

    async def _send_with_replay(
        self,
        method: str,
        target: str,
        headers: list[tuple[str, str]],
        body: ReplayableBody,
        exchange: Exchange,
    ) -> UpstreamResponse:
        bearer = _Bearer(self.tokens, await self.tokens.token(), headers)
        upstream = await self._send(method, target, body, bearer, exchange)
        token = bearer.token
        if not _token_rejected(upstream):
            return upstream
        upstream.release()
        held = self.tokens.current  # newer already when another request refreshed meanwhile
        newer = await self.tokens.refresh(token.generation)
        picked_up = held is not None and held.generation > token.generation
        exchange.refreshed = not picked_up and self.tokens.refreshed_here(newer)
        exchange.replayed = True
        replay = _Bearer(self.tokens, newer, headers)
        return await self._send(method, target, body, replay, exchange)

    async def _send(
        self,
        method: str,
        target: str,
        body: ReplayableBody,
        bearer: _Bearer,
        exchange: Exchange,
    ) -> UpstreamResponse:
        length = body.size if body.size or method in _WITH_BODY else None
        started = time.perf_counter()
        for fresh in (False, True):
            try:
                response = await self.pool.request(
                    method,
                    target,
                    bearer.headers(),
                    body.payload(),
                    content_length=length,
                    fresh=fresh,
                    after_wait=bearer.recheck,
                )
                break
            except ConnectionLost as exc:
                # A kept-alive connection died before the response began: typically
                # one that Tower closed while idle.  Safe to send once more when the
                # method is idempotent (RFC 9110 9.2.2), on a connection of its own.
                if fresh or not exc.reused or method not in _IDEMPOTENT:
                    raise
                log.info(
                    "upstream_connection_lost_retrying",
                    request_id=exchange.request_id,
                    reason=type(exc).__name__,
                )
        self.metrics.upstream_latency.observe(time.perf_counter() - started)
        return response

    async def _relay(
        self, request: Request, upstream: UpstreamResponse, exchange: Exchange
    ) -> Response:
        exchange.upstream_status = upstream.status
        headers = client_response_headers(upstream.headers)
        headers["X-Request-ID"] = exchange.request_id
        if "Location" in headers:
            headers["Location"] = self.rewriter.location(headers["Location"], request.host)
        length = upstream.content_length
        if request.method == "HEAD":
            return self._streamed(upstream, headers, b"")
        encoding = headers.get("Content-Encoding", "")
        rewrite = self.rewrite_bodies and is_rewritable(
            headers.get("Content-Type", ""), encoding, length
        )
        if length is not None and length <= _BUFFER_AT_ONCE:
            body = upstream.body_if_complete(length)  # usually: it came with the head
            if body is None:
                body = await upstream.read_at_most(length)
                upstream.release()
        elif rewrite:
            body = await upstream.read_at_most(MAX_REWRITE + 1)
            if len(body) > MAX_REWRITE:  # too large to rewrite: stream it as it is
                return self._streamed(upstream, headers, body)
            upstream.release()
        else:
            return self._streamed(upstream, headers, b"")
        if rewrite:
            body, decoded = self.rewriter.body(body, encoding, request.host)
            if decoded:
                headers.popall("Content-Encoding", None)
        return Response(upstream.status, headers, body, reason=upstream.reason)

    def _streamed(
        self, upstream: UpstreamResponse, headers: CIMultiDict[str], head: bytes
    ) -> Response:
        return Response(
            upstream.status,
            headers,
            _RelayedChunks(upstream, head),
            reason=upstream.reason,
            content_length=upstream.content_length,
            release=upstream.release,
        )


class _RelayedChunks:
    """Tower's body chunks after `head` (what was read already); a break in them
    is a StreamAborted.  A class, not an async generator: mypyc compiles these."""

    __slots__ = ("_head", "_upstream")

    def __init__(self, upstream: UpstreamResponse, head: bytes) -> None:
        self._upstream = upstream
        self._head = head

    def __aiter__(self) -> _RelayedChunks:
        return self

    async def __anext__(self) -> bytes:
        head = self._head
        if head:
            self._head = b""
            return head
        try:
            return await self._upstream.__anext__()
        except (BrokenResponse, TimeoutError) as exc:  # UpstreamTimeout is a TimeoutError
            # The status line is gone already: the server cuts the connection so the
            # client sees a truncated body, not a complete-looking one.
            raise StreamAborted(type(exc).__name__) from None


class _Bearer:
    """One upstream request's headers with its token, which is checked again
    if the request had to wait for a connection.

    If Tower refused the token meanwhile (a refresh storm) or a newer one
    arrived, the request goes out with the token current then — waiting for
    the refresh under way — instead of with one already known to fail.
    """

    __slots__ = ("_headers", "_tokens", "token")

    def __init__(
        self, tokens: TokenManager, token: TokenSet, headers: list[tuple[str, str]]
    ) -> None:
        self._tokens = tokens
        self._headers = headers
        self.token = token  # the one the request last went out with

    def headers(self) -> list[tuple[str, str]]:
        return [*self._headers, ("Authorization", f"Bearer {self.token.access_token}")]

    async def recheck(self) -> list[tuple[str, str]]:
        if not self._tokens.still_current(self.token):
            self.token = await self._tokens.token()
        return self.headers()


def _token_rejected(upstream: UpstreamResponse) -> bool:
    if upstream.status != 401:
        return False
    challenge = upstream.headers.get("WWW-Authenticate", "")
    return "insufficient_scope" not in challenge


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
