"""Limits that keep a misbehaving client from exhausting the proxy.

Slow and idle clients are cut after `client_timeout` (1 s here); a stalled
body gets 408; bodies over `max_body_size` get 413 before Tower is called;
connections beyond `max_connections` get an immediate 503.  No test measures
time: each waits for the proxy's own answer or for it closing the socket.
"""

from __future__ import annotations

import asyncio
import dataclasses

from ..conftest import raw_request, wait_until
from .conftest import RigFactory

_CUT = 20  # seconds to wait, at most, for the proxy to act on a 1 s timeout


async def _until_closed(port: int, sent: bytes) -> bytes:
    """Send bytes, then stay silent; everything the proxy answered before closing."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(sent)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), timeout=_CUT)
    finally:
        writer.close()


async def test_idle_connection_is_closed(make_rig: RigFactory):
    """A connection that never sends a byte is closed without an answer."""
    rig = await make_rig(client_timeout=1)
    assert await _until_closed(rig.port, b"") == b""
    assert rig.tap.seen == []
    rig.assert_contained()


async def test_slowly_sent_request_head_is_cut(make_rig: RigFactory):
    """A head that never completes (slowloris) is cut; nothing reaches Tower."""
    rig = await make_rig(client_timeout=1)
    answer = await _until_closed(rig.port, b"GET /api/v1/user HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    assert answer == b""
    assert rig.tap.seen == []
    rig.assert_contained()


async def test_stalled_body_gets_408_and_is_not_forwarded(make_rig: RigFactory):
    """A body that stops arriving ends with 408 request_timeout; Tower is never called."""
    rig = await make_rig(client_timeout=1)
    head = (
        b"POST /api/v1/_test/echo HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"todo":'
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", rig.port)
    try:
        writer.write(head)
        answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=_CUT)
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert b"X-Tower-Proxy-Error: request_timeout" in answer
    assert rig.tap.seen == []
    rig.assert_contained()


async def test_declared_oversized_body_gets_413_before_upstream(make_rig: RigFactory):
    """Content-Length above max_body_size: 413 at once, Tower untouched."""
    rig = await make_rig(max_body_size=1024)
    head = (
        b"POST /api/v1/_test/echo HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Length: 1025\r\nConnection: close\r\n\r\n"
    )
    response = await raw_request("127.0.0.1", rig.port, head, b"x" * 1025)
    assert (response.status, response.headers["x-tower-proxy-error"]) == (413, "body_too_large")
    assert rig.tap.seen == []
    rig.assert_contained()


async def test_chunked_oversized_body_gets_413_before_upstream(make_rig: RigFactory):
    """A chunked body that grows past max_body_size: 413, nothing forwarded."""
    small = await make_rig(max_body_size=1024)
    response = await small.proxy.post("/api/v1/_test/echo", data=_chunks(3, 512))
    assert response.status == 413
    assert small.tap.seen == []
    small.assert_contained()


async def _chunks(count: int, size: int):  # type: ignore[no-untyped-def]
    for _ in range(count):
        yield b"y" * size


async def test_body_at_the_limit_is_forwarded(make_rig: RigFactory):
    """Exactly max_body_size bytes pass, once, to the API."""
    rig = await make_rig(max_body_size=1024)
    response = await rig.proxy.post("/api/v1/_test/echo", data=b"z" * 1024)
    assert response.status == 200
    assert (await response.json())["body_size"] == 1024
    assert len(rig.tap.seen) == 1
    rig.assert_contained()


async def test_header_field_over_max_header_size_is_refused(make_rig: RigFactory):
    """A field longer than max_header_size: the proxy's JSON 400, Tower untouched."""
    rig = await make_rig(max_header_size=2048)
    response = await rig.proxy.get("/api/v1/user", headers={"X-Pad": "p" * 2100})
    assert (response.status, response.headers["X-Tower-Proxy-Error"]) == (400, "bad_request")
    ok = await rig.proxy.get("/api/v1/user", headers={"X-Pad": "p" * 1900})
    assert ok.status == 200
    assert len(rig.tap.seen) == 1
    rig.assert_contained()


async def test_connections_beyond_the_limit_get_503_at_once(serve_process, make_rig):
    """With max_connections = 2, a third connection is refused; a freed slot is reused."""
    rig = await make_rig()
    config = dataclasses.replace(
        rig.config, server=dataclasses.replace(rig.config.server, max_connections=2)
    )
    serving = await serve_process(config, "security-limits")
    held = [await asyncio.open_connection("127.0.0.1", serving.port) for _ in range(2)]
    try:
        refused = await raw_request(
            "127.0.0.1", serving.port, b"GET /-/healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        )
        assert refused.status == 503
        assert refused.json()["error"] == "too_many_connections"
    finally:
        for _reader, writer in held:
            writer.close()

    async def served() -> bool:
        response = await raw_request(
            "127.0.0.1",
            serving.port,
            b"GET /-/healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
        )
        return response.status == 200

    await wait_until(served)
