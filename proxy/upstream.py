"""The HTTP/1.1 client towards Tower: a keep-alive pool of connections to one origin.

It owns the connections to `api_url`'s origin — opened directly (TCP, then
TLS for https) or through an egress proxy's `CONNECT` tunnel (TLS inside) —
their reuse, and the framing of requests and responses.  Built on
`asyncio.BufferedProtocol` and the llhttp parser (`httptools`) because
aiohttp's ClientSession cost most of the proxy's CPU per request.  It works
on the default event loop and on uvloop; a pool belongs to one loop.

    UpstreamError          the root; raised as such once the pool is closed
    ├── ConnectFailed      TCP, TLS or tunnel setup failed: nothing was sent
    ├── ConnectionLost     closed before any response byte; `.reused` says if pooled
    ├── UpstreamTimeout    connect or read timeout (a TimeoutError too)
    └── BrokenResponse     a malformed response, or one cut off mid-body

A caller's mistake (CR/LF or non-latin-1 in the head, a body longer or
shorter than `content_length`) is a ValueError.  The read timeout bounds each
wait with nothing arriving: for the head, for body bytes when none are
buffered, and for the socket to drain during an upload.

Invariants:

- A connection is idle (in the pool, no request on it), busy (serving one
  request; no pipelining) or closed.  Bytes, an EOF or a reset on an idle
  connection close it and take it out of the pool at once.
- A connection is pooled again only when its response was received to its
  end, framed by Content-Length or chunked, over HTTP/1.1 without
  `Connection: close`, and the request was not `fresh`.  An error, a timeout,
  a cancellation, an abandoned body or a close-delimited body closes it.
- Nothing is sent twice: no hidden retries.  `ConnectionLost.reused` tells
  the caller whether its one retry, on a fresh connection, makes sense.
- At most HIGH_WATER + READ_SIZE body bytes wait per connection for a slow
  consumer: reading pauses at HIGH_WATER, and one read is at most READ_SIZE.
- Parser callbacks only record what arrived and wake the waiting task; pool
  moves happen in that task, never inside `feed_data`.
- Header values (the bearer token) are never logged nor put in exception
  messages: messages name the origin and what happened.
- Heads are encoded latin-1, strictly: field values are octets and the caller
  (the server side) has parsed and validated them already.  A character
  beyond latin-1, or a CR or LF anywhere in the head (header injection),
  raises ValueError before a byte is sent.
"""

from __future__ import annotations

import asyncio
import functools
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from ssl import SSLContext, create_default_context
from typing import Final, cast

from httptools import HttpParserError, HttpParserUpgrade, HttpResponseParser
from multidict import CIMultiDict, CIMultiDictProxy, istr
from mypy_extensions import mypyc_attr
from yarl import URL

READ_SIZE: Final = 64 * 1024  # the most one socket read hands the parser
HIGH_WATER: Final = 192 * 1024  # buffered body bytes at which reading pauses
LOW_WATER: Final = 64 * 1024  # ... and resumes once the consumer is down to this
_JOIN_LIMIT: Final = 64 * 1024  # bytes bodies up to this share the head's write
_CLOSE_GRACE: Final = 1.0  # close(): seconds to wait for transports to finish
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
_NO_HEADERS: Final[CIMultiDictProxy[str]] = CIMultiDictProxy(CIMultiDict())
# istr keys: a case-insensitive lookup with a ready-made key skips folding it each time.
_CONTENT_LENGTH: Final = istr("Content-Length")
_TRANSFER_ENCODING: Final = istr("Transfer-Encoding")
_CONNECTION: Final = istr("Connection")
# The usual reason phrases, decoded once rather than per response.
_REASONS: Final = {status.phrase.encode("latin-1"): status.phrase for status in HTTPStatus}


# Plain Python classes when compiled (mypyc): UpstreamTimeout is also a
# TimeoutError, and a compiled class cannot derive from that builtin.
@mypyc_attr(native_class=False)
class UpstreamError(Exception):
    """Root of this module's errors."""


@mypyc_attr(native_class=False)
class ConnectFailed(UpstreamError):
    """TCP/TLS/tunnel connect failed (nothing was sent)."""


@mypyc_attr(native_class=False)
class ConnectionLost(UpstreamError):
    """The connection closed or reset before any byte of the response head arrived."""

    reused: bool  # True when it was a pooled (previously used) connection

    def __init__(self, message: str, *, reused: bool) -> None:
        super().__init__(message)
        self.reused = reused


@mypyc_attr(native_class=False)
class UpstreamTimeout(UpstreamError, TimeoutError):
    """connect or read timeout"""


@mypyc_attr(native_class=False)
class BrokenResponse(UpstreamError):
    """malformed response, or the connection died mid-body"""


class _Unexpected(Exception):
    """Raised in a parser callback to stop parsing bytes nobody asked for."""


@dataclass(frozen=True, slots=True)
class Origin:
    """Where the connections go: scheme, host and port (the default one filled in)."""

    scheme: str  # "http" | "https"
    host: str  # IDNA-encoded; an IPv6 address without brackets
    port: int

    @classmethod
    def from_url(cls, url: str) -> Origin:
        parsed = URL(url)
        if parsed.scheme not in _DEFAULT_PORTS or not parsed.raw_host or parsed.port is None:
            # The URL is not echoed: it may carry credentials.
            raise ValueError("an upstream origin needs an http:// or https:// URL with a host")
        return cls(parsed.scheme, parsed.raw_host, parsed.port)

    @property
    def authority(self) -> str:
        """host:port, always with the port (the CONNECT target)."""
        return f"{_bracketed(self.host)}:{self.port}"

    @property
    def host_header(self) -> str:
        if self.port == _DEFAULT_PORTS.get(self.scheme):
            return _bracketed(self.host)
        return self.authority


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host


class _Connection(asyncio.BufferedProtocol):
    """One connection: transport and parser callbacks, read flow control, the read timer.

    The read timer is lazy: a wait moves `_deadline`, and one timer per period
    checks it, so a request costs no timer handle of its own.
    """

    __slots__ = (
        "_buffer",
        "_bytes",
        "_deadline",
        "_fields",
        "_lost",
        "_parser",
        "_reason",
        "_timeout",
        "_timer",
        "closed",
        "dead",
        "idle_since",
        "loop",
        "paused",
        "pool",
        "response",
        "reused",
        "transport",
        "write_paused",
    )
    transport: asyncio.Transport

    def __init__(self, pool: UpstreamPool, loop: asyncio.AbstractEventLoop) -> None:
        self.pool = pool
        self.loop = loop
        self.response: UpstreamResponse | None = None
        self.reused = False  # taken from the pool at least once
        self.closed = False  # closing or closed: never handed out again
        self.dead = False  # connection_lost has run
        self.paused = False  # reading paused for a slow consumer
        self.write_paused = False
        self.idle_since = 0.0
        self._bytes = bytearray(READ_SIZE)
        self._buffer = memoryview(self._bytes)
        self._parser = HttpResponseParser(self)
        self._fields: CIMultiDict[str] = CIMultiDict()  # the head being parsed
        self._reason = b""
        self._timeout = pool._read_timeout
        self._deadline = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._lost: asyncio.Future[None] | None = None

    # --- transport callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._buffer

    def buffer_updated(self, nbytes: int) -> None:
        response = self.response
        if response is None:  # idle: the server has nothing to say now
            self.abort()
            return
        if not response._begun:
            # Nothing is pipelined, so a response's first read starts with its status
            # line: looking at it is cheaper than asking llhttp for the version.
            response._http11 = self._bytes.startswith(b"HTTP/1.1 ", 0, nbytes)
        try:
            self._parser.feed_data(self._buffer[:nbytes])
        except HttpParserError as exc:
            self._malformed(str(exc))
        except HttpParserUpgrade:
            self._malformed("a protocol switch nobody asked for")

    def eof_received(self) -> None:
        self._ended(None)  # returning None lets the transport close

    def connection_lost(self, exc: Exception | None) -> None:
        self.dead = True
        self._ended(exc)
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(None)

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.response is not None:
            self.response._wake()

    # --- parser callbacks

    # buffer_updated feeds the parser only while a response is set, and nothing
    # inside feed_data unsets it: the `is None` tests below are for the type checker.

    def on_message_begin(self) -> None:
        response = self.response
        if response is None or response._complete:
            raise _Unexpected  # bytes beyond the response (after HEAD, or garbage)
        response._begun = True

    def on_status(self, reason: bytes) -> None:
        self._reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self._fields.add(name.decode("latin-1"), value.decode("latin-1"))

    def on_headers_complete(self) -> None:
        fields = self._fields
        self._fields = CIMultiDict()
        reason = self._reason
        self._reason = b""
        parser = self._parser
        status = parser.get_status_code()
        response = self.response
        if response is None:
            raise _Unexpected
        if status >= 200:
            response._head(status, reason, fields, parser)
        else:  # interim (100 Continue, 103 Early Hints): the final head follows, maybe mid-read
            response._http11 = False

    def on_body(self, body: bytes) -> None:
        response = self.response
        if response is None or response._complete:
            raise _Unexpected  # a body after a HEAD head
        response._chunks.append(body)
        buffered = response._buffered = response._buffered + len(body)
        if buffered > response._peak:
            response._peak = buffered
        if buffered >= HIGH_WATER and not self.paused:
            self.paused = True
            self.transport.pause_reading()
        if response._waiter is not None:
            response._wake()

    def on_message_complete(self) -> None:
        response = self.response
        if response is not None and response.status:  # zero: the end of an interim response
            response._complete = True
            if response._waiter is not None:
                response._wake()

    # --- state changes

    def close(self) -> None:
        """Close politely (FIN after pending writes); the response, if any, is done."""
        if not self.closed:
            self._mark_closed()
        self.transport.close()

    def abort(self) -> None:
        if not self.closed:
            self._mark_closed()
        self.transport.abort()

    def renew_parser(self) -> None:
        """A new parser: the old one is mid-message after a HEAD or a CONNECT answer."""
        self._parser = HttpResponseParser(self)

    def resume_reading(self) -> None:
        self.paused = False
        self.transport.resume_reading()

    def news(self, response: UpstreamResponse) -> asyncio.Future[None]:
        """A future resolved when `response` has news, or the read timer fires.

        A future, not a coroutine: one frame less per wait.  Whoever awaits it
        closes the connection when cancelled."""
        loop = self.loop
        waiter = response._waiter = loop.create_future()
        timeout = self._timeout
        if timeout is not None:
            deadline = self._deadline = loop.time() + timeout
            if self._timer is None:
                self._timer = loop.call_at(deadline, self._on_timer)
        return waiter

    def wait_lost(self) -> asyncio.Future[None]:
        if self._lost is None:
            self._lost = self.loop.create_future()
            if self.dead:
                self._lost.set_result(None)
        return self._lost

    def _on_timer(self) -> None:
        self._timer = None
        response = self.response
        if response is None or response._waiter is None:
            return  # nobody waits: the next wait arms a new timer
        if self.loop.time() < self._deadline:
            self._timer = self.loop.call_at(self._deadline, self._on_timer)
            return
        what = "mid-body" if response.status else "before answering"
        timeout = self._timeout
        response._fail(UpstreamTimeout(f"{self.pool.name} was silent for {timeout} s {what}"))
        self.abort()

    def _mark_closed(self) -> None:
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.pool._forget(self)

    def _malformed(self, reason: str) -> None:
        response = self.response
        if response is not None and not response._complete:
            # llhttp's reasons are fixed texts; they never quote the bytes.
            response._fail(BrokenResponse(f"malformed response from {self.pool.name}: {reason}"))
        self.abort()

    def _ended(self, exc: Exception | None) -> None:
        if not self.closed:
            self._mark_closed()
        response = self.response
        if response is None or response._complete or response._error is not None:
            return
        name = self.pool.name
        if not response.status:
            if response._begun:
                response._fail(BrokenResponse(f"{name} closed the connection mid-head"))
            else:
                lost = f"{name} closed the connection before answering"
                response._fail(ConnectionLost(lost, reused=self.reused))
        elif response._until_eof and exc is None:
            response._complete = True
            response._wake()
        else:
            response._fail(BrokenResponse(f"{name} closed the connection mid-body"))


class UpstreamResponse:
    """One response: its head, then its body as it arrives (dechunked, bounded).

    The connection goes back to the pool as soon as the whole body has been
    received and either the consumer reached its end, or release() is called
    (request() does that itself when the body came with the head).  What was
    received stays readable after release().
    """

    __slots__ = (
        "_begun",
        "_buffered",
        "_chunks",
        "_complete",
        "_conn",
        "_error",
        "_fresh",
        "_head_only",
        "_http11",
        "_peak",
        "_reusable",
        "_until_eof",
        "_waiter",
        "content_length",
        "headers",
        "reason",
        "status",
    )
    status: int
    reason: str
    headers: CIMultiDictProxy[str]  # str names and values, decoded latin-1
    content_length: int | None  # from the header; None when chunked or close-delimited

    def __init__(self, conn: _Connection, head_only: bool, fresh: bool) -> None:
        self.status = 0  # zero until the final head has arrived
        self.reason = ""
        self.headers = _NO_HEADERS
        self.content_length = None
        self._conn: _Connection | None = conn  # None once released
        self._head_only = head_only  # HEAD or CONNECT: the head is the whole message
        self._fresh = fresh
        self._begun = False  # a byte of the response arrived
        self._http11 = False  # its status line was seen to say HTTP/1.1 (False: unknown)
        self._complete = False  # the whole body arrived
        self._reusable = False  # the head allows pooling the connection after the body
        self._until_eof = False
        self._error: UpstreamError | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._peak = 0  # most body bytes ever buffered (a diagnostic for tests)

    @property
    def complete(self) -> bool:
        return self._complete

    async def read(self, limit: int) -> bytes:
        """Up to `limit` body bytes; b"" at the end of the body."""
        if limit < 1:
            raise ValueError("limit must be positive")
        chunks = self._chunks
        while not chunks:
            if self._complete:
                self.release()
                return b""
            await self._more()
        chunk = chunks.popleft()
        if len(chunk) > limit:
            chunks.appendleft(chunk[limit:])
            chunk = chunk[:limit]
        buffered = self._buffered = self._buffered - len(chunk)
        conn = self._conn
        if conn is not None and conn.paused and buffered <= LOW_WATER:
            conn.resume_reading()
        return chunk

    async def read_at_most(self, limit: int) -> bytes:
        """The body's next bytes up to `limit` in all: fewer only when the body ends first."""
        buffer = bytearray()
        while len(buffer) < limit:
            chunk = await self.read(limit - len(buffer))
            if not chunk:
                break
            buffer += chunk
        return bytes(buffer)

    def body_if_complete(self, limit: int) -> bytes | None:
        """The rest of the body, at once, if it has all arrived and is at most `limit` bytes.

        Else None, and nothing is consumed.  Spares a caller the read loop (and
        its awaits) for a small body that came with its head; like reading to
        the end, it releases the connection."""
        if not self._complete or self._buffered > limit:
            return None
        chunks = self._chunks
        body = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self._buffered = 0
        self.release()
        return body

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        chunks = self._chunks
        while not chunks:
            if self._complete:
                self.release()
                raise StopAsyncIteration
            await self._more()
        chunk = chunks.popleft()
        buffered = self._buffered = self._buffered - len(chunk)
        conn = self._conn
        if conn is not None and conn.paused and buffered <= LOW_WATER:
            conn.resume_reading()
        return chunk

    def release(self) -> None:
        """Pool the connection if the response ended cleanly, else close it; idempotent."""
        conn = self._conn
        if conn is None:
            return
        self._conn = None
        conn.response = None
        if not self._complete:
            conn.abort()  # abandoned mid-body
        elif self._reusable and not conn.closed:
            conn.pool._put(conn, self._head_only)
        else:
            conn.close()

    # --- for the connection and the pool

    def _head(
        self, status: int, reason: bytes, headers: CIMultiDict[str], parser: HttpResponseParser
    ) -> None:
        self.status = status
        phrase = _REASONS.get(reason)
        self.reason = reason.decode("latin-1") if phrase is None else phrase
        self.headers = CIMultiDictProxy(headers)
        # llhttp's framing: chunked, else Content-Length, else the body runs to the close.
        coding = headers.get(_TRANSFER_ENCODING)
        if coding is not None:
            self._until_eof = "chunked" not in coding.lower()
        else:
            length = headers.get(_CONTENT_LENGTH)
            if length is not None:
                self.content_length = int(length)  # llhttp has checked it is digits
            else:
                self._until_eof = True
        keep = not self._fresh and parser.should_keep_alive()
        if keep and not self._http11 and _CONNECTION in headers:
            # llhttp keeps an HTTP/1.0 answer alive only with `Connection: keep-alive`,
            # and only HTTP/1.1 is kept here: without that header the version is 1.1.
            keep = parser.get_http_version() == "1.1"
        self._reusable = keep
        if self._head_only:
            self._complete = True
        if self._waiter is not None:
            self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def _fail(self, error: UpstreamError) -> None:
        self._error = error
        self._wake()

    async def _await_head(self, conn: _Connection) -> None:
        while not self.status:
            if self._error is not None:
                raise self._error
            await conn.news(self)

    async def _more(self) -> None:
        """Wait for more of the body, or raise why none will come."""
        if self._error is not None:
            self._discard()
            raise self._error
        conn = self._conn
        if conn is None:
            raise BrokenResponse("the response was released before its body ended")
        try:
            await conn.news(self)
        except asyncio.CancelledError:
            self._discard()
            raise

    def _discard(self) -> None:
        """Close the connection for good (error, timeout, cancellation)."""
        conn = self._conn
        if conn is not None:
            self._conn = None
            conn.response = None
            conn.abort()


class UpstreamPool:
    """Keep-alive HTTP/1.1 connections to one origin, reused most recent first."""

    __slots__ = (
        "_closed",
        "_connect_head",
        "_connect_timeout",
        "_connecting",
        "_host",
        "_idle",
        "_keepalive",
        "_limit",
        "_open",
        "_origin",
        "_read_timeout",
        "_ssl",
        "_tunnel",
        "_waiters",
        "name",
    )

    def __init__(
        self,
        origin: Origin,
        *,
        ssl: SSLContext | None,
        connect_timeout: float,
        read_timeout: float | None,
        keepalive: float = 300.0,
        tunnel: tuple[Origin, dict[str, str]] | None = None,
        max_connections: int = 0,
    ) -> None:
        if origin.scheme == "https" and ssl is None:
            ssl = create_default_context()
        self.name = f"{origin.scheme}://{origin.host_header}"  # for messages
        self._origin = origin
        self._ssl = ssl if origin.scheme == "https" else None
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._keepalive = keepalive
        self._host = origin.host_header
        self._tunnel = tunnel
        self._connect_head = b"" if tunnel is None else _connect_head(origin, tunnel)
        self._idle: list[_Connection] = []  # oldest first; reuse pops the newest
        self._open: set[_Connection] = set()  # handed out by _connect_new or warm, not closed
        # At most `_limit` connections open or opening (0: no limit); beyond, requests
        # wait in order for one to come back or close, within connect_timeout.
        self._limit = max_connections
        self._connecting = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._closed = False

    @property
    def idle_count(self) -> int:
        return len(self._idle)

    @property
    def tunnelled(self) -> bool:
        """Connections go through an egress proxy's CONNECT tunnel."""
        return self._tunnel is not None

    async def request(
        self,
        method: str,
        target: str,
        headers: Sequence[tuple[str, str]],
        body: bytes | AsyncIterable[bytes] | None = None,
        *,
        content_length: int | None = None,
        fresh: bool = False,
        after_wait: Callable[[], Awaitable[Sequence[tuple[str, str]]]] | None = None,
    ) -> UpstreamResponse:
        """Send one request; return once the response head has arrived.

        `after_wait`: when no idle connection was at hand, called once one is,
        for the headers to send instead — a credential may have been refused
        while the request waited its turn.
        """
        if self._closed:
            raise UpstreamError(f"the pool for {self.name} is closed")
        data = b""
        stream = None
        if isinstance(body, bytes):
            data = body
            if content_length is None:
                content_length = len(data)
            elif content_length != len(data):
                raise ValueError("content_length differs from the body's length")
        elif body is not None:
            stream = body
        chunked = stream is not None and content_length is None
        head = _encode_head(method, target, self._host, headers, content_length, chunked)
        conn = None if fresh else self._pop_idle()
        if conn is None:
            conn = await self._connect_new() if fresh else await self._acquire()
            if after_wait is not None:
                try:
                    again = await after_wait()
                    head = _encode_head(method, target, self._host, again, content_length, chunked)
                except BaseException:
                    self._put(conn, False)  # nothing was sent on it
                    raise
        response = UpstreamResponse(conn, method == "HEAD", fresh)
        conn.response = response
        try:
            write = conn.transport.write
            if stream is not None:
                write(head)
                await _send_stream(response, conn, stream, content_length)
            elif len(data) > _JOIN_LIMIT:
                write(head)
                write(data)
            else:
                write(head + data if data else head)
            while not response.status:  # _await_head, inlined: this is the hot path
                if response._error is not None:
                    raise response._error
                await conn.news(response)
        except BaseException:  # errors, and cancellation: the connection is done for
            response._discard()
            raise
        if response._complete:  # the whole (small) body came with the head
            response.release()
        return response

    async def warm(self, timeout: float) -> bool:  # noqa: ASYNC109 (the agreed API)
        """Open one connection and leave it idle in the pool; False on failure, never raises."""
        if self._tunnel is not None or self._closed:
            return False
        try:
            conn = await self._connect(timeout)
        except Exception:  # a Tower that is down must not stop anything
            return False
        self._open.add(conn)
        self._put(conn, False)
        return not conn.closed

    async def close(self) -> None:
        """Close every connection; later requests raise UpstreamError."""
        self._closed = True
        idle, conns = self._idle, list(self._open)
        self._idle, self._open = [], set()
        resting = set(idle)
        for conn in conns:
            if conn in resting:
                conn.close()
            else:
                conn.abort()  # busy: whatever is in flight is cut off
        lost = [conn.wait_lost() for conn in conns]
        if lost:
            await asyncio.wait(lost, timeout=_CLOSE_GRACE)
        for conn, gone in zip(conns, lost, strict=True):
            if not gone.done():
                conn.transport.abort()  # a TLS peer that never acknowledged the close

    # --- connections

    async def _acquire(self) -> _Connection:
        """An idle connection, else a new one while under the limit, else wait for either.

        A fresh connection (the forwarder's one retry) does not come here: the
        connection it replaces has just freed its place."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._connect_timeout
        while self._limit and len(self._open) + self._connecting >= self._limit:
            await self._wait_for_turn(deadline - loop.time())
            conn = self._pop_idle()
            if conn is not None:
                return conn
        self._connecting += 1
        try:
            return await self._connect_new()
        finally:
            self._connecting -= 1

    async def _wait_for_turn(self, within: float) -> None:
        turn = asyncio.get_running_loop().create_future()
        self._waiters.append(turn)
        try:
            async with asyncio.timeout(within):
                await turn
        except BaseException as exc:
            if turn.done() and not turn.cancelled():
                self._next_turn()  # woken, then cancelled or timed out: the turn passes on
            turn.cancel()
            if isinstance(exc, TimeoutError):
                limit, waited = self._limit, self._connect_timeout
                raise UpstreamTimeout(
                    f"all {limit} connections to {self.name} stayed busy for {waited} s"
                ) from None
            raise

    def _next_turn(self) -> None:
        """A connection came back or closed: let the longest-waiting request look."""
        waiters = self._waiters
        while waiters:
            turn = waiters.popleft()
            if not turn.done():
                turn.set_result(None)
                return

    async def _connect_new(self) -> _Connection:
        conn = await self._connect(self._connect_timeout)
        if self._closed:  # closed while connecting
            conn.close()
            raise UpstreamError(f"the pool for {self.name} is closed")
        self._open.add(conn)
        return conn

    def _pop_idle(self) -> _Connection | None:
        idle = self._idle
        if not idle:
            return None
        horizon = idle[-1].loop.time() - self._keepalive
        while idle[0].idle_since < horizon:  # expired; LIFO keeps the oldest at the bottom
            idle.pop(0).close()
            if not idle:
                return None
        return idle.pop()

    def _put(self, conn: _Connection, renew_parser: bool) -> None:
        if self._closed or conn.closed:
            conn.close()
            return
        if renew_parser:
            conn.renew_parser()
        if conn.paused:
            conn.resume_reading()  # so that a close by the server is seen while idle
        conn.reused = True
        conn.idle_since = conn.loop.time()
        self._idle.append(conn)
        if self._waiters:
            self._next_turn()

    def _forget(self, conn: _Connection) -> None:
        self._open.discard(conn)
        if conn in self._idle:
            self._idle.remove(conn)
        if self._waiters:
            self._next_turn()

    async def _connect(self, within: float) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(within):
                if self._tunnel is None:
                    return await self._open_direct(loop)
                return await self._open_tunnel(loop, self._tunnel[0])
        except TimeoutError:  # before OSError: TimeoutError is one
            raise UpstreamTimeout(f"connecting to {self.name} took over {within} s") from None
        except OSError as exc:  # ssl.SSLError included
            reason = f"{type(exc).__name__}: {exc}"
            raise ConnectFailed(f"cannot connect to {self.name} ({reason})") from exc

    async def _open_direct(self, loop: asyncio.AbstractEventLoop) -> _Connection:
        origin = self._origin
        _, conn = await loop.create_connection(
            functools.partial(_Connection, self, loop),
            origin.host,
            origin.port,
            ssl=self._ssl,
            server_hostname=None if self._ssl is None else origin.host,
        )
        return conn

    async def _open_tunnel(self, loop: asyncio.AbstractEventLoop, proxy: Origin) -> _Connection:
        _, conn = await loop.create_connection(
            functools.partial(_Connection, self, loop), proxy.host, proxy.port
        )
        try:
            await self._through_tunnel(conn, proxy)
            if self._ssl is not None:
                transport = await loop.start_tls(
                    conn.transport, conn, self._ssl, server_hostname=self._origin.host
                )
                if transport is None:
                    raise ConnectFailed(f"TLS to {self.name} through the tunnel did not start")
                conn.transport = transport
        except BaseException:
            conn.abort()
            raise
        return conn

    async def _through_tunnel(self, conn: _Connection, proxy: Origin) -> None:
        """Send CONNECT and read the proxy's answer; anything but 2xx is ConnectFailed."""
        answer = UpstreamResponse(conn, True, True)
        conn.response = answer
        conn.transport.write(self._connect_head)
        try:
            await answer._await_head(conn)
        except UpstreamTimeout:
            raise
        except UpstreamError as exc:
            what = type(exc).__name__
            raise ConnectFailed(f"tunnel via {proxy.authority} to {self.name}: {what}") from exc
        finally:
            answer._conn = conn.response = None
        if not 200 <= answer.status < 300:
            # The status only: the proxy's headers may echo our credentials.
            raise ConnectFailed(
                f"egress proxy {proxy.authority} answered {answer.status} to CONNECT {self.name}"
            )
        conn.renew_parser()


def _encode_head(
    method: str,
    target: str,
    host: str,
    headers: Iterable[tuple[str, str]],
    content_length: int | None,
    chunked: bool,
) -> bytes:
    """The latin-1 bytes of a request head; ValueError for a CR, LF or non-latin-1 in it."""
    # Even slots hold what the caller gave (method, target, host, names, values),
    # odd slots our separators: one search of the even slots finds a CR or LF
    # smuggled in anywhere, cheaper than counting the line ends of the whole head.
    parts = [method, " ", target, " HTTP/1.1\r\nHost: ", host, "\r\n"]
    for name, value in headers:
        parts += (name, ": ", value, "\r\n")
    given = "".join(parts[::2])
    if "\r" in given or "\n" in given:
        raise ValueError("a CR or LF inside the request line or a header")
    if content_length is not None:
        parts.append(f"Content-Length: {content_length}\r\n\r\n")
    elif chunked:
        parts.append("Transfer-Encoding: chunked\r\n\r\n")
    else:
        parts.append("\r\n")
    try:
        return "".join(parts).encode("latin-1")
    except UnicodeEncodeError:
        pass  # raised outside the handler: the error must not hold the head as context
    raise ValueError("a request line or header is not latin-1")


def _connect_head(origin: Origin, tunnel: tuple[Origin, dict[str, str]]) -> bytes:
    proxy, extra = tunnel
    if proxy.scheme != "http":
        raise ValueError("the egress proxy must be an http:// proxy (CONNECT, then TLS inside)")
    authority = origin.authority
    return _encode_head("CONNECT", authority, authority, extra.items(), None, False)


async def _send_stream(
    response: UpstreamResponse,
    conn: _Connection,
    body: AsyncIterable[bytes],
    content_length: int | None,
) -> None:
    """Write a streamed body, chunked when its length is unknown, minding flow control.

    Stops quietly when the server hangs up (it may have answered early); the
    head wait that follows tells what happened."""
    write = conn.transport.write
    sent = 0
    async for chunk in body:
        if conn.closed:
            return
        if not chunk:
            continue  # an empty chunk would end a chunked body
        sent += len(chunk)
        if content_length is None:
            write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
        elif sent > content_length:
            raise ValueError("the body is longer than content_length")
        else:
            write(chunk)
        while conn.write_paused and not conn.closed:
            await conn.news(response)
    if conn.closed:
        return
    if content_length is None:
        write(b"0\r\n\r\n")
    elif sent != content_length:
        raise ValueError("the body is shorter than content_length")
