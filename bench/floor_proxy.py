"""The floor: about the least Python a keep-alive HTTP proxy can run per request.

Not a product and not a rival: a yardstick for tower-proxy's own CPU per
request.  Protocol callbacks only (no task, no future, no coroutine), the
same parser (httptools) and event loop (uvloop) as tower-proxy, one upstream
connection per client connection, the client's header lines passed on as
bytes with a fixed bearer token added.  No guard, no header rules beyond
hop-by-hop, no refresh, no log, no metrics, no timeouts, no pipelining,
request bodies framed by Content-Length only.
What tower-proxy spends above this is what its features and its checks
cost; what this spends is what Python, the parser and the loop cost.

    python -m bench.floor_proxy --port 9000 --upstream 127.0.0.1:8080
"""

from __future__ import annotations

import argparse
import asyncio
import os
from http import HTTPStatus

import httptools
import uvloop

_HOP = frozenset({b"connection", b"keep-alive", b"te", b"transfer-encoding", b"upgrade", b"host"})
_REASONS = {status.value: status.phrase.encode() for status in HTTPStatus}


class _Upstream(asyncio.Protocol):
    """The client connection's own upstream connection: responses go straight back."""

    def __init__(self, client: _Client) -> None:
        self.client = client
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.lines: list[bytes] = []
        self.chunked = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.client.close()

    def on_header(self, name: bytes, value: bytes) -> None:
        lower = name.lower()
        if lower not in _HOP:
            self.lines.append(name + b": " + value)
        elif lower == b"transfer-encoding":
            self.chunked = True  # llhttp hands the body over dechunked: chunk it again

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        first = b"HTTP/1.1 %d %s" % (status, _REASONS.get(status, b"Unknown"))
        if self.chunked:
            self.lines.append(b"Transfer-Encoding: chunked")
        self.client.write(b"\r\n".join([first, *self.lines, b"", b""]))
        self.lines = []

    def on_body(self, body: bytes) -> None:
        self.client.write(b"%x\r\n%b\r\n" % (len(body), body) if self.chunked else body)

    def on_message_complete(self) -> None:
        if self.chunked:
            self.chunked = False
            self.client.write(b"0\r\n\r\n")


class _Client(asyncio.Protocol):
    def __init__(self, upstream: tuple[str, int], bearer: bytes) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.upstream_address = upstream
        self.bearer = bearer
        self.transport: asyncio.Transport | None = None
        self.upstream: _Upstream | None = None
        self.waiting: list[bytes] = []  # sent before the upstream connection was up
        self.url = b""
        self.lines: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        host, port = self.upstream_address
        loop = asyncio.get_running_loop()
        _, self.upstream = await loop.create_connection(lambda: _Upstream(self), host, port)
        for data in self.waiting:
            self._send(data)
        self.waiting = []

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.upstream is not None and self.upstream.transport is not None:
            self.upstream.transport.close()

    def on_message_begin(self) -> None:
        self.url = b""
        self.lines = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() not in _HOP and name.lower() != b"authorization":
            self.lines.append(name + b": " + value)

    def on_headers_complete(self) -> None:
        host, port = self.upstream_address
        first = self.parser.get_method() + b" " + self.url + b" HTTP/1.1"
        extra = [b"Host: %s:%d" % (host.encode(), port), b"Authorization: " + self.bearer]
        self._send(b"\r\n".join([first, *self.lines, *extra, b"", b""]))

    def on_body(self, body: bytes) -> None:
        self._send(body)

    def _send(self, data: bytes) -> None:
        if self.upstream is None or self.upstream.transport is None:
            self.waiting.append(data)
        else:
            self.upstream.transport.write(data)

    def write(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def serve(port: int, upstream: tuple[str, int], bearer: bytes) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Client(upstream, bearer), "127.0.0.1", port)
    await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="host:port of a plain HTTP upstream")
    args = parser.parse_args()
    host, _, port = args.upstream.rpartition(":")
    bearer = b"Bearer " + os.environ["BENCH_TOKEN"].encode()
    uvloop.run(serve(args.port, (host, int(port)), bearer))


if __name__ == "__main__":
    main()
