"""The proxy's own HTTP/1.1 server (proxy/http_server.py) with a plain handler.

Real loopback connections and raw bytes: framing both ways, pipelining,
HTTP/1.0, 100-continue, flow control, failures before and after the head,
and shutdown.  The proxy's behaviour on top of it is tested elsewhere.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from multidict import CIMultiDict

from proxy.http_server import HttpServer
from proxy.limits import ServerLimits
from proxy.messages import BODY_HIGH_WATER, Request, Response

LIMITS = ServerLimits(client_timeout=5, max_field_size=32 * 1024, max_target=16000)


class Echo:
    """Answers with what it read; records what it saw."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, int]] = []
        self.peak_buffered = 0

    async def __call__(self, request: Request) -> None:
        size = 0
        async for chunk in request.body:
            size += len(chunk)
        self.seen.append((request.method, request.raw_path, size))
        text = f"{request.method} {request.raw_path} {size}".encode()
        await request.respond(Response(200, CIMultiDict({"X-Seen": "1"}), text))


Serve = Callable[[Callable[[Request], Awaitable[None]]], Awaitable[tuple[HttpServer, int]]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    servers: list[asyncio.Server] = []

    async def start(handler: Callable[[Request], Awaitable[None]]) -> tuple[HttpServer, int]:
        http = HttpServer(handler, LIMITS)
        server = await asyncio.get_running_loop().create_server(http, "127.0.0.1", 0)
        servers.append(server)
        return http, server.sockets[0].getsockname()[1]

    yield start
    for server in servers:
        server.close()


async def exchange(port: int, data: bytes, *, timeout: float = 10) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()


async def test_pipelined_requests_are_answered_in_order(serve: Serve):
    """Three requests in one write: three answers, in the order sent, then close."""
    echo = Echo()
    _, port = await serve(echo)
    data = (
        b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
        b"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
        b"GET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    answer = await exchange(port, data)
    assert answer.count(b"HTTP/1.1 200 OK\r\n") == 3
    assert answer.index(b"GET /a 0") < answer.index(b"POST /b 3") < answer.index(b"GET /c 0")
    assert echo.seen == [("GET", "/a", 0), ("POST", "/b", 3), ("GET", "/c", 0)]
    assert answer.count(b"Connection: close") == 1


async def test_chunked_request_body_is_read_whole(serve: Serve):
    """A chunked upload arrives dechunked; the answer has a Content-Length."""
    echo = Echo()
    _, port = await serve(echo)
    data = (
        b"PUT /u HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    )
    answer = await exchange(port, data)
    assert answer.endswith(b"PUT /u 11")
    assert b"Content-Length: 9\r\n" in answer


async def test_expect_100_continue_is_answered_when_the_body_is_read(serve: Serve):
    """`Expect: 100-continue`: the interim 100 comes before the final answer, once."""
    _, port = await serve(Echo())
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            b"POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n"
            b"Connection: close\r\n\r\n"
        )
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(b"data")
        rest = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    assert rest.startswith(b"HTTP/1.1 200 OK\r\n") and rest.endswith(b"POST /e 4")


async def test_streamed_answer_is_chunked_for_http11_and_close_delimited_for_http10(serve: Serve):
    """No known length: chunked framing to HTTP/1.1, the connection's end to HTTP/1.0."""

    async def stream(request: Request) -> None:
        async def parts() -> AsyncIterator[bytes]:
            for part in (b"one,", b"two,", b"three"):
                yield part

        await request.respond(Response(200, CIMultiDict(), parts()))

    _, port = await serve(stream)
    answer = await exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert b"Transfer-Encoding: chunked" in answer
    assert answer.endswith(b"4\r\none,\r\n4\r\ntwo,\r\n5\r\nthree\r\n0\r\n\r\n")
    old = await exchange(port, b"GET / HTTP/1.0\r\n\r\n")
    assert b"Transfer-Encoding" not in old and b"Connection: close" in old
    assert old.endswith(b"\r\n\r\none,two,three")


async def test_head_answer_has_length_but_no_body(serve: Serve):
    """HEAD: Content-Length of the body that GET would get, and not a byte of it."""
    _, port = await serve(Echo())
    answer = await exchange(port, b"HEAD /h HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert b"Content-Length: 9\r\n" in answer  # len("HEAD /h 0")
    assert answer.endswith(b"\r\n\r\n")


async def test_header_values_with_line_breaks_are_never_written(serve: Serve):
    """A value holding CR/LF (response splitting) is dropped, the rest of the answer stays."""

    async def splitting(request: Request) -> None:
        headers = CIMultiDict({"X-Ok": "fine", "X-Bad": "a\r\nSet-Cookie: evil=1"})
        await request.respond(Response(200, headers, b"ok"))

    _, port = await serve(splitting)
    answer = await exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert b"X-Ok: fine" in answer
    assert b"Set-Cookie" not in answer and b"X-Bad" not in answer


async def test_handler_failure_before_the_head_is_a_json_500(serve: Serve):
    """An exception before answering: the proxy's JSON 500, connection closed."""

    async def failing(request: Request) -> None:
        raise RuntimeError("boom")

    _, port = await serve(failing)
    answer = await exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 500 ")
    assert b"X-Tower-Proxy-Error: internal_error" in answer
    body = answer.partition(b"\r\n\r\n")[2]
    assert json.loads(body)["error"] == "internal_error"


async def test_stream_failure_after_the_head_cuts_the_connection(serve: Serve):
    """A body that fails mid-way: the head and the first chunk, then the connection ends
    without the chunked terminator, so the client cannot mistake it for a whole body."""

    async def broken(request: Request) -> None:
        async def parts() -> AsyncIterator[bytes]:
            yield b"first"
            raise ConnectionResetError("upstream went away")

        with pytest.raises(ConnectionResetError):
            await request.respond(Response(200, CIMultiDict(), parts()))

    _, port = await serve(broken)
    answer = await exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answer.endswith(b"5\r\nfirst\r\n")


async def test_a_fast_upload_to_a_slow_reader_is_held_at_the_high_water_mark(serve: Serve):
    """The server stops reading while the handler does not consume: bounded buffering."""
    peaks: list[int] = []
    release = asyncio.Event()

    async def slow(request: Request) -> None:
        await release.wait()
        total = 0
        async for chunk in request.body:
            total += len(chunk)
        peaks.append(total)
        await request.respond(Response(200, CIMultiDict(), b"%d" % total))

    http, port = await serve(slow)
    size = 16 * BODY_HIGH_WATER
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
    writer.write(head % size)
    sender = asyncio.create_task(_send_all(writer, size))
    (connection,) = http.connections
    while (body := connection.body_in_progress) is None or not body.paused:
        await asyncio.sleep(0.01)  # until the server stops reading
    assert body.buffered <= BODY_HIGH_WATER + 256 * 1024  # one socket read past the mark
    assert not sender.done()  # the client is held back, not buffered without bound
    release.set()
    await sender
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    assert answer.endswith(b"%d" % size) and peaks == [size]


async def _send_all(writer: asyncio.StreamWriter, size: int) -> None:
    block = b"u" * 65536
    for _ in range(size // len(block)):
        writer.write(block)
        await writer.drain()


async def test_shutdown_closes_idle_connections_and_finishes_answers(serve: Serve):
    """Shutdown: an idle keep-alive connection is closed at once; one waiting for its
    answer gets it (with Connection: close) before the server lets it go."""
    gate = asyncio.Event()

    async def waiting(request: Request) -> None:
        if request.path == "/slow":
            await gate.wait()
        await request.respond(Response(200, CIMultiDict(), b"done"))

    http, port = await serve(waiting)
    idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", port)
    idle_writer.write(b"GET /fast HTTP/1.1\r\nHost: x\r\n\r\n")
    await idle_reader.readuntil(b"done")
    busy_reader, busy_writer = await asyncio.open_connection("127.0.0.1", port)
    busy_writer.write(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
    while len(http.connections) < 2 or not any(c.answering for c in http.connections):
        await asyncio.sleep(0.01)
    shutdown = asyncio.create_task(http.shutdown(10))
    assert await asyncio.wait_for(idle_reader.read(), 10) == b""  # closed, no answer
    gate.set()
    answer = await asyncio.wait_for(busy_reader.read(), 10)
    await shutdown
    assert answer.endswith(b"done") and b"Connection: close" in answer
    assert http.connections == set()
    idle_writer.close()
    busy_writer.close()
