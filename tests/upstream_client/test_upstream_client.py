"""The upstream client (proxy/upstream.py) against real loopback servers.

An aiohttp server stands for a well-behaved Tower (plain and TLS); a small
scripted asyncio server misbehaves on purpose (close-delimited bodies,
silence, drops, garbage); a small CONNECT proxy stands for the corporate
egress proxy.  Every async test runs on the default event loop and on uvloop
(conftest.py).
"""

from __future__ import annotations

import asyncio
import functools
import socket
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
import trustme
import uvloop
from aiohttp import web
from aiohttp.test_utils import TestServer

from proxy.upstream import (
    HIGH_WATER,
    READ_SIZE,
    BrokenResponse,
    ConnectFailed,
    ConnectionLost,
    Origin,
    UpstreamError,
    UpstreamPool,
    UpstreamResponse,
    UpstreamTimeout,
)

JSON = b'{"data":{"type":"projects","id":"p1"}}'
TOKEN = "sekrit-access-token-5f3a9c"  # must never show up in an exception message
BIG = 64 * 1024 * 1024


# --- a well-behaved Tower (aiohttp)


@dataclass
class Tower:
    server: TestServer
    peers: list[tuple[str, int]] = field(default_factory=list)  # the client address per request
    headers: list[dict[str, str]] = field(default_factory=list)
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    gate_size: int = 0
    waiting: int = 0

    @property
    def origin(self) -> Origin:
        assert self.server.port is not None
        return Origin(self.server.scheme, "127.0.0.1", self.server.port)

    @property
    def connections(self) -> int:
        return len(set(self.peers))


def tower_app(tower: Tower) -> web.Application:
    @web.middleware
    async def record(request: web.Request, handler: Any) -> web.StreamResponse:
        assert request.transport is not None
        tower.peers.append(request.transport.get_extra_info("peername"))
        tower.headers.append(dict(request.headers))
        response: web.StreamResponse = await handler(request)
        return response

    async def json(request: web.Request) -> web.Response:
        return web.Response(body=JSON, content_type="application/json")

    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        seen = {k: request.headers.get(k, "-") for k in ("Content-Length", "Transfer-Encoding")}
        return web.Response(body=body, headers={f"X-Got-{k}": v for k, v in seen.items()})

    async def slow_echo(request: web.Request) -> web.Response:
        await asyncio.sleep(0.05)  # meanwhile aiohttp stops reading: the socket fills up
        return await echo(request)

    async def chunked(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for part in (b"one,", b"two,", b"three"):
            await response.write(part)
        await response.write_eof()
        return response

    async def status(request: web.Request) -> web.Response:
        return web.Response(status=int(request.match_info["code"]))

    async def big(request: web.Request) -> web.StreamResponse:
        block = bytes(range(256)) * 1024
        response = web.StreamResponse()
        response.content_length = BIG
        await response.prepare(request)
        for _ in range(BIG // len(block)):
            await response.write(block)
        await response.write_eof()
        return response

    async def gated(request: web.Request) -> web.Response:
        tower.waiting += 1
        if tower.waiting >= tower.gate_size:
            tower.gate.set()
        await tower.gate.wait()
        return web.Response(body=JSON)

    app = web.Application(middlewares=[record], client_max_size=2**24)
    app.router.add_get("/json", json)
    app.router.add_post("/echo", echo)
    app.router.add_post("/slow-echo", slow_echo)
    app.router.add_get("/chunked", chunked)
    app.router.add_get("/status/{code}", status)
    app.router.add_get("/big", big)
    app.router.add_get("/gated", gated)
    return app


async def start_tower(context: ssl.SSLContext | None = None) -> Tower:
    tower = Tower(server=None)  # type: ignore[arg-type]
    tower.server = TestServer(tower_app(tower), host="127.0.0.1")
    await tower.server.start_server(ssl=context)
    return tower


@pytest.fixture
async def tower() -> AsyncIterator[Tower]:
    started = await start_tower()
    yield started
    await started.server.close()


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
async def tls_tower(ca: trustme.CA) -> AsyncIterator[Tower]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    started = await start_tower(context)
    yield started
    await started.server.close()


def client_context(ca: trustme.CA | None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if ca is not None:
        ca.configure_trust(context)
    return context


# --- a scripted, misbehaving server (raw asyncio)


@dataclass
class Seen:
    method: str
    target: str
    head: bytes
    headers: dict[str, str]  # lower-case names
    body: bytes
    connection: int  # 1: the first connection the server accepted
    index: int  # 0: the first request on that connection


# Answers one request; returns whether to read another from the same connection.
Script = Callable[[Seen, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[bool]]


class RawServer:
    def __init__(self, script: Script) -> None:
        self.script = script
        self.connections = 0  # TCP connections accepted
        self.client_closes = 0  # connections the client closed (EOF or reset seen)
        self.requests: list[Seen] = []
        self._handlers: dict[asyncio.Task[None], asyncio.StreamWriter] = {}

    async def start(self) -> RawServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    @property
    def origin(self) -> Origin:
        return Origin("http", "127.0.0.1", self.port)

    async def stop(self) -> None:
        await stop_handlers(self._server, self._handlers)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = cast("asyncio.Task[None]", asyncio.current_task())
        self._handlers[task] = writer
        self.connections += 1
        number, index = self.connections, 0
        try:
            while (seen := await read_request(reader, number, index)) is not None:
                self.requests.append(seen)
                if not await self.script(seen, reader, writer):
                    self.client_closes += reader.at_eof()  # a script waited for the close
                    return
                index += 1
            self.client_closes += 1
        except (ConnectionError, asyncio.IncompleteReadError):
            self.client_closes += 1
        finally:
            writer.close()
            del self._handlers[task]


async def stop_handlers(
    server: asyncio.Server, handlers: dict[asyncio.Task[None], asyncio.StreamWriter]
) -> None:
    """Stop accepting, cut every connection, and let the handlers finish."""
    server.close()
    for writer in handlers.values():
        writer.transport.abort()
    if handlers:
        await asyncio.wait(list(handlers), timeout=1.0)
    for task in list(handlers):
        task.cancel()  # a straggler (Python 3.11 then logs a spurious error)


async def read_request(reader: asyncio.StreamReader, connection: int, index: int) -> Seen | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ")
    headers = dict(line.split(": ", 1) for line in lines[1:] if line)
    headers = {name.lower(): value for name, value in headers.items()}
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding") == "chunked":
        body = await read_chunked(reader)
    else:
        body = b""
    return Seen(method, target, head, headers, body, connection, index)


async def read_chunked(reader: asyncio.StreamReader) -> bytes:
    body = bytearray()
    while size := int((await reader.readuntil(b"\r\n")).strip(), 16):
        body += await reader.readexactly(size)
        await reader.readexactly(2)
    await reader.readexactly(2)
    return bytes(body)


def ok(body: bytes = b"ok", extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), extra, body)


async def answer(writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.write(data)
    await writer.drain()


async def always_ok(seen: Seen, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
    await answer(writer, b"" if seen.method == "HEAD" else ok())
    return True


async def silent(seen: Seen, reader: asyncio.StreamReader, writer: Any) -> bool:
    """Never answers: reads until the client closes."""
    await reader.read()
    return False


@pytest.fixture
async def raw() -> AsyncIterator[Callable[[Script], Awaitable[RawServer]]]:
    servers: list[RawServer] = []

    async def start(script: Script) -> RawServer:
        servers.append(await RawServer(script).start())
        return servers[-1]

    yield start
    for server in servers:
        await server.stop()


# --- a CONNECT-only egress proxy


class ConnectProxy:
    """Counts tunnels and records CONNECT heads; `refusal` is sent instead of a 200."""

    def __init__(self, refusal: bytes | None = None, *, silent: bool = False) -> None:
        self.refusal = refusal
        self.silent = silent
        self.heads: list[bytes] = []
        self.tunnels = 0
        self._handlers: dict[asyncio.Task[None], asyncio.StreamWriter] = {}

    async def start(self) -> ConnectProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.origin = Origin("http", "127.0.0.1", self._server.sockets[0].getsockname()[1])
        return self

    async def stop(self) -> None:
        await stop_handlers(self._server, self._handlers)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = cast("asyncio.Task[None]", asyncio.current_task())
        self._handlers[task] = writer
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            self.heads.append(head)
            if self.silent:
                await reader.read()
            elif self.refusal is not None:
                await answer(writer, self.refusal)
            else:
                await self._tunnel(head, reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            del self._handlers[task]

    async def _tunnel(
        self, head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        host, _, port = head.split(b" ")[1].decode().rpartition(":")
        up_reader, up_writer = await asyncio.open_connection(host, int(port))
        self.tunnels += 1
        await answer(writer, b"HTTP/1.1 200 Connection established\r\n\r\n")
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


@pytest.fixture
async def proxies() -> AsyncIterator[Callable[..., Awaitable[ConnectProxy]]]:
    started: list[ConnectProxy] = []

    async def start(refusal: bytes | None = None, *, silent: bool = False) -> ConnectProxy:
        started.append(await ConnectProxy(refusal, silent=silent).start())
        return started[-1]

    yield start
    for proxy in started:
        await proxy.stop()


# --- pools and helpers


@pytest.fixture
async def pools() -> AsyncIterator[Callable[..., UpstreamPool]]:
    made: list[UpstreamPool] = []

    def make(origin: Origin, **options: Any) -> UpstreamPool:
        options.setdefault("ssl", None)
        options.setdefault("connect_timeout", 2.0)
        options.setdefault("read_timeout", 5.0)
        made.append(UpstreamPool(origin, **options))
        return made[-1]

    yield make
    for pool in made:
        await pool.close()


async def fetch(
    pool: UpstreamPool, method: str = "GET", target: str = "/json", **options: Any
) -> tuple[UpstreamResponse, bytes]:
    response = await pool.request(method, target, options.pop("headers", ()), **options)
    try:
        body = b"".join([chunk async for chunk in response])
    finally:
        response.release()
    return response, body


async def eventually(condition: Callable[[], bool], within: float = 2.0) -> None:
    async with asyncio.timeout(within):
        while not condition():
            await asyncio.sleep(0.005)


async def stream(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        await asyncio.sleep(0)
        yield part


def refused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- origins


def test_origin_from_url_takes_default_ports_and_brackets_ipv6() -> None:
    """Default ports fill in; host_header drops them and brackets an IPv6 host."""
    tower_origin = Origin.from_url("https://Tower.IM/api/v1")
    assert tower_origin == Origin("https", "tower.im", 443)
    assert tower_origin.host_header == "tower.im"
    assert Origin.from_url("http://[::1]:8080/x").host_header == "[::1]:8080"
    assert Origin.from_url("http://127.0.0.1/").port == 80
    with pytest.raises(ValueError):
        Origin.from_url("ftp://tower.im/")


# --- requests and keep-alive


async def test_twenty_sequential_gets_use_one_connection(tower: Tower, pools: Any) -> None:
    """Small JSON GETs reuse one kept-alive connection."""
    pool = pools(tower.origin)
    for _ in range(20):
        response, body = await fetch(pool)
        assert (response.status, response.reason, body) == (200, "OK", JSON)
        assert response.content_length == len(JSON)
        assert response.headers["content-type"] == "application/json"
        assert response.complete
    assert (len(tower.peers), tower.connections, pool.idle_count) == (20, 1, 1)


async def test_request_head_is_byte_exact(raw: Any, pools: Any) -> None:
    """Host first, the caller's headers in order, Content-Length last; target untouched."""
    server = await raw(always_ok)
    pool = pools(server.origin)
    headers = [("X-B", "2"), ("Accept", "*/*"), ("X-A", "1")]
    await fetch(pool, "POST", "/api/v1/x?y=z&q=%20%2F", headers=headers, body=b"hello")
    assert server.requests[0].head == (
        b"POST /api/v1/x?y=z&q=%%20%%2F HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
        b"X-B: 2\r\nAccept: */*\r\nX-A: 1\r\nContent-Length: 5\r\n\r\n" % server.port
    )
    assert server.requests[0].body == b"hello"


@pytest.mark.parametrize("where", ["method", "target", "name", "value", "last value"])
@pytest.mark.parametrize("bad", ["\r", "\n", "\r\n", "\u20ac"])
async def test_cr_lf_or_non_latin1_anywhere_in_the_head_is_refused(
    raw: Any, pools: Any, where: str, bad: str
) -> None:
    """Header injection through any part the caller gives: ValueError, nothing sent."""
    server = await raw(always_ok)
    pool = pools(server.origin)
    method, target = "GET", "/json"
    headers = [("Accept", "*/*"), ("X-Request-ID", "r1")]
    if where == "method":
        method += bad
    elif where == "target":
        target += bad + "X-Evil: 1"
    elif where == "name":
        headers[0] = (f"X{bad}Evil", "1")
    else:
        index = 0 if where == "value" else -1
        headers[index] = (headers[index][0], f"v{bad}X-Evil: 1")
    with pytest.raises(ValueError):
        await pool.request(method, target, headers, b"body" if where == "target" else None)
    assert server.connections == 0
    _, body = await fetch(pool, headers=[("Tab", "a\tb"), ("Latin-1", "caf\u00e9")])
    assert body == b"ok"
    assert server.requests[0].headers["latin-1"] == "caf\u00e9"


class CountingTransport:
    """Wraps a transport to count its write calls (a spy, not a fake: bytes still flow)."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.writes = 0
        self.buffered: list[int] = []  # the write buffer's size after each write

    def write(self, data: bytes) -> None:
        self.writes += 1
        self.transport.write(data)
        self.buffered.append(self.transport.get_write_buffer_size())

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


async def test_head_and_small_body_go_out_in_one_write(tower: Tower, pools: Any) -> None:
    """One transport.write per small request, body included."""
    pool = pools(tower.origin)
    assert await pool.warm(1.0)
    conn = pool._idle[0]
    spy = conn.transport = CountingTransport(conn.transport)
    response, body = await fetch(pool, "POST", "/echo", body=b'{"a": 1}')
    assert (response.status, body, spy.writes) == (200, b'{"a": 1}', 1)


async def test_post_bytes_bodies_arrive_intact(tower: Tower, pools: Any) -> None:
    """Small and large bytes bodies go with a Content-Length."""
    pool = pools(tower.origin)
    for payload in (b"x" * 10, bytes(range(256)) * 1024):
        response, body = await fetch(pool, "POST", "/echo", body=payload)
        assert body == payload
        assert response.headers["X-Got-Content-Length"] == str(len(payload))
        assert response.headers["X-Got-Transfer-Encoding"] == "-"
    assert tower.connections == 1


async def test_streamed_body_without_length_is_sent_chunked(tower: Tower, pools: Any) -> None:
    """An async-iterable body is chunked, empty pieces skipped, megabytes intact."""
    pool = pools(tower.origin)
    parts = [b"first,", b"", *[bytes([i]) * 65536 for i in range(48)], b"last"]
    response, body = await fetch(pool, "POST", "/echo", body=stream(*parts))
    assert body == b"".join(parts)
    assert response.headers["X-Got-Transfer-Encoding"] == "chunked"
    assert response.headers["X-Got-Content-Length"] == "-"


async def test_streamed_body_with_length_is_sent_as_is(tower: Tower, pools: Any) -> None:
    """content_length turns a streamed body into a Content-Length one."""
    pool = pools(tower.origin)
    response, body = await fetch(
        pool, "POST", "/echo", body=stream(b"abc", b"defg"), content_length=7
    )
    assert body == b"abcdefg"
    assert response.headers["X-Got-Content-Length"] == "7"
    assert response.headers["X-Got-Transfer-Encoding"] == "-"


async def test_streamed_body_waits_for_the_transport_to_drain(tower: Tower, pools: Any) -> None:
    """A server that reads slowly: no piece is written while the transport is paused."""
    pool = pools(tower.origin)
    assert await pool.warm(1.0)
    conn = pool._idle[0]
    spy = conn.transport = CountingTransport(conn.transport)
    piece = b"z" * 65536
    pieces = 12 * 16  # 12 MiB, more than loopback socket buffers take at once
    response, echoed = await fetch(pool, "POST", "/slow-echo", body=stream(*[piece] * pieces))
    assert (response.status, len(echoed), spy.writes) == (200, pieces * len(piece), pieces + 2)
    high = spy.get_write_buffer_limits()[1]
    assert max(spy.buffered) > high  # the socket did fill up, and yet ...
    assert max(spy.buffered) <= high + len(piece) + 16  # ... never a piece past a pause


async def test_sixteen_concurrent_requests_open_sixteen_connections(
    tower: Tower, pools: Any
) -> None:
    """16 requests in flight at once: 16 connections, all idle afterwards and reused."""
    pool = pools(tower.origin)
    tower.gate_size = 16
    first = await asyncio.gather(*[fetch(pool, target="/gated") for _ in range(16)])
    assert [body for _, body in first] == [JSON] * 16
    assert (tower.connections, pool.idle_count) == (16, 16)
    await asyncio.gather(*[fetch(pool) for _ in range(16)])
    assert (len(tower.peers), tower.connections, pool.idle_count) == (32, 16, 16)


async def test_chunked_response_is_dechunked_and_reused(tower: Tower, pools: Any) -> None:
    """A chunked body arrives whole, without a content_length, and the connection stays."""
    pool = pools(tower.origin)
    for _ in range(2):
        response, body = await fetch(pool, target="/chunked")
        assert (body, response.content_length, response.complete) == (b"one,two,three", None, True)
    assert (tower.connections, pool.idle_count) == (1, 1)


async def test_close_delimited_response_is_read_to_eof_and_not_reused(raw: Any, pools: Any) -> None:
    """No Content-Length, not chunked: the body runs to the close; no reuse."""

    async def until_close(seen: Seen, reader: Any, writer: asyncio.StreamWriter) -> bool:
        await answer(writer, b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nhello ")
        await answer(writer, b"world")
        return False

    server = await raw(until_close)
    pool = pools(server.origin)
    for _ in range(2):
        response, body = await fetch(pool)
        assert (body, response.content_length, response.complete) == (b"hello world", None, True)
    assert (server.connections, pool.idle_count) == (2, 0)


@pytest.mark.parametrize(
    "status_line, extra",
    [
        (b"HTTP/1.1 200 OK", b"Connection: close\r\n"),
        (b"HTTP/1.0 200 OK", b"Connection: keep-alive\r\n"),
        (b"HTTP/1.0 200 OK", b""),
    ],
)
async def test_answers_that_end_the_connection_are_not_reused(
    raw: Any, pools: Any, status_line: bytes, extra: bytes
) -> None:
    """Connection: close, and any HTTP/1.0 answer: the client closes after the body."""

    async def answer_once(seen: Seen, reader: asyncio.StreamReader, writer: Any) -> bool:
        await answer(writer, status_line + b"\r\nContent-Length: 2\r\n" + extra + b"\r\nok")
        return True

    server = await raw(answer_once)
    pool = pools(server.origin)
    for _ in range(2):
        _, body = await fetch(pool)
        assert body == b"ok"
    assert (server.connections, pool.idle_count) == (2, 0)
    await eventually(lambda: server.client_closes == 2)


KEPT_ALIVE = b" 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok"
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


@pytest.mark.parametrize(
    "parts, reused",
    [
        ([b"HTTP/1.", b"1" + KEPT_ALIVE], True),
        ([b"HTTP/1.", b"0" + KEPT_ALIVE], False),
        ([CONTINUE, b"HTTP/1.0" + KEPT_ALIVE], False),
        ([CONTINUE + b"HTTP/1.0" + KEPT_ALIVE], False),
        ([CONTINUE + b"HTTP/1.1" + KEPT_ALIVE], True),
    ],
)
async def test_the_version_of_the_final_head_decides_reuse(
    raw: Any, pools: Any, parts: list[bytes], reused: bool
) -> None:
    """HTTP/1.1 is reused and 1.0 is not, however the status lines are cut across reads."""

    async def in_parts(seen: Seen, reader: Any, writer: asyncio.StreamWriter) -> bool:
        for part in parts:
            await answer(writer, part)
            await asyncio.sleep(0.02)
        return True

    server = await raw(in_parts)
    pool = pools(server.origin)
    _, body = await fetch(pool)
    assert (body, pool.idle_count) == (b"ok", int(reused))


async def test_read_returns_at_most_limit_bytes(raw: Any, pools: Any) -> None:
    """read(limit) splits a buffered chunk and returns b"" at the end."""
    server = await raw(always_ok)
    pool = pools(server.origin)
    response = await pool.request("GET", "/", [])
    assert [await response.read(1), await response.read(5), await response.read(5)] == [
        b"o",
        b"k",
        b"",
    ]
    assert pool.idle_count == 1


async def test_body_if_complete_hands_over_a_small_body_that_came_with_its_head(
    raw: Any, pools: Any
) -> None:
    """The whole body at once, consumed: read() is at the end, the connection is pooled."""
    server = await raw(always_ok)
    pool = pools(server.origin)
    response = await pool.request("GET", "/", [])
    assert response.body_if_complete(2) == b"ok"
    assert (await response.read(10), pool.idle_count) == (b"", 1)
    response.release()
    assert pool.idle_count == 1
    _, body = await fetch(pool)
    assert (body, server.connections) == (b"ok", 1)


async def test_body_if_complete_joins_the_rest_of_a_chunked_body(raw: Any, pools: Any) -> None:
    """Several chunks come back joined; what read() took already is not repeated."""

    async def chunked(seen: Seen, reader: Any, writer: asyncio.StreamWriter) -> bool:
        head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        await answer(writer, head + b"4\r\none,\r\n4\r\ntwo,\r\n5\r\nthree\r\n0\r\n\r\n")
        return True

    server = await raw(chunked)
    pool = pools(server.origin)
    response = await pool.request("GET", "/", [])
    await eventually(lambda: response.complete)
    assert await response.read(2) == b"on"
    assert response.body_if_complete(11) == b"e,two,three"
    assert (response.body_if_complete(0), await response.read(1)) == (b"", b"")
    assert pool.idle_count == 1


async def test_body_if_complete_consumes_nothing_when_it_declines(raw: Any, pools: Any) -> None:
    """Over the limit, or not all there yet: None, and reading still gets every byte."""

    async def in_two_parts(seen: Seen, reader: Any, writer: asyncio.StreamWriter) -> bool:
        await answer(writer, b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n01234")
        await asyncio.sleep(0.05)
        await answer(writer, b"56789")
        return True

    server = await raw(in_two_parts)
    pool = pools(server.origin)
    response = await pool.request("GET", "/", [])
    assert response.body_if_complete(100) is None  # half of it has arrived
    await eventually(lambda: response.complete)
    assert response.body_if_complete(9) is None  # all there, one byte too many
    assert pool.idle_count == 0
    assert b"".join([chunk async for chunk in response]) == b"0123456789"
    assert pool.idle_count == 1


async def test_body_not_matching_content_length_is_refused(tower: Tower, pools: Any) -> None:
    """A streamed body longer or shorter than content_length: ValueError, connection closed."""
    pool = pools(tower.origin)
    with pytest.raises(ValueError, match="longer"):
        await pool.request("POST", "/echo", [], stream(b"abcd"), content_length=3)
    with pytest.raises(ValueError, match="shorter"):
        await pool.request("POST", "/echo", [], stream(b"ab"), content_length=3)
    with pytest.raises(ValueError, match="differs"):
        await pool.request("POST", "/echo", [], b"ab", content_length=3)
    assert pool.idle_count == 0
    _, body = await fetch(pool, "POST", "/echo", body=b"fine")
    assert body == b"fine"


async def test_head_response_has_no_body_and_keeps_the_connection(tower: Tower, pools: Any) -> None:
    """HEAD: Content-Length is reported, no body is waited for, the next GET works."""
    pool = pools(tower.origin)
    response, body = await fetch(pool, "HEAD", "/json")
    assert (response.status, body, response.complete) == (200, b"", True)
    assert response.content_length == len(JSON)
    _, body = await fetch(pool)
    assert body == JSON
    assert (tower.connections, pool.idle_count) == (1, 1)


async def test_body_bytes_after_a_head_response_close_the_connection(raw: Any, pools: Any) -> None:
    """A server that sends a body to HEAD gets its connection closed, not reused."""

    async def head_with_body(seen: Seen, reader: Any, writer: asyncio.StreamWriter) -> bool:
        await answer(writer, ok(b"oops"))
        return True

    server = await raw(head_with_body)
    pool = pools(server.origin)
    response, body = await fetch(pool, "HEAD", "/")
    assert (response.status, body) == (200, b"")
    await eventually(lambda: server.client_closes == 1)
    assert pool.idle_count == 0


@pytest.mark.parametrize("code", [204, 304])
async def test_no_content_and_not_modified_have_no_body(
    tower: Tower, pools: Any, code: int
) -> None:
    """204 and 304 end at their head; the connection is reused."""
    pool = pools(tower.origin)
    for _ in range(2):
        response, body = await fetch(pool, target=f"/status/{code}")
        assert (response.status, body, response.complete) == (code, b"", True)
    assert (tower.connections, pool.idle_count) == (1, 1)


async def test_interim_responses_are_skipped(raw: Any, pools: Any) -> None:
    """100 Continue and 103 Early Hints before the final head are not returned."""

    async def interim(seen: Seen, reader: Any, writer: asyncio.StreamWriter) -> bool:
        await answer(writer, b"HTTP/1.1 100 Continue\r\n\r\n")
        await answer(writer, b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + ok())
        return True

    server = await raw(interim)
    pool = pools(server.origin)
    response, body = await fetch(pool)
    assert (response.status, body, "Link" in response.headers) == (200, b"ok", False)
    assert pool.idle_count == 1


# --- closes, drops and fresh connections


async def test_idle_connection_closed_by_server_leaves_the_pool(raw: Any, pools: Any) -> None:
    """A close seen on an idle connection drops it; the next request opens a new one."""

    async def answer_then_close(seen: Seen, reader: Any, writer: asyncio.StreamWriter) -> bool:
        await answer(writer, ok())
        await asyncio.sleep(0.02)
        return False

    server = await raw(answer_then_close)
    pool = pools(server.origin)
    await fetch(pool)
    assert pool.idle_count == 1
    await eventually(lambda: pool.idle_count == 0)
    _, body = await fetch(pool)
    assert (body, server.connections) == (b"ok", 2)


async def test_reused_connection_dropped_unanswered_is_connection_lost(
    raw: Any, pools: Any
) -> None:
    """A pooled connection the server drops on receiving the request: ConnectionLost(reused)."""

    async def drop_second(seen: Seen, reader: Any, writer: asyncio.StreamWriter) -> bool:
        if seen.index == 1:
            writer.transport.abort()
            return False
        await answer(writer, ok())
        return True

    server = await raw(drop_second)
    pool = pools(server.origin)
    await fetch(pool)
    with pytest.raises(ConnectionLost) as lost:
        await pool.request("GET", "/again", [])
    assert lost.value.reused is True
    assert pool.idle_count == 0
    _, body = await fetch(pool, fresh=True)  # the caller's one retry
    assert (body, server.connections, len(server.requests)) == (b"ok", 2, 3)


async def test_new_connection_dropped_unanswered_is_not_reused(raw: Any, pools: Any) -> None:
    """A drop on a brand-new connection says reused=False; nothing is resent."""

    async def drop(seen: Seen, reader: Any, writer: asyncio.StreamWriter) -> bool:
        writer.transport.abort()
        return False

    server = await raw(drop)
    pool = pools(server.origin)
    with pytest.raises(ConnectionLost) as lost:
        await pool.request("POST", "/x", [], b"data")
    assert lost.value.reused is False
    await asyncio.sleep(0.05)
    assert (server.connections, len(server.requests)) == (1, 1)


async def test_fresh_request_never_reuses_and_is_not_pooled(raw: Any, pools: Any) -> None:
    """fresh=True opens its own connection and closes it afterwards."""
    server = await raw(always_ok)
    pool = pools(server.origin)
    await fetch(pool)
    _, body = await fetch(pool, fresh=True)
    assert (body, server.connections, pool.idle_count) == (b"ok", 2, 1)
    await eventually(lambda: server.client_closes == 1)
    await fetch(pool)
    assert [seen.connection for seen in server.requests] == [1, 2, 1]


async def test_warm_opens_one_idle_connection_the_next_request_uses(raw: Any, pools: Any) -> None:
    """warm() connects without sending anything; the request then rides that connection."""
    server = await raw(always_ok)
    pool = pools(server.origin)
    assert await pool.warm(1.0)
    assert (pool.idle_count, server.connections, len(server.requests)) == (1, 1, 0)
    await fetch(pool)
    assert (server.connections, len(server.requests)) == (1, 1)
    assert not await pools(Origin("http", "127.0.0.1", refused_port())).warm(1.0)


async def test_most_recently_used_connection_is_reused_first(raw: Any, pools: Any) -> None:
    """LIFO: of two idle connections the newer one serves the next requests."""
    server = await raw(always_ok)
    pool = pools(server.origin)
    assert await pool.warm(1.0) and await pool.warm(1.0)
    await fetch(pool)
    await fetch(pool)
    assert [seen.connection for seen in server.requests] == [2, 2]


async def test_expired_idle_connection_is_closed_not_reused(raw: Any, pools: Any) -> None:
    """An idle connection older than keepalive is closed on the next acquire."""
    server = await raw(always_ok)
    pool = pools(server.origin, keepalive=0.05)
    await fetch(pool)
    await asyncio.sleep(0.1)
    await fetch(pool)
    assert [seen.connection for seen in server.requests] == [1, 2]
    await eventually(lambda: server.client_closes == 1)
    assert pool.idle_count == 1


# --- timeouts and broken answers


async def test_silent_server_is_a_read_timeout(raw: Any, pools: Any) -> None:
    """No head within read_timeout: UpstreamTimeout (a TimeoutError); the connection closes."""
    server = await raw(silent)
    pool = pools(server.origin, read_timeout=0.2)
    started = time.monotonic()
    with pytest.raises(UpstreamTimeout) as timeout:
        await pool.request("GET", "/json", [])
    assert 0.15 < time.monotonic() - started < 1.5
    assert isinstance(timeout.value, TimeoutError)
    await eventually(lambda: server.client_closes == 1)
    assert pool.idle_count == 0


async def test_silence_mid_body_is_a_read_timeout(raw: Any, pools: Any) -> None:
    """A body that stops arriving raises UpstreamTimeout from read()."""

    async def stall(seen: Seen, reader: asyncio.StreamReader, writer: Any) -> bool:
        await answer(writer, b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
        await reader.read()
        return False

    server = await raw(stall)
    pool = pools(server.origin, read_timeout=0.2)
    response = await pool.request("GET", "/json", [])
    assert await response.read(100) == b"0123456789"
    with pytest.raises(UpstreamTimeout):
        await response.read(100)
    response.release()
    await eventually(lambda: server.client_closes == 1)


async def test_connection_dying_mid_body_is_broken_response(raw: Any, pools: Any) -> None:
    """A close before Content-Length bytes arrived: BrokenResponse while iterating."""

    async def cut(seen: Seen, reader: Any, writer: asyncio.StreamWriter) -> bool:
        await answer(writer, b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
        return False

    server = await raw(cut)
    pool = pools(server.origin)
    response = await pool.request("GET", "/json", [])
    with pytest.raises(BrokenResponse):
        async for _ in response:
            pass
    assert (response.complete, pool.idle_count) == (False, 0)


async def test_malformed_response_is_broken_response(raw: Any, pools: Any) -> None:
    """A head llhttp rejects raises BrokenResponse from request()."""

    async def garbage(seen: Seen, reader: Any, writer: asyncio.StreamWriter) -> bool:
        await answer(writer, b"HTTP/1.1 200 OK\r\nBroken Header\r\n\r\n")
        await reader.read()
        return False

    server = await raw(garbage)
    pool = pools(server.origin)
    with pytest.raises(BrokenResponse):
        await pool.request("GET", "/json", [])
    await eventually(lambda: server.client_closes == 1)


async def test_refused_connect_is_connect_failed(pools: Any) -> None:
    """Nobody listening: ConnectFailed naming the origin."""
    port = refused_port()
    pool = pools(Origin("http", "127.0.0.1", port))
    with pytest.raises(ConnectFailed, match=f"127.0.0.1:{port}"):
        await pool.request("GET", "/json", [])


async def test_slow_connect_is_upstream_timeout(proxies: Any, pools: Any) -> None:
    """A tunnel that never answers CONNECT: UpstreamTimeout after connect_timeout."""
    proxy = await proxies(silent=True)
    pool = pools(Origin("http", "127.0.0.1", 9), tunnel=(proxy.origin, {}), connect_timeout=0.2)
    with pytest.raises(UpstreamTimeout) as timeout:
        await pool.request("GET", "/json", [])
    assert isinstance(timeout.value, TimeoutError)


# --- flow control and cancellation


async def test_large_download_buffers_a_bounded_amount(tower: Tower, pools: Any) -> None:
    """64 MiB to a slow consumer: reading pauses, the buffer peaks within its bound."""
    pool = pools(tower.origin)
    response = await pool.request("GET", "/big", [])
    received = chunks = 0
    async for chunk in response:
        received += len(chunk)
        chunks += 1
        if chunks % 8 == 0:
            await asyncio.sleep(0.001)  # slower than loopback
    assert (received, response.complete) == (BIG, True)
    assert HIGH_WATER <= response._peak <= HIGH_WATER + READ_SIZE
    assert (tower.connections, pool.idle_count) == (1, 1)


async def test_cancelling_mid_body_closes_the_connection(raw: Any, pools: Any) -> None:
    """A consumer cancelled while waiting for body bytes: the server sees the close."""

    async def dribble(seen: Seen, reader: asyncio.StreamReader, writer: Any) -> bool:
        await answer(writer, b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789")
        await reader.read()
        return False

    server = await raw(dribble)
    pool = pools(server.origin)
    response = await pool.request("GET", "/json", [])
    assert await response.read(1000) == b"0123456789"
    reading = asyncio.ensure_future(response.read(1000))
    await asyncio.sleep(0.02)
    reading.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reading
    await eventually(lambda: server.client_closes == 1)
    response.release()
    assert pool.idle_count == 0


async def test_cancelling_before_the_head_closes_the_connection(raw: Any, pools: Any) -> None:
    """A request cancelled while waiting for the head: closed, never pooled."""
    server = await raw(silent)
    pool = pools(server.origin)
    requesting = asyncio.ensure_future(pool.request("GET", "/json", []))
    await eventually(lambda: len(server.requests) == 1)
    requesting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await requesting
    await eventually(lambda: server.client_closes == 1)
    assert pool.idle_count == 0


async def test_abandoned_body_closes_the_connection(raw: Any, pools: Any) -> None:
    """release() before the end of the body closes instead of pooling."""

    async def long_body(seen: Seen, reader: asyncio.StreamReader, writer: Any) -> bool:
        await answer(writer, b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789")
        await reader.read()
        return False

    server = await raw(long_body)
    pool = pools(server.origin)
    response = await pool.request("GET", "/json", [])
    response.release()
    response.release()
    await eventually(lambda: server.client_closes == 1)
    assert pool.idle_count == 0


# --- TLS and tunnels


async def test_https_requests_reuse_one_tls_connection(
    tls_tower: Tower, ca: trustme.CA, pools: Any
) -> None:
    """TLS to a loopback server with a test CA; one connection for three requests."""
    assert tls_tower.origin.scheme == "https"
    pool = pools(tls_tower.origin, ssl=client_context(ca))
    for _ in range(3):
        _, body = await fetch(pool)
        assert body == JSON
    assert (tls_tower.connections, pool.idle_count) == (1, 1)


async def test_untrusted_certificate_is_connect_failed(tls_tower: Tower, pools: Any) -> None:
    """A certificate from an unknown CA: ConnectFailed, nothing sent."""
    pool = pools(tls_tower.origin, ssl=client_context(None))
    with pytest.raises(ConnectFailed, match="CERTIFICATE_VERIFY_FAILED"):
        await pool.request("GET", "/json", [])
    assert tls_tower.peers == []


async def test_tunnel_carries_tls_and_is_opened_once(
    tls_tower: Tower, ca: trustme.CA, proxies: Any, pools: Any
) -> None:
    """CONNECT once, TLS inside, three requests; the proxy's credentials stay with it."""
    proxy = await proxies()
    tunnel = (proxy.origin, {"Proxy-Authorization": "Basic cHJveHk6cGFzcw=="})
    pool = pools(tls_tower.origin, ssl=client_context(ca), tunnel=tunnel)
    assert not await pool.warm(1.0)  # no warm-up through a tunnel
    for _ in range(3):
        _, body = await fetch(pool, headers=[("Authorization", f"Bearer {TOKEN}")])
        assert body == JSON
    authority = f"127.0.0.1:{tls_tower.origin.port}".encode()
    assert proxy.heads == [
        b"CONNECT %s HTTP/1.1\r\nHost: %s\r\nProxy-Authorization: Basic cHJveHk6cGFzcw==\r\n\r\n"
        % (authority, authority)
    ]
    assert (proxy.tunnels, tls_tower.connections) == (1, 1)
    assert all("Proxy-Authorization" not in seen for seen in tls_tower.headers)
    assert tls_tower.headers[0]["Authorization"] == f"Bearer {TOKEN}"


async def test_tunnel_refused_is_connect_failed_naming_only_the_status(
    proxies: Any, pools: Any
) -> None:
    """A 407 from the egress proxy: ConnectFailed with the status, no header values."""
    proxy = await proxies(
        b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic\r\n"
        b"X-Echo: Basic cHJveHk6cGFzcw==\r\nContent-Length: 0\r\n\r\n"
    )
    tunnel = (proxy.origin, {"Proxy-Authorization": "Basic cHJveHk6cGFzcw=="})
    pool = pools(Origin("https", "127.0.0.1", 9), ssl=client_context(None), tunnel=tunnel)
    with pytest.raises(ConnectFailed, match="407") as failed:
        await pool.request("GET", "/json", [("Authorization", f"Bearer {TOKEN}")])
    assert "cHJveHk6cGFzcw" not in str(failed.value)
    assert len(proxy.heads) == 1


# --- secrets and closing


def messages(error: BaseException | None) -> Iterator[str]:
    while error is not None:
        yield str(error)
        yield repr(error)
        error = error.__cause__ or error.__context__


async def test_header_values_never_appear_in_error_messages(raw: Any, pools: Any) -> None:
    """Whatever breaks, the token is in no message of the raised exception or its chain."""

    async def misbehave(seen: Seen, reader: asyncio.StreamReader, writer: Any) -> bool:
        echoed = seen.headers["authorization"].encode()
        if seen.target == "/drop":
            writer.transport.abort()
        elif seen.target == "/garbage":
            await answer(writer, b"HTTP/1.1 200 OK\r\nX-Echo " + echoed + b"\r\n\r\n")
        elif seen.target == "/cut":
            await answer(writer, b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n" + echoed)
            return False
        elif seen.target != "/silent":
            raise AssertionError(seen.target)
        await reader.read()
        return False

    server = await raw(misbehave)
    pool = pools(server.origin, read_timeout=0.2)
    headers = [("Authorization", f"Bearer {TOKEN}")]
    raised: list[BaseException] = []
    for target in ("/drop", "/garbage", "/silent", "/cut"):
        with pytest.raises(UpstreamError) as error:
            await fetch(pool, target=target, headers=headers)
        raised.append(error.value)
    assert [type(e) for e in raised] == [
        ConnectionLost,
        BrokenResponse,
        UpstreamTimeout,
        BrokenResponse,
    ]
    for bad in ([("X-Token", f"{TOKEN}\u20ac")], [("X-Token", f"{TOKEN}\r\nX-Evil: 1")]):
        with pytest.raises(ValueError) as invalid:
            await pool.request("GET", "/json", bad)
        raised.append(invalid.value)
    assert server.connections == 4  # nothing was sent for the invalid heads
    assert not [text for error in raised for text in messages(error) if TOKEN in text]


async def test_close_closes_connections_and_refuses_requests(raw: Any, pools: Any) -> None:
    """After close(): idle connections are closed and request() raises UpstreamError."""
    server = await raw(always_ok)
    pool = pools(server.origin)
    await asyncio.gather(fetch(pool), fetch(pool))
    assert pool.idle_count == 2
    await pool.close()
    assert pool.idle_count == 0
    await eventually(lambda: server.client_closes == 2)
    with pytest.raises(UpstreamError, match="closed"):
        await pool.request("GET", "/json", [])
    assert not await pool.warm(1.0)
    assert server.connections == 2


async def test_connection_limit_queues_requests_beyond_it(tower: Tower, pools: Any) -> None:
    """max_connections = 4 and 16 requests at once: never more than 4 connections; all answered."""
    pool = pools(tower.origin, max_connections=4)
    tower.gate_size = 4  # the first four hold their connections until all four are in
    answers = await asyncio.gather(*[fetch(pool, target="/gated") for _ in range(16)])
    assert [body for _, body in answers] == [JSON] * 16
    assert (len(tower.peers), tower.connections, pool.idle_count) == (16, 4, 4)


async def test_waiting_for_a_connection_is_bounded_by_the_connect_timeout(
    tower: Tower, pools: Any
) -> None:
    """All connections busy for longer than connect_timeout: UpstreamTimeout, nothing sent."""
    pool = pools(tower.origin, max_connections=1, connect_timeout=0.2)
    tower.gate_size = 2  # the first request waits at Tower until the gate is set by hand
    first = asyncio.create_task(fetch(pool, target="/gated"))
    await eventually(lambda: tower.waiting == 1)
    with pytest.raises(UpstreamTimeout, match="stayed busy"):
        await fetch(pool)
    assert len(tower.peers) == 1  # the second request never went out
    tower.gate.set()
    _, body = await first
    assert body == JSON


async def test_a_request_that_waited_for_a_connection_sends_the_after_wait_headers(
    tower: Tower, pools: Any
) -> None:
    """after_wait is asked only when no idle connection was at hand; its headers replace
    the first ones. Raising there returns the connection unused, for the next request."""
    pool = pools(tower.origin, max_connections=1)
    calls: list[str] = []

    async def again(value: str) -> list[tuple[str, str]]:
        calls.append(value)
        if value == "fail":
            raise RuntimeError("no credential")
        return [("X-Credential", value)]

    def sent(header: str) -> Any:
        return functools.partial(again, header)

    _, body = await fetch(pool, headers=[("X-Credential", "first")], after_wait=sent("new"))
    assert body == JSON  # no idle connection yet: it waited for a new one
    await fetch(pool, headers=[("X-Credential", "idle")], after_wait=sent("unused"))
    big = await pool.request("GET", "/big", ())
    waiting = asyncio.create_task(fetch(pool, after_wait=sent("fail")))
    await asyncio.sleep(0)  # queued behind the busy connection
    big.release()  # abandoned mid-body: closed, so the waiting request connects anew
    with pytest.raises(RuntimeError, match="no credential"):
        await waiting
    _, body = await fetch(pool, headers=[("X-Credential", "last")], after_wait=sent("unused"))
    assert body == JSON
    assert calls == ["new", "fail"]
    assert [h.get("X-Credential") for h in tower.headers] == ["new", "idle", None, "last"]
    # Two connections: the one /big left behind, then the one the failed request
    # opened and returned unused, which (idle, hence no after_wait) sent the last one.
    assert tower.connections == 2 and tower.peers[3] != tower.peers[0]


async def test_a_closed_connection_frees_its_place_for_a_waiting_request(
    tower: Tower, pools: Any
) -> None:
    """max_connections = 1: a response abandoned mid-body closes its connection, and the
    request waiting for a place gets a new one."""
    pool = pools(tower.origin, max_connections=1)
    big = await pool.request("GET", "/big", ())
    waiting = asyncio.create_task(fetch(pool))
    await asyncio.sleep(0)  # let it queue behind the busy connection
    assert not waiting.done()
    big.release()  # abandoned mid-body: aborted, not pooled
    _, body = await waiting
    assert body == JSON
    assert tower.connections == 2


# --- the two loops


async def test_each_test_here_runs_on_the_loop_named_in_its_id(
    request: pytest.FixtureRequest,
) -> None:
    loop = asyncio.get_running_loop()
    on_uvloop = isinstance(loop, uvloop.Loop)
    assert request.node.callspec.id in ("asyncio", "uvloop")
    assert on_uvloop == (request.node.callspec.id == "uvloop")
