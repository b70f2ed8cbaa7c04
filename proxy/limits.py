"""Limits that keep a misbehaving or hostile client from exhausting the proxy.

- Connections: at most `max_connections` at once per listener; one more is
  answered at once with a fixed 503 `too_many_connections` and closed, before
  anything of it is parsed.
- Slow clients: `client_timeout` bounds an idle keep-alive connection and
  the time to send a complete request head (the timer runs from the
  connection's start and from the last answer, and is not extended by
  trickled bytes; http_server.py), and a request body that makes no
  progress for that long ends with 408 `request_timeout`.
- Sizes: the proxy answers over-long targets and header fields with its own
  JSON 400 (`target.MAX_TARGET`, `server.max_header_size`, checked with the
  request's other rules); the parser's hard limits sit at twice those and
  answer the same JSON 400 before buffering more — neither is forwarded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import cast

import structlog

from .config import ServerConfig
from .errors import Refused
from .messages import RequestBody
from .target import MAX_TARGET

log = structlog.get_logger("proxy.limits")

MAX_HEADER_FIELDS = 128
_REFUSAL_LINGER = 5.0  # seconds to drain a refused client's bytes before closing


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """What the HTTP server enforces while parsing (http_server.py)."""

    client_timeout: float
    max_field_size: int  # hard limit, name + value bytes
    max_target: int  # hard limit, bytes
    max_fields: int = MAX_HEADER_FIELDS

    @classmethod
    def from_config(cls, server: ServerConfig) -> ServerLimits:
        return cls(
            client_timeout=server.client_timeout,
            max_field_size=2 * server.max_header_size,
            max_target=2 * MAX_TARGET,
        )


def _refusal_bytes() -> bytes:
    body = json.dumps(
        {
            "error": "too_many_connections",
            "error_description": "the proxy has too many open connections; retry shortly",
        }
    ).encode()
    head = (
        "HTTP/1.1 503 Service Unavailable\r\n"
        "Content-Type: application/json\r\n"
        "X-Tower-Proxy-Error: too_many_connections\r\n"
        "Retry-After: 1\r\n"
        "Cache-Control: no-store\r\n"
        "Connection: close\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


_REFUSAL = _refusal_bytes()


class ConnectionGate:
    """Counts live connections; beyond the limit, a connection gets a refusal instead.

    The HTTP server asks `admit()` for each new connection and calls
    `release()` when an admitted one ends.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.active = 0
        self.refused = 0

    def admit(self) -> asyncio.Protocol | None:
        """None: counted, serve it; else the protocol that answers 503 and closes."""
        if self.active >= self.limit:
            self.refused += 1
            if self.refused % 100 == 1:  # a flood must not flood the log too
                log.warning("too_many_connections", limit=self.limit, refused=self.refused)
            return _Refusal()
        self.active += 1
        return None

    def release(self) -> None:
        self.active -= 1


class _Refusal(asyncio.Protocol):
    """Answers 503 at once, half-closes, discards the request, then closes.

    Closing with unread request bytes would make the kernel send a reset,
    and the client could lose the 503 before reading it.
    """

    def __init__(self) -> None:
        self._transport: asyncio.BaseTransport | None = None
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        stream = cast(asyncio.Transport, transport)
        stream.write(_REFUSAL)
        if stream.can_write_eof():
            stream.write_eof()
        self._timer = asyncio.get_running_loop().call_later(_REFUSAL_LINGER, transport.close)

    def data_received(self, data: bytes) -> None:
        pass  # the request is not read: nothing of it is parsed or logged

    def eof_received(self) -> bool | None:
        if self._transport is not None:
            self._transport.close()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()


@contextlib.asynccontextmanager
async def progress_deadline(stream: RequestBody, seconds: float) -> AsyncIterator[None]:
    """Refuse with `request_timeout` when `stream` receives nothing for `seconds`."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(None) as deadline:
            watch = _ProgressWatch(stream, deadline, seconds, loop)
            try:
                yield
            finally:
                watch.cancel()
    except TimeoutError:
        if deadline.expired():
            raise Refused(
                "request_timeout", f"the request body stalled for {seconds:g} s"
            ) from None
        raise


class _ProgressWatch:
    def __init__(
        self,
        stream: RequestBody,
        deadline: asyncio.Timeout,
        seconds: float,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self._stream = stream
        self._deadline = deadline
        self._seconds = seconds
        self._loop = loop
        self._seen = stream.total_bytes
        self._handle = loop.call_later(seconds, self._check)

    def _check(self) -> None:
        if self._stream.total_bytes == self._seen and not self._stream.is_eof():
            self._deadline.reschedule(self._loop.time())  # expire now
            return
        self._seen = self._stream.total_bytes
        self._handle = self._loop.call_later(self._seconds, self._check)

    def cancel(self) -> None:
        self._handle.cancel()
