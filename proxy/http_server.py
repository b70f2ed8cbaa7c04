"""The proxy's HTTP/1.1 server: asyncio protocols around the llhttp parser.

aiohttp's server and client were three quarters of a proxied request's CPU
(bench/profile.py); this module keeps only what a local proxy needs, on
`httptools` (llhttp, the parser of Node.js and uvicorn).

Rules it keeps:
- Requests on one connection are answered in order, one at a time; parsed
  pipelined requests wait in a short queue (reading pauses past a few).
- Framing is the server's: `Content-Length` for known lengths, chunked for
  unknown ones (close-delimited for HTTP/1.0), none for HEAD/204/304.
  Header values holding CR or LF are never written.
- A connection closes after an answer when the client asked for it, the
  answer carries `Connection: close`, the request body was not read to its
  end, or the server is shutting down.
- Malformed input (parser error, an over-long target or header field, too
  many fields) is answered with the proxy's JSON 400 and the connection
  closes; nothing of it reaches a handler.
- `client_timeout` bounds an idle keep-alive connection and the time to
  send a whole request head (measured from the connection's start or the
  last answer, not extended by trickled bytes): the connection is closed
  without an answer.
- A handler that fails before answering gets a JSON 500; after the head is
  written, the connection is cut so the client sees a truncated body.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections import deque
from collections.abc import AsyncIterable, Awaitable, Callable
from email.utils import formatdate
from typing import cast

import httptools
import structlog
from multidict import CIMultiDict, CIMultiDictProxy

from .limits import ConnectionGate, ServerLimits
from .messages import ClientGone, Request, RequestBody, Response, reason_for
from .responses import error_response

log = structlog.get_logger("proxy.http")

Handler = Callable[[Request], Awaitable[None]]

_MAX_QUEUED = 4  # parsed, unanswered pipelined requests before reading pauses
_NO_BODY_STATUS = frozenset({204, 304})
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class _Malformed(Exception):
    """The request cannot be parsed or breaks a size limit."""


class _DateCache:
    """The `Date` header value, formatted once per second."""

    def __init__(self) -> None:
        self._second = 0
        self._value = ""

    def value(self) -> str:
        now = int(time.time())
        if now != self._second:
            self._second, self._value = now, formatdate(now, usegmt=True)
        return self._value


_DATE = _DateCache()


class HttpServer:
    """Creates connection protocols for one listener and drains them at the end."""

    def __init__(
        self, handler: Handler, limits: ServerLimits, gate: ConnectionGate | None = None
    ) -> None:
        self.handler = handler
        self.limits = limits
        self.gate = gate
        self.connections: set[Connection] = set()
        self.closing = False
        self._all_closed: asyncio.Event | None = None

    def __call__(self) -> asyncio.Protocol:
        if self.gate is not None:
            refusal = self.gate.admit()
            if refusal is not None:
                return refusal
        return Connection(self)

    def opened(self, connection: Connection) -> None:
        self.connections.add(connection)

    def closed(self, connection: Connection) -> None:
        self.connections.discard(connection)
        if self.gate is not None:
            self.gate.release()
        if not self.connections and self._all_closed is not None:
            self._all_closed.set()

    async def shutdown(self, timeout: float) -> None:  # noqa: ASYNC109 (a drain budget)
        """Close idle connections now, the rest after their answer; cut them after `timeout`."""
        self.closing = True
        for connection in list(self.connections):
            connection.close_when_idle()
        if self.connections:
            self._all_closed = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._all_closed.wait()
        for connection in list(self.connections):
            connection.abort()


class Connection(asyncio.Protocol):
    """One client connection: parse, queue, answer in order."""

    def __init__(self, server: HttpServer) -> None:
        self._server = server
        self._limits = server.limits
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpRequestParser(self)
        self._queue: deque[Request] = deque()
        self._worker: asyncio.Task[None] | None = None
        self._waiting: asyncio.Future[None] | None = None  # the worker's, for the next request
        self._current: Request | None = None  # being answered
        self._parsing: Request | None = None  # head complete, body still arriving
        self._url = bytearray()
        self._fields: list[tuple[str, str]] = []
        self._read_paused = False
        self._write_paused = False
        self._drained: asyncio.Future[None] | None = None
        self._closed = False
        self._idle_since = self._loop.time()
        self._timer: asyncio.TimerHandle | None = None

    @property
    def answering(self) -> bool:
        return self._current is not None

    @property
    def body_in_progress(self) -> RequestBody | None:
        """The body of the request being answered or parsed, if any."""
        request = self._parsing or self._current
        return request.body if request is not None else None

    # -- asyncio.Protocol ---------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        self._server.opened(self)
        self._arm_timer(self._limits.client_timeout)

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._refuse_upgrade()
        except (httptools.HttpParserError, _Malformed) as exc:
            self._malformed(exc)

    def eof_received(self) -> bool | None:
        """The client half-closed: answer what it sent, then close."""
        if self._parsing is not None:
            self._parsing.body.fail(ClientGone("the client closed mid-body"))
        self._close_after = True
        return self._current is not None or bool(self._queue)  # True: keep writing

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        for request in (self._parsing, self._current):
            if request is not None:
                request.body.fail(ClientGone("the client closed the connection"))
        self._wake_writer(ClientGone("the client closed the connection"))
        if self._worker is not None and self._current is None:
            self._worker.cancel()  # waiting for nothing: no answer is in progress
        self._server.closed(self)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._wake_writer(None)

    # -- httptools callbacks --------------------------------------------------

    def on_message_begin(self) -> None:
        self._url.clear()
        self._fields = []
        self._largest = 0

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > self._limits.max_target:
            raise _Malformed("the request target is too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        size = len(name) + len(value)
        if size > self._largest:
            self._largest = size
            if size > self._limits.max_field_size:
                raise _Malformed("a header field is too long")
        if len(self._fields) >= self._limits.max_fields:
            raise _Malformed("too many header fields")
        self._fields.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        parser = self._parser
        transport = self._transport
        assert transport is not None  # parsing: data came in on it
        headers = CIMultiDictProxy(CIMultiDict(self._fields))
        version = parser.get_http_version()
        hosts = len(headers.getall("Host", ()))
        # RFC 9112 3.2: two Host fields could be read differently by two parsers.
        if hosts != 1 and (hosts or version == "1.1"):
            raise _Malformed("a request needs exactly one Host header")
        request = Request(
            parser.get_method().decode("ascii"),
            self._url.decode("latin-1"),
            version,
            headers,
            transport,
            self.respond,
            keep_alive=parser.should_keep_alive(),
            largest_field=self._largest,
        )
        if "Transfer-Encoding" in headers or "Content-Length" in headers:
            self._expect_body(request)
        self._parsing = request
        self._enqueue(request)

    def _expect_body(self, request: Request) -> None:
        headers = request.headers
        request.chunked = "chunked" in headers.get("Transfer-Encoding", "").lower()
        request.content_length = _content_length(headers)
        if request.chunked or request.content_length:
            announce = None
            if headers.get("Expect", "").lower() == "100-continue":
                announce = self._send_continue
            request.body = RequestBody(request.transport, on_first_read=announce)

    def on_body(self, chunk: bytes) -> None:
        if self._parsing is not None:
            self._parsing.body.feed(chunk)

    def on_message_complete(self) -> None:
        if self._parsing is not None:
            self._parsing.body.feed_eof()
            self._parsing = None

    # -- answering ------------------------------------------------------------

    def _enqueue(self, request: Request) -> None:
        self._queue.append(request)
        if len(self._queue) > _MAX_QUEUED and not self._read_paused:
            self._pause_reading()
        waiting = self._waiting
        if waiting is not None:
            self._waiting = None
            waiting.set_result(None)
        elif self._worker is None:
            self._worker = self._loop.create_task(self._answer_all())

    async def _answer_all(self) -> None:
        """Answer the queued requests in order; between them, wait for the next one.

        One task for the connection's life, not one per request: a task costs
        more to create than a future costs to wake."""
        try:
            while not self._closed:
                if not self._queue:
                    if self._server.closing:
                        break
                    self._waiting = self._loop.create_future()
                    await self._waiting
                    continue
                request = self._queue.popleft()
                self._current = request
                if self._read_paused and len(self._queue) <= _MAX_QUEUED:
                    self._resume_reading()
                keep = await self._answer(request)
                self._current = None
                if not keep:
                    self._close_or_refuse()
                    return
                self._idle_since = self._loop.time()
        finally:
            self._current = None
            self._worker = None
            self._waiting = None
        if self._server.closing:
            self._close()

    async def _answer(self, request: Request) -> bool:
        """Run the handler for `request`; whether the connection may be kept."""
        self._written_head = False
        try:
            await self._server.handler(request)
            if not self._written_head:
                log.error("handler_gave_no_answer", path=request.path[:512])
                await self.respond(error_response("internal_error", "no answer"))
        except ClientGone:
            return False
        except Exception:
            log.exception("handler_failed", path=request.path[:512])
            if self._written_head:
                return False
            await self.respond(error_response("internal_error", "the proxy failed"))
            return False
        return self._keep_after(request)

    def _keep_after(self, request: Request) -> bool:
        return (
            self._keep_alive  # what the answer's head said, request.keep_alive included
            and request.body.received_all()
            and not self._close_after
            and not self._server.closing
            and not self._closed
        )

    async def respond(self, response: Response) -> int:
        """Write the answer to the request being answered: head, then the body."""
        try:
            request = self._current
            if request is None or self._written_head:
                raise RuntimeError("a request is answered once, while it is being answered")
            self._written_head = True
            if self._closed:
                raise ClientGone("the client closed the connection")
            return await self._write(request, response)
        finally:
            if response.release is not None:
                response.release()

    async def _write(self, request: Request, response: Response) -> int:
        body = response.body
        no_body = request.method == "HEAD" or response.status in _NO_BODY_STATUS
        head, chunked = self._head(request, response, no_body=no_body)
        transport = self._transport
        assert transport is not None  # answering: the connection was made
        if isinstance(body, bytes):
            transport.write(head + body if body and not no_body else head)
            response.sent = 0 if no_body else len(body)
        else:
            transport.write(head)
            response.sent = 0 if no_body else await self._stream(body, chunked)
        if self._write_paused:
            await self._drain()
        return response.sent

    def _head(self, request: Request, response: Response, *, no_body: bool) -> tuple[bytes, bool]:
        headers = response.headers
        status = response.status
        keep = request.keep_alive and not self._server.closing and not self._close_after
        if "close" in headers.get("Connection", "").lower():
            keep = False
        lines = _head_lines(response)
        chunked = False
        length = response.length
        if status in _NO_BODY_STATUS:
            pass
        elif length is not None:
            lines.append(f"Content-Length: {length}")
        elif no_body:
            pass
        elif request.version == "1.1":
            chunked = True
            lines.append("Transfer-Encoding: chunked")
        else:
            keep = False  # HTTP/1.0: the body ends when the connection does
        if not keep:
            lines.append("Connection: close")
        elif request.version == "1.0":
            lines.append("Connection: keep-alive")
        self._keep_alive = keep
        lines.append("\r\n")
        return "\r\n".join(lines).encode("latin-1"), chunked

    async def _stream(self, body: AsyncIterable[bytes], chunked: bool) -> int:
        transport = self._transport
        assert transport is not None
        sent = 0
        try:
            async for chunk in body:
                if not chunk:
                    continue
                if self._closed:
                    raise ClientGone("the client closed the connection")
                transport.write(b"%x\r\n%b\r\n" % (len(chunk), chunk) if chunked else chunk)
                sent += len(chunk)
                if self._write_paused:
                    await self._drain()
        except ClientGone:
            raise
        except BaseException:
            self._keep_alive = False
            transport.close()  # the head is out: a truncated body, never a complete-looking one
            raise
        if chunked:
            transport.write(b"0\r\n\r\n")
        return sent

    async def _drain(self) -> None:
        if self._closed:
            raise ClientGone("the client closed the connection")
        if not self._write_paused:
            return
        self._drained = self._loop.create_future()
        try:
            await self._drained
        finally:
            self._drained = None

    def _wake_writer(self, exc: BaseException | None) -> None:
        waiter = self._drained
        if waiter is None or waiter.done():
            return
        if exc is None:
            waiter.set_result(None)
        else:
            waiter.set_exception(exc)

    def _send_continue(self) -> None:
        if self._transport is not None and not self._closed:
            self._transport.write(_CONTINUE)

    # -- refusals, timers, closing --------------------------------------------

    def _malformed(self, exc: BaseException) -> None:
        parsing, self._parsing = self._parsing, None
        if parsing is not None:
            parsing.body.fail(ClientGone("malformed request"))
            if parsing in self._queue:  # refused after its head was queued: never answered
                self._queue.remove(parsing)
        self._pause_reading()
        cause = exc.__context__ if isinstance(exc, httptools.HttpParserCallbackError) else exc
        reason = str(cause) if isinstance(cause, _Malformed) else "the request cannot be parsed"
        log.info("request_malformed", reason=reason, parser=type(exc).__name__)
        refusal = error_response("bad_request", reason)
        if self._current is not None or self._queue:
            self._refusal = refusal  # sent once the answers under way are written
            self._close_after = True
            return
        self._refuse(refusal)

    def _refuse_upgrade(self) -> None:
        """Protocol upgrades (WebSocket, h2c) are not proxied: answer the request, then close."""
        self._close_after = True
        if self._parsing is not None:
            self._parsing.body.feed_eof()
            self._parsing = None
        self._pause_reading()

    def _close_or_refuse(self) -> None:
        if self._refusal is not None and not self._queue:
            self._refuse(self._refusal)
        self._close()

    def _refuse(self, response: Response) -> None:
        transport = self._transport
        if transport is None or self._closed:
            return
        body = cast(bytes, response.body)
        framing = [f"Content-Length: {len(body)}", "Connection: close", "\r\n"]
        lines = [*_head_lines(response), *framing]
        transport.write("\r\n".join(lines).encode("latin-1") + body)
        self._close()

    def _arm_timer(self, delay: float) -> None:
        if delay > 0:
            self._timer = self._loop.call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        """Close a connection idle or sending its head for longer than client_timeout."""
        self._timer = None
        if self._closed:
            return
        if self._current is not None or self._queue or self._parsing is not None:
            self._arm_timer(self._limits.client_timeout)  # answering: check again later
            return
        due = self._idle_since + self._limits.client_timeout
        if self._loop.time() >= due:
            self._close()
        else:
            self._arm_timer(due - self._loop.time())

    def close_when_idle(self) -> None:
        if self._current is None and not self._queue and self._parsing is None:
            self._close()

    def _close(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def _pause_reading(self) -> None:
        if self._transport is not None and not self._read_paused:
            self._read_paused = True
            self._transport.pause_reading()

    def _resume_reading(self) -> None:
        if self._transport is not None and self._read_paused:
            self._read_paused = False
            self._transport.resume_reading()

    _written_head = False
    _keep_alive = True
    _largest = 0  # the longest header field of the request being parsed
    _close_after = False  # the client half-closed, sent garbage, or asked for an upgrade
    _refusal: Response | None = None  # a 400 due after the answers under way


_FRAMING = frozenset({"content-length", "transfer-encoding", "connection"})


@functools.lru_cache(maxsize=128)  # a few (status, reason) pairs recur on every answer
def _status_line(status: int, reason: str) -> str:
    return f"HTTP/1.1 {status} {reason or reason_for(status)}"


def _head_lines(response: Response) -> list[str]:
    """The status line, the response's own fields and a Date; framing is the caller's."""
    headers = response.headers
    lines = [_status_line(response.status, response.reason)]
    if headers:
        lines.append(_fields(headers))
    if "Date" not in headers:
        lines.append(f"Date: {_DATE.value()}")
    return lines


def _fields(headers: CIMultiDict[str]) -> str:
    """`Name: value` lines, without framing fields (the server's) or any CR/LF."""
    values = "".join(headers.values())
    framing = "Content-Length" in headers or "Transfer-Encoding" in headers
    if framing or "Connection" in headers or "\r" in values or "\n" in values:
        kept = [
            (name, value)
            for name, value in headers.items()
            if "\n" not in value and "\r" not in value and name.lower() not in _FRAMING
        ]
        return "\r\n".join(map(": ".join, kept))
    return "\r\n".join(map(": ".join, headers.items()))


def _content_length(headers: CIMultiDictProxy[str]) -> int | None:
    value = headers.get("Content-Length")
    if value is None:
        return None
    return int(value)  # llhttp has refused anything but digits
