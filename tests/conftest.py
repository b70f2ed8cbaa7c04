"""Shared fixtures: a real sandbox upstream, configs, logged-in stores, proxies.

Every proxy log line of the run (in-process and from child processes) is
written under one session log directory; at the end of the session every
secret any sandbox issued is searched for in those logs (see
`tests/secret_scan.py`), and a hit fails the run.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from proxy import log as proxy_log
from proxy.app import create_app
from proxy.config import Config, LogConfig, ServerConfig, TokensConfig, TowerConfig
from proxy.login import store_login
from proxy.oauth import OAuthClient
from proxy.sandbox import SANDBOX, Sandbox, SandboxSettings
from proxy.sandbox import create_app as create_sandbox_app
from proxy.tokens import FileStore, TokenSet

from .secret_scan import SESSION_SECRETS, scan_logs

ROOT = Path(__file__).resolve().parent.parent
PYTHON = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv").exists() else sys.executable
LOG_DIR = Path(os.environ.get("TOWER_PROXY_TEST_LOGS", "/tmp/tower-proxy-test-logs"))


def pytest_configure(config: pytest.Config) -> None:
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    for old in LOG_DIR.glob("*"):
        old.unlink()
    stream = (LOG_DIR / "in-process.log").open("a", buffering=1)
    proxy_log.configure("debug", "json", stream=stream)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    leaks = scan_logs(LOG_DIR, SESSION_SECRETS)
    if leaks:
        print("\nSECRET LEAK in test logs:\n" + "\n".join(leaks), file=sys.stderr)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclasses.dataclass
class SandboxHandle:
    """A running simulator on a real loopback port, plus its in-process state."""

    server: TestServer
    state: Sandbox
    session: aiohttp.ClientSession

    @property
    def base(self) -> str:
        return str(self.server.make_url("")).rstrip("/")

    async def control(self, method: str, path: str, body: Any = None) -> Any:
        async with self.session.request(method, self.base + path, json=body) as response:
            assert response.status < 400, await response.text()
            return await response.json() if response.content_length != 0 else None

    async def stats(self) -> dict[str, Any]:
        return dict(await self.control("GET", "/_sandbox/stats"))

    async def refreshes(self) -> int:
        return int((await self.stats())["token_requests"]["refresh_token"])

    async def requests(self) -> list[dict[str, Any]]:
        return list(await self.control("GET", "/_sandbox/requests?limit=1000"))

    async def revoke(self, *, refresh_token: bool = False) -> None:
        await self.control("POST", "/_sandbox/revoke", {"refresh_token": refresh_token})

    async def knobs(self, **values: Any) -> None:
        await self.control("PATCH", "/_sandbox/knobs", values)


@pytest.fixture
async def sandbox() -> AsyncIterator[SandboxHandle]:
    app = create_sandbox_app(SandboxSettings(test_routes=True, random_seed=7))
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    async with aiohttp.ClientSession() as session:
        handle = SandboxHandle(server=server, state=app[SANDBOX], session=session)
        yield handle
        SESSION_SECRETS.update(await handle.control("GET", "/_sandbox/secrets"))
    await server.close()


def make_config(sandbox: SandboxHandle, tmp_path: Path, **server: Any) -> Config:
    settings = sandbox.state.settings
    return Config(
        tower=TowerConfig(client_id=settings.client_id, client_secret=settings.client_secret,
                          api_url=f"{sandbox.base}/api/v1", oauth_url=f"{sandbox.base}/oauth"),
        server=dataclasses.replace(ServerConfig(listen="127.0.0.1:0"), **server),
        tokens=TokensConfig(path=str(tmp_path / "state" / "token.json")),
        log=LogConfig(level="debug", format="json"),
    )


def write_config(config: Config, path: Path) -> Path:
    """The same config as a TOML file, for child processes."""
    lines = []
    for section in ("tower", "server", "tokens", "log"):
        lines.append(f"[{section}]")
        for field in dataclasses.fields(getattr(config, section)):
            value = getattr(getattr(config, section), field.name)
            value = list(value) if isinstance(value, tuple) else value
            lines.append(f"{field.name} = {json.dumps(value)}")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def config(sandbox: SandboxHandle, tmp_path: Path) -> Config:
    return make_config(sandbox, tmp_path)


async def login(config: Config, sandbox: SandboxHandle, *, scopes: str = "") -> TokenSet:
    """A real code exchange against the sandbox, stored like `tower-proxy login`."""
    code = sandbox.state.issue_code(scopes=scopes)
    async with aiohttp.ClientSession() as session:
        response = await OAuthClient(config.tower, session).exchange_code(code)
    return await store_login(FileStore(config.token_path), response)


@pytest.fixture
async def logged_in(config: Config, sandbox: SandboxHandle) -> TokenSet:
    return await login(config, sandbox)


ProxyFactory = Callable[..., Awaitable[TestClient[web.Request, web.Application]]]


@pytest.fixture
async def make_proxy(aiohttp_client: Any) -> ProxyFactory:
    async def factory(config: Config, **kwargs: Any) -> TestClient[web.Request, web.Application]:
        client: TestClient[web.Request, web.Application] = await aiohttp_client(
            create_app(config, **kwargs))
        return client

    return factory


@pytest.fixture
async def proxy(make_proxy: ProxyFactory, config: Config,
                logged_in: TokenSet) -> TestClient[web.Request, web.Application]:
    return await make_proxy(config)


async def wait_until(predicate: Callable[[], Awaitable[bool]], *, timeout: float = 20) -> None:
    """Poll a condition (start-up, shutdown) — never used to assert timing."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)
