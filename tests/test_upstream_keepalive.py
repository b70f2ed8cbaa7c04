"""Kept-alive upstream connections never cost a client an error (issue 7).

The upstream here is a real loopback HTTP/1.1 server that, at random, closes
a *reused* connection when the next request arrives on it, before sending a
single response byte — what a client sees when Tower closed an idle
connection just as the proxy reused it.  An idempotent request is then sent
once more, on a fresh connection; a POST is not (it may have been processed).
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from proxy.config import Config, LogConfig, ServerConfig, TokensConfig, TowerConfig
from proxy.tokens import FileStore, TokenSet

BODY = b'{"data":{"type":"projects","id":"p1"}}'


@dataclasses.dataclass
class Seen:
    method: str
    path: str
    request_id: str
    connection: int  # which upstream connection it arrived on
    index: int  # 0: the first request on that connection
    body: bytes
    dropped: bool
    authorization: str | None = None


@dataclasses.dataclass
class DroppingUpstream:
    """Answers 200 with BODY, or drops a reused connection when `drop(seen)` says so."""

    drop: Callable[[Seen], bool]
    port: int = 0
    seen: list[Seen] = dataclasses.field(default_factory=list)
    connections: int = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        connection, index = self.connections, 0
        try:
            while request := await _read_request(reader):
                method, path, headers, body = request
                seen = Seen(method, path, headers.get("x-request-id", ""), connection, index, body,
                            dropped=False, authorization=headers.get("authorization"))  # fmt: skip
                seen.dropped = index > 0 and path.startswith("/api/v1/") and self.drop(seen)
                self.seen.append(seen)
                if seen.dropped:
                    writer.transport.abort()  # no response byte, like an idle close racing
                    return
                payload = b"" if method == "HEAD" else BODY
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(BODY), payload)
                )
                await writer.drain()
                index += 1
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    def api(self) -> list[Seen]:
        return [s for s in self.seen if s.path.startswith("/api/v1/")]


async def _read_request(
    reader: asyncio.StreamReader,
) -> tuple[str, str, dict[str, str], bytes] | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return method, path, headers, body


@pytest.fixture
async def start_upstream() -> AsyncIterator[Callable[[Callable[[Seen], bool]], object]]:
    servers: list[asyncio.Server] = []

    async def start(drop: Callable[[Seen], bool]) -> DroppingUpstream:
        upstream = DroppingUpstream(drop)
        server = await asyncio.start_server(upstream.serve, "127.0.0.1", 0)
        upstream.port = server.sockets[0].getsockname()[1]
        servers.append(server)
        return upstream

    yield start  # type: ignore[misc]
    for server in servers:
        server.close()
        await server.wait_closed()


async def _config(upstream: DroppingUpstream, tmp_path: Path) -> Config:
    base = f"http://127.0.0.1:{upstream.port}"
    config = Config(
        tower=TowerConfig(
            client_id="keepalive-client",
            client_secret="keepalive-client-secret",
            api_url=f"{base}/api/v1",
            oauth_url=f"{base}/oauth",
        ),
        server=ServerConfig(listen="127.0.0.1:0"),
        tokens=TokensConfig(path=str(tmp_path / "state" / "token.json")),
        log=LogConfig(level="debug", format="json"),
    )
    token = TokenSet(
        access_token="keepalive-access-token",
        refresh_token="keepalive-refresh-token",
        expires_at=time.time() + 3600,
    )
    await FileStore(config.token_path).save(token, expected_generation=0)
    return config


async def test_idle_closes_at_random_never_reach_a_client(start_upstream, make_proxy, tmp_path):
    """300 GETs, 8 at a time, reused connections dropped at random: all 200, one resend each."""
    rng = random.Random(7)
    upstream = await start_upstream(lambda seen: rng.random() < 0.3)
    proxy = await make_proxy(await _config(upstream, tmp_path))
    limit = asyncio.Semaphore(8)

    async def one(number: int) -> tuple[int, bytes]:
        async with limit:
            response = await proxy.get(
                f"/api/v1/projects/{number}", headers={"X-Request-ID": f"ka-{number}"}
            )
            return response.status, await response.read()

    answers = await asyncio.gather(*(one(n) for n in range(300)))

    assert answers == [(200, BODY)] * 300
    seen = upstream.api()
    dropped = [s for s in seen if s.dropped]
    assert len(dropped) > 0  # the race really happened, many times
    assert len(seen) == 300 + len(dropped)  # every drop cost exactly one more send
    for lost in dropped:
        tries = [s for s in seen if s.request_id == lost.request_id]
        assert len(tries) == 2 and tries[0] is lost
        assert tries[1].index == 0 and not tries[1].dropped  # a fresh connection


async def test_a_dropped_put_is_resent_with_its_body(start_upstream, make_proxy, tmp_path):
    """An idempotent request with a body is resent whole after a drop."""
    upstream = await start_upstream(lambda seen: seen.method == "PUT")
    proxy = await make_proxy(await _config(upstream, tmp_path))
    assert (await proxy.get("/api/v1/projects/p1")).status == 200  # leaves a pooled connection
    body = bytes(range(256)) * 400

    response = await proxy.put("/api/v1/projects/p1", data=body)

    assert response.status == 200
    puts = [s for s in upstream.api() if s.method == "PUT"]
    assert [(s.dropped, s.index == 0, s.body == body) for s in puts] == [
        (True, False, True),  # on the reused connection: dropped
        (False, True, True),  # resent whole on a fresh one
    ]


async def test_a_dropped_post_is_not_resent(start_upstream, make_proxy, tmp_path):
    """POST is not idempotent: Tower may have acted on it, so the client gets a 502."""
    upstream = await start_upstream(lambda seen: seen.method == "POST")
    proxy = await make_proxy(await _config(upstream, tmp_path))
    assert (await proxy.get("/api/v1/projects/p1")).status == 200

    response = await proxy.post("/api/v1/projects/p1/todos", data=b'{"todo":{}}')

    assert response.status == 502
    assert response.headers["X-Tower-Proxy-Error"] == "upstream_unreachable"
    assert [(s.method, s.dropped) for s in upstream.api()] == [("GET", False), ("POST", True)]


async def test_the_pool_is_warm_before_the_first_request(start_upstream, make_proxy, tmp_path):
    """At start-up one connection is opened (no request, no token); the first request uses it."""
    upstream = await start_upstream(lambda seen: False)
    proxy = await make_proxy(await _config(upstream, tmp_path))

    assert (upstream.connections, upstream.seen) == (1, [])
    assert (await proxy.get("/api/v1/projects/p1")).status == 200
    first = upstream.api()[0]
    assert (first.connection, first.index) == (1, 0)
    assert upstream.connections == 1
