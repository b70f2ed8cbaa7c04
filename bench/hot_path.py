"""The CPU cost of one proxied request, in-process, without sockets.

A tower-proxy app (the real server protocol, guard, forwarder, token manager,
metrics, log line) is driven through in-memory transports: the client side
feeds request bytes into the server's protocol, the upstream side answers
each request with a canned small JSON response as soon as it is written.
What is left is the Python work per request, free of the kernel, the load
generator and the other processes on a shared machine — the number to move
when optimising the hot path, and a stable one (repeated runs agree within a
few per cent, where wrk's req/s on this machine wander by tens).

    .venv/bin/python -m bench.hot_path                # µs per request, median of 5
    .venv/bin/python -m bench.hot_path --profile      # plus cProfile's top functions
    .venv/bin/python -m bench.hot_path --layer pool   # only the layers up to the pool

`--layer` answers each request with less of the proxy, to show what each
layer adds (with `bench.instructions`, whose counts hold still):
  server     the HTTP server alone: parse, queue, a fixed answer written back
  pool       + the request sent upstream on the pool, its body answered
  forwarder  + the forwarder: header rules, token, replay, rewriting
  app        + the app: guard, CORS, metrics, the log line (all of it: the default)
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import uvloop
from multidict import CIMultiDict

import proxy
from proxy import log as proxy_log
from proxy.app import ProxyApp, create_app
from proxy.config import Config, load_config
from proxy.forward import Exchange
from proxy.http_server import HttpServer
from proxy.limits import ServerLimits
from proxy.messages import Request, Response

from .stack import BENCH_TOKEN, SMALL_JSON, write_proxy_config, write_token_file

REQUEST = (
    b"GET /api/v1/projects/0f3c9a HTTP/1.1\r\nHost: 127.0.0.1:8730\r\n"
    b"User-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n"
)
UPSTREAM_ANSWER = (
    b"HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: Fri, 04 Dec 2026 08:00:00 GMT\r\n"
    b"Content-Type: application/json\r\nContent-Length: %d\r\nConnection: keep-alive\r\n\r\n%s"
    % (len(SMALL_JSON), SMALL_JSON.encode())
)


class _Transport(asyncio.Transport):
    """Just enough of a transport: writes go to a callback."""

    def __init__(self, on_write: Callable[[bytes], None]) -> None:
        super().__init__()
        self._on_write = on_write
        self._closing = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._on_write(bytes(data))

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        self._closing = True

    def abort(self) -> None:
        self._closing = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 40000)}.get(name, default)


def _feed(protocol: asyncio.BufferedProtocol) -> None:
    buffer = memoryview(protocol.get_buffer(len(UPSTREAM_ANSWER)))
    buffer[: len(UPSTREAM_ANSWER)] = UPSTREAM_ANSWER
    protocol.buffer_updated(len(UPSTREAM_ANSWER))


class _InMemoryLoop(uvloop.Loop):
    """uvloop, but a connection it opens (the proxy's upstream) is in memory:
    each request written to it is answered on the next loop turn.  Nothing of
    the proxy is patched, so the compiled build is measured the same way."""

    async def create_connection(  # type: ignore[override]
        self, protocol_factory: Callable[[], asyncio.BufferedProtocol], *args: Any, **kwargs: Any
    ) -> tuple[asyncio.Transport, asyncio.BufferedProtocol]:
        protocol = protocol_factory()

        def answer(_data: bytes) -> None:
            self.call_soon(_feed, protocol)

        transport = _Transport(answer)
        protocol.connection_made(transport)
        return transport, protocol


LAYERS = ("server", "pool", "forwarder", "app")


def _handler(app: ProxyApp, layer: str) -> Callable[[Request], Awaitable[None]]:
    """What answers a request when measuring up to `layer` (see the module's doc)."""
    if layer == "app":
        return app.dispatch
    forwarder = app.forwarder
    assert forwarder is not None  # started
    if layer == "forwarder":

        async def forwarded(request: Request) -> None:
            await request.respond(await forwarder.handle(request, Exchange.begin(request)))

        return forwarded
    if layer == "pool":
        bearer = [("Accept", "*/*"), ("Authorization", f"Bearer {BENCH_TOKEN}")]

        async def pooled(request: Request) -> None:
            upstream = await forwarder.pool.request("GET", request.raw_path, bearer)
            body = upstream.body_if_complete(64 * 1024) or b""
            await request.respond(Response(upstream.status, CIMultiDict(), body))

        return pooled

    async def fixed(request: Request) -> None:
        await request.respond(Response(200, CIMultiDict(), SMALL_JSON.encode()))

    return fixed


async def _run(config_path: Path, count: int, layer: str) -> float:
    config = load_config(str(config_path))
    return await _drive(create_app(config), config, count, layer)


async def _drive(app: ProxyApp, config: Config, count: int, layer: str) -> float:
    await app.start()
    server = HttpServer(_handler(app, layer), ServerLimits.from_config(config.server))
    connection = server()
    answered = asyncio.Event()
    tail = SMALL_JSON.encode()

    def on_write(data: bytes) -> None:
        if data.endswith(tail):
            answered.set()

    connection.connection_made(_Transport(on_write))
    started = time.perf_counter()
    async with asyncio.timeout(60 + count / 100):  # one timer: a request left unanswered fails
        for _ in range(count):
            answered.clear()
            connection.data_received(REQUEST)
            await answered.wait()
    elapsed = time.perf_counter() - started
    await app.close()
    return elapsed / count * 1e6


def build() -> str:
    """Which build of the proxy this process imports: "compiled" (mypyc) or "plain Python"."""
    return "compiled" if proxy.compiled() else "plain Python"


def measure(
    *, requests: int, rounds: int, log_level: str, work: Path, layer: str = "app"
) -> list[float]:
    """µs per request, one number per round (a fresh app each round)."""
    token = work / "token.json"
    write_token_file(token)
    config = write_proxy_config(
        work / f"hot-path-{log_level}.toml",
        api_url="http://127.0.0.1:9/api/v1",
        oauth_url="http://127.0.0.1:9/oauth",
        port=0,
        token_path=token,
        log_level=log_level,
    )
    with (work / "hot-path.log").open("a") as log_file:
        proxy_log.configure(log_level, "json", stream=log_file)
        return [
            uvloop.run(_run(config, requests, layer), loop_factory=_InMemoryLoop)
            for _ in range(rounds)
        ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--log-level", default="info", help="info: with the canonical line")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--layer", choices=LAYERS, default="app", help="measure up to this layer")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tower-proxy-hot-"))
    options = {"log_level": args.log_level, "work": work, "layer": args.layer}
    results = measure(requests=args.requests, rounds=args.rounds, **options)
    print(f"{statistics.median(results):.1f} µs per request (rounds: "
          f"{', '.join(f'{r:.1f}' for r in results)}; log.level = {args.log_level}; "
          f"up to the {args.layer} layer; {build()})")  # fmt: skip
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        measure(requests=args.requests, rounds=1, **options)
        profiler.disable()
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(35)
        print(out.getvalue(), file=sys.stderr)


if __name__ == "__main__":
    main()
