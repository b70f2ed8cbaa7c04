"""Attack-suite fixtures: a tapped sandbox upstream, a canary host, a logged-in proxy.

- The *tap* is the outermost middleware of the sandbox: it records every
  request the upstream receives, on any path (the sandbox's own request log
  covers only /api/v1), with the credential it carried.
- The *canary* is a second loopback server standing in for every other host
  (a file host, an attacker's server, another service): it counts
  connections and bytes, and must end every test at zero.
- `contained` is the invariant each attack ends with: nothing reached the
  canary, and no token reached the upstream outside `/api/v1`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import posixpath
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from aiohttp.typedefs import Handler

from proxy.config import Config
from proxy.sandbox import SANDBOX, SandboxSettings
from proxy.sandbox import create_app as create_sandbox_app
from proxy.sandbox.guard import presented_token
from proxy.tokens import TokenSet

from ..conftest import ProxyClient, SandboxHandle, login, make_config
from ..secret_scan import SESSION_SECRETS

API = "/api/v1"


class Canary:
    """Any host but Tower's API: counts what it receives and answers nothing useful."""

    def __init__(self) -> None:
        self.connections = 0
        self.received = bytearray()
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.received += await reader.read(65536)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\ncanary")
        await writer.drain()
        writer.close()

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()


@dataclasses.dataclass(frozen=True)
class Tapped:
    method: str
    raw_path: str
    token: str | None


class Tap:
    """Every request the upstream received, on any path, with its credential."""

    def __init__(self) -> None:
        self.seen: list[Tapped] = []

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.seen.append(Tapped(request.method, request.raw_path, presented_token(request)))
        return await handler(request)

    def api_calls(self) -> int:
        return sum(1 for seen in self.seen if seen.raw_path.startswith(API + "/"))

    def tokens_outside_api(self) -> list[Tapped]:
        """Token-carrying requests that a server could resolve outside /api/v1.

        The token endpoint is the one other place the (old) token may go: the
        refresh grant sends it as Tower documents.
        """
        return [
            seen
            for seen in self.seen
            if seen.token
            and not _resolves_inside_api(seen.raw_path)
            and (seen.method, seen.raw_path) != ("POST", "/oauth/token")
        ]


def _resolves_inside_api(raw_path: str) -> bool:
    path = raw_path.partition("?")[0]
    for _ in range(4):  # however many times a server along the way decodes it
        path = unquote(path)
    path = path.replace("\\", "/")
    return posixpath.normpath(path).startswith(API + "/") and ".." not in path.split("/")


@dataclasses.dataclass
class Rig:
    """One proxy wired to a tapped sandbox, and the canary beside them."""

    proxy: ProxyClient
    sandbox: SandboxHandle
    tap: Tap
    canary: Canary
    token: TokenSet
    config: Config

    @property
    def port(self) -> int:
        port = self.proxy.port
        assert port is not None
        return port

    def assert_contained(self) -> None:
        assert self.canary.connections == 0, bytes(self.canary.received[:200])
        assert self.tap.tokens_outside_api() == []


@pytest.fixture
async def canary() -> AsyncIterator[Canary]:
    server = Canary()
    await server.start()
    yield server
    await server.close()


@pytest.fixture
async def tapped_sandbox(
    canary: Canary,
) -> AsyncIterator[tuple[SandboxHandle, Tap]]:
    """A sandbox whose file host is the canary, with the tap in front of everything."""
    tap = Tap()
    settings = SandboxSettings(test_routes=True, random_seed=7, file_host_url=canary.base)
    app = create_sandbox_app(settings)
    app.middlewares.insert(0, tap.middleware)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    async with aiohttp.ClientSession() as session:
        handle = SandboxHandle(server=server, state=app[SANDBOX], session=session)
        yield handle, tap
        SESSION_SECRETS.update(await handle.control("GET", "/_sandbox/secrets"))
    await server.close()


RigFactory = Callable[..., Awaitable[Rig]]


@pytest.fixture
async def make_rig(
    tapped_sandbox: tuple[SandboxHandle, Tap],
    canary: Canary,
    make_proxy: Any,
    tmp_path: Path,
) -> RigFactory:
    sandbox, tap = tapped_sandbox

    async def build(**server: Any) -> Rig:
        config = make_config(sandbox, tmp_path, **server)
        token = await login(config, sandbox)
        proxy = await make_proxy(config)
        tap.seen.clear()  # the login's code grant is not part of any attack
        return Rig(proxy, sandbox, tap, canary, token, config)

    return build


@pytest.fixture
async def rig(make_rig: RigFactory) -> Rig:
    return await make_rig()


def write_keys(path: Path, *keys: str) -> str:
    """An inbound keys file; the keys join the secrets the leak scan looks for."""
    path.write_text("# rotated monthly\n" + "".join(f"{key}\n" for key in keys))
    SESSION_SECRETS.update(keys)
    return str(path)
