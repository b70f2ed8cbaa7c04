"""Operations fixtures: a real CONNECT egress proxy, a TLS sandbox, log readers."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import json
import signal
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import trustme
from aiohttp.test_utils import TestServer

from proxy.config import Config, is_loopback_host
from proxy.login import store_login
from proxy.oauth import OAuthClient
from proxy.sandbox import SANDBOX, SandboxSettings
from proxy.sandbox import create_app as create_sandbox_app
from proxy.tokens import FileStore, TokenSet

from ..conftest import SandboxHandle, ServeProcess, make_config
from ..secret_scan import SESSION_SECRETS


class ConnectProxy:
    """A corporate egress proxy: CONNECT tunnels to loopback only, everything recorded.

    `received` holds every byte a client sent it (heads and tunnelled
    bytes), so a test can prove no secret ever reached the proxy in clear.
    """

    def __init__(self, *, credentials: tuple[str, str] | None = None) -> None:
        self.connects: list[str] = []
        self.refused: list[str] = []
        self.received = bytearray()
        self._credentials = credentials
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            self.received += head
            await self._tunnel(head, reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _tunnel(
        self, head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        lines = head.decode("latin-1").split("\r\n")
        method, target, _version = lines[0].split(" ", 2)
        host, _, port = target.rpartition(":")
        if method != "CONNECT" or not is_loopback_host(host.strip("[]")):
            self.refused.append(lines[0])
            writer.write(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
            return
        if not self._authorized(lines[1:]):
            self.refused.append(lines[0])
            writer.write(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n")
            return
        up_reader, up_writer = await asyncio.open_connection(host.strip("[]"), int(port))
        self.connects.append(target)
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await asyncio.gather(
            self._pipe(reader, up_writer, record=True), self._pipe(up_reader, writer, record=False)
        )

    def _authorized(self, header_lines: list[str]) -> bool:
        if self._credentials is None:
            return True
        user, password = self._credentials
        expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        return any(
            line.lower().startswith("proxy-authorization:")
            and line.split(":", 1)[1].strip() == expected
            for line in header_lines
        )

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, record: bool
    ) -> None:
        try:
            while chunk := await reader.read(65536):
                if record:
                    self.received += chunk
                writer.write(chunk)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            with contextlib.suppress(ConnectionError, RuntimeError):
                writer.close()


@pytest.fixture
async def connect_proxy() -> AsyncIterator[ConnectProxy]:
    proxy = ConnectProxy(credentials=("corp", "egress-pass-7f3k2"))
    await proxy.start()
    yield proxy
    await proxy.close()


@dataclasses.dataclass
class TlsSandbox:
    handle: SandboxHandle
    ca_file: Path
    port: int


@pytest.fixture
async def tls_sandbox(tmp_path: Path) -> AsyncIterator[TlsSandbox]:
    """The simulator served over TLS for `localhost` and `127.0.0.1` by a test CA."""
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(server_context)
    ca_file = tmp_path / "test-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    app = create_sandbox_app(SandboxSettings(test_routes=True, random_seed=7))
    server = TestServer(app, host="127.0.0.1")
    await server.start_server(ssl=server_context)
    connector = aiohttp.TCPConnector(ssl=client_context)
    async with aiohttp.ClientSession(connector=connector) as session:
        handle = SandboxHandle(server=server, state=app[SANDBOX], session=session)
        yield TlsSandbox(handle=handle, ca_file=ca_file, port=server.port or 0)
        SESSION_SECRETS.update(await handle.control("GET", "/_sandbox/secrets"))
    await server.close()


def tls_config(sandbox: TlsSandbox, tmp_path: Path) -> Config:
    """API on https://localhost, token endpoint on https://127.0.0.1: two CONNECT targets."""
    config = make_config(sandbox.handle, tmp_path)
    tower = dataclasses.replace(
        config.tower,
        api_url=f"https://localhost:{sandbox.port}/api/v1",
        oauth_url=f"https://127.0.0.1:{sandbox.port}/oauth",
        ca_file=str(sandbox.ca_file),
    )
    return dataclasses.replace(config, tower=tower)


async def tls_login(config: Config, sandbox: TlsSandbox) -> TokenSet:
    """A real code exchange over TLS (through the egress proxy when one is configured)."""
    code = sandbox.handle.state.issue_code()
    async with OAuthClient(config.tower) as oauth:
        response = await oauth.exchange_code(code)
    return await store_login(FileStore(config.token_path), response)


def with_server(config: Config, **values: Any) -> Config:
    """`config` with some `[server]` keys changed."""
    return dataclasses.replace(config, server=dataclasses.replace(config.server, **values))


async def http_status(session: aiohttp.ClientSession, url: str, **kwargs: Any) -> int:
    """The status of a GET, or 0 when nothing answers."""
    try:
        async with session.get(url, **kwargs) as response:
            return response.status
    except aiohttp.ClientError:
        return 0


async def stop(process: ServeProcess) -> int:
    """SIGTERM a serve process; its exit code."""
    process.proc.send_signal(signal.SIGTERM)
    return await asyncio.wait_for(process.proc.wait(), 30)


def json_lines(path: Path) -> list[dict[str, Any]]:
    """Every line of a log file parsed as JSON (fails on any line that is not)."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
