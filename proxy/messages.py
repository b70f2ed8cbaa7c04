"""The request and response objects the proxy's own HTTP/1.1 server hands out.

`Request` is what the server parsed: method, the raw target, headers, the
body as a stream, and the transport (for peer checks).  `Response` is what a
handler answers: a status, headers, and either the whole body as bytes or an
async iterable of chunks (streamed with the client's flow control).  A
handler answers by `await request.respond(response)`, once; the server
writes `Content-Length` (or chunked framing) itself, so handlers never set
framing headers.
"""

from __future__ import annotations

import asyncio
import http
import json
from collections import deque
from collections.abc import AsyncIterable, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import cast

from multidict import CIMultiDict, CIMultiDictProxy
from mypy_extensions import mypyc_attr

_REASONS = {status.value: status.phrase for status in http.HTTPStatus}
BODY_HIGH_WATER = 512 * 1024  # buffered request-body bytes before reading pauses


def reason_for(status: int) -> str:
    return _REASONS.get(status, "Unknown")


@dataclass(slots=True)
class Response:
    status: int
    headers: CIMultiDict[str] = field(default_factory=CIMultiDict)
    body: bytes | AsyncIterable[bytes] = b""
    reason: str = ""
    # For a streamed body: its length when known (Content-Length), else chunked.
    content_length: int | None = None
    # Called once the answer was written or abandoned (returns a streamed
    # upstream connection to its pool).
    release: Callable[[], None] | None = None
    # What the server wrote of the body (for the canonical log line).
    sent: int = 0

    @classmethod
    def json(
        cls, data: object, *, status: int = 200, headers: Mapping[str, str] | None = None
    ) -> Response:
        answer = CIMultiDict(headers or {})
        answer["Content-Type"] = "application/json; charset=utf-8"
        return cls(status=status, headers=answer, body=json.dumps(data).encode())

    @property
    def length(self) -> int | None:
        """The body's length when known before it is sent."""
        if isinstance(self.body, bytes):
            return len(self.body)
        return self.content_length


@mypyc_attr(native_class=False)  # a builtin exception's subclass
class ClientGone(ConnectionError):
    """The client closed its connection before the answer was written."""


class RequestBody:
    """A request body arriving from the parser, read by one consumer.

    Reading pauses the transport while more than BODY_HIGH_WATER bytes are
    buffered, so a fast uploader cannot fill memory.  `total_bytes` only
    grows: the stall watch (limits.progress_deadline) compares it over time.
    """

    __slots__ = (
        "_buffer",
        "_buffered",
        "_eof",
        "_error",
        "_on_first_read",
        "_paused",
        "_transport",
        "_waiter",
        "total_bytes",
    )

    def __init__(
        self,
        transport: asyncio.Transport,
        *,
        on_first_read: Callable[[], None] | None = None,
    ) -> None:
        self._transport = transport
        self._buffer: deque[bytes] = deque()
        self._buffered = 0
        self._eof = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._paused = False
        self._on_first_read = on_first_read  # e.g. send "100 Continue"
        self.total_bytes = 0

    @classmethod
    def ended(cls) -> RequestBody:
        """A body that is over before it began (GET and friends); nothing ever feeds it."""
        body = cls(cast(asyncio.Transport, None))
        body._eof = True
        return body

    # -- the parser's side ----------------------------------------------------

    def feed(self, chunk: bytes) -> None:
        self._buffer.append(chunk)
        self._buffered += len(chunk)
        self.total_bytes += len(chunk)
        if self._buffered > BODY_HIGH_WATER and not self._paused:
            self._paused = True
            self._transport.pause_reading()
        self._wake()

    def feed_eof(self) -> None:
        self._eof = True
        self._wake()

    def fail(self, exc: BaseException) -> None:
        if not self._eof:
            self._error = exc
            self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- the consumer's side --------------------------------------------------

    @property
    def buffered(self) -> int:
        """Bytes received and not yet read."""
        return self._buffered

    @property
    def paused(self) -> bool:
        """Reading is paused until the consumer catches up."""
        return self._paused

    def received_all(self) -> bool:
        """The parser has seen the body's end (read or not)."""
        return self._eof

    def is_eof(self) -> bool:
        return self._eof and not self._buffer

    def __aiter__(self) -> RequestBody:
        return self

    async def __anext__(self) -> bytes:
        chunk = await self.read_chunk()
        if not chunk:
            raise StopAsyncIteration
        return chunk

    async def read_chunk(self) -> bytes:
        """The next chunk, b"" at the end of the body."""
        announce = self._on_first_read
        if announce is not None:
            self._on_first_read = None
            announce()
        while not self._buffer:
            if self._error is not None:
                raise self._error
            if self._eof:
                return b""
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        chunk = self._buffer.popleft()
        self._buffered -= len(chunk)
        if self._paused and self._buffered <= BODY_HIGH_WATER // 4:
            self._paused = False
            self._transport.resume_reading()
        return chunk


NO_BODY = RequestBody.ended()  # shared by every request without a body


class Request:
    """One parsed request; `respond` writes the answer on its connection."""

    __slots__ = (
        "body",
        "chunked",
        "content_length",
        "headers",
        "keep_alive",
        "largest_field",
        "method",
        "raw_path",
        "respond",
        "transport",
        "version",
    )

    def __init__(
        self,
        method: str,
        raw_path: str,
        version: str,
        headers: CIMultiDictProxy[str],
        transport: asyncio.Transport,
        respond: Callable[[Response], Awaitable[int]],
        *,
        keep_alive: bool = True,
        largest_field: int = 0,
    ) -> None:
        self.method = method
        self.raw_path = raw_path
        self.version = version
        self.headers = headers
        self.transport = transport
        # Write the answer (once); the number of body bytes written.
        self.respond = respond
        self.keep_alive = keep_alive
        self.largest_field = largest_field  # the longest header name + value, in bytes
        # A body, when the head announced one (the server sets these).
        self.body = NO_BODY
        self.content_length: int | None = None
        self.chunked = False

    @property
    def body_exists(self) -> bool:
        return self.chunked or bool(self.content_length)

    @property
    def host(self) -> str:
        return self.headers.get("Host", "")

    @property
    def path(self) -> str:
        """The target without its query (which may hold secrets)."""
        return self.raw_path.partition("?")[0]
