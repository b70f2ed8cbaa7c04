"""Shared fixtures: a real sandbox upstream, configs, logged-in stores, proxies.

Every proxy log line of the run (in-process and from child processes) is
written under one session log directory; at the end of the session every
secret any sandbox issued is searched for in those logs (see
`tests/secret_scan.py`), and a hit fails the run.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import os
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from yarl import URL

from proxy import log as proxy_log
from proxy.app import ProxyApp, create_app
from proxy.config import Config, LogConfig, ServerConfig, TcpAddress, TokensConfig, TowerConfig
from proxy.limits import ServerLimits
from proxy.login import store_login
from proxy.oauth import OAuthClient
from proxy.sandbox import SANDBOX, Sandbox, SandboxSettings
from proxy.sandbox import create_app as create_sandbox_app
from proxy.server import Listener, listen
from proxy.tokens import FileStore, TokenSet

from .secret_scan import SESSION_SECRETS, scan_logs

ROOT = Path(__file__).resolve().parent.parent
PYTHON = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv").exists() else sys.executable
# One directory per run, so that runs side by side never mix their logs.
LOG_DIR = Path(
    os.environ.get("TOWER_PROXY_TEST_LOGS", f"/tmp/tower-proxy-test-logs/run-{os.getpid()}")
)


def pytest_configure(config: pytest.Config) -> None:
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    for old in LOG_DIR.glob("*"):
        old.unlink()  # a reused directory (TOWER_PROXY_TEST_LOGS) starts empty
    configure_session_logging()


_session_stream: list[Any] = []


def configure_session_logging() -> None:
    """(Re)point all in-process logging at the session's log file."""
    if not _session_stream:
        _session_stream.append((LOG_DIR / "in-process.log").open("a", buffering=1))
    proxy_log.configure("debug", "json", stream=_session_stream[0])


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
async def make_sandbox() -> AsyncIterator[Callable[..., Awaitable[SandboxHandle]]]:
    """Start simulators with given settings; collect their secrets at the end."""
    handles: list[SandboxHandle] = []
    async with aiohttp.ClientSession() as session:

        async def start(**settings: Any) -> SandboxHandle:
            settings = {"test_routes": True, "random_seed": 7, **settings}
            app = create_sandbox_app(SandboxSettings(**settings))
            server = TestServer(app, host="127.0.0.1")
            await server.start_server()
            handles.append(SandboxHandle(server=server, state=app[SANDBOX], session=session))
            return handles[-1]

        yield start
        for handle in handles:
            SESSION_SECRETS.update(await handle.control("GET", "/_sandbox/secrets"))
            await handle.server.close()


@pytest.fixture
async def sandbox(make_sandbox: Callable[..., Awaitable[SandboxHandle]]) -> SandboxHandle:
    return await make_sandbox()


def make_config(sandbox: SandboxHandle, tmp_path: Path, **server: Any) -> Config:
    settings = sandbox.state.settings
    return Config(
        tower=TowerConfig(
            client_id=settings.client_id,
            client_secret=settings.client_secret,
            api_url=f"{sandbox.base}/api/v1",
            oauth_url=f"{sandbox.base}/oauth",
        ),
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
    async with OAuthClient(config.tower) as oauth:
        response = await oauth.exchange_code(code)
    return await store_login(FileStore(config.token_path), response)


@pytest.fixture
async def logged_in(config: Config, sandbox: SandboxHandle) -> TokenSet:
    return await login(config, sandbox)


class ProxyClient:
    """A proxy app serving on a real loopback port, and a client session for it.

    The calls mirror aiohttp's TestClient (`await proxy.get(path)`), so a test
    reads like any aiohttp client code; `app` is the running ProxyApp.
    """

    def __init__(self, app: ProxyApp, listener: Listener, session: aiohttp.ClientSession):
        self.app = app
        self.listener = listener
        self.session = session
        self.host = "127.0.0.1"
        self.port = int(listener.server.sockets[0].getsockname()[1])

    def make_url(self, path: str) -> URL:
        return URL(f"http://{self.host}:{self.port}{path}", encoded=True)

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.session.request(method, self.make_url(path), **kwargs)

    get = functools.partialmethod(request, "GET")
    post = functools.partialmethod(request, "POST")
    put = functools.partialmethod(request, "PUT")
    patch = functools.partialmethod(request, "PATCH")
    delete = functools.partialmethod(request, "DELETE")
    head = functools.partialmethod(request, "HEAD")
    options = functools.partialmethod(request, "OPTIONS")

    async def close(self) -> None:
        await self.session.close()
        await self.listener.close(1.0)
        await self.app.close()


async def start_proxy(config: Config, **kwargs: Any) -> ProxyClient:
    """`create_app(config)` started and listening on a free loopback port."""
    app = create_app(config, **kwargs)
    await app.start()
    listener = await listen(
        app.dispatch,
        TcpAddress("127.0.0.1", 0),
        ServerLimits.from_config(config.server),
        max_connections=config.server.max_connections,
    )
    # Like aiohttp's TestClient: cookies are not kept between calls.
    session = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar())
    return ProxyClient(app, listener, session)


ProxyFactory = Callable[..., Awaitable[ProxyClient]]


@pytest.fixture
async def make_proxy() -> AsyncIterator[ProxyFactory]:
    started: list[ProxyClient] = []

    async def factory(config: Config, **kwargs: Any) -> ProxyClient:
        started.append(await start_proxy(config, **kwargs))
        return started[-1]

    yield factory
    for client in reversed(started):
        await client.close()


@pytest.fixture
async def proxy(make_proxy: ProxyFactory, config: Config, logged_in: TokenSet) -> ProxyClient:
    return await make_proxy(config)


async def wait_until(predicate: Callable[[], Awaitable[bool]], *, timeout: float = 20) -> None:
    """Poll a condition (start-up, shutdown) — never used to assert timing."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


@dataclasses.dataclass
class ServeProcess:
    """`tower-proxy serve` as a real child process on a loopback port."""

    proc: asyncio.subprocess.Process
    port: int
    log_path: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def peak_rss_kib(self) -> int:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        line = next(x for x in status.splitlines() if x.startswith("VmHWM:"))
        return int(line.split()[1])


async def run_cli(
    *args: str, stdin: str = "", env: dict[str, str] | None = None, log_name: str = "cli"
) -> tuple[int, str, str]:
    """Run `python -m proxy ARGS` to completion; its output is kept for the leak scan."""
    proc = await asyncio.create_subprocess_exec(
        PYTHON,
        "-m",
        "proxy",
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
        cwd=ROOT,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin.encode()), timeout=60)
    stdout, stderr = out.decode(), err.decode()
    with (LOG_DIR / f"{log_name}.log").open("a") as fh:
        fh.write(f"$ tower-proxy {' '.join(_shown(args))}\n{stderr}")
        if args[0] != "token":  # printing the token is that command's purpose
            fh.write(stdout)
    assert proc.returncode is not None
    return proc.returncode, stdout, stderr


def _shown(args: tuple[str, ...]) -> list[str]:
    """The command line as the log records it: the test's own secret arguments masked."""
    return [
        "<secret>" if i and args[i - 1] in ("--code", "--redirect-url") else arg
        for i, arg in enumerate(args)
    ]


@pytest.fixture
async def serve_process(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[ServeProcess]]]:
    started: list[ServeProcess] = []

    async def start(
        config: Config, name: str = "serve", *, wait_ready: bool = True
    ) -> ServeProcess:
        port = free_port()
        config = dataclasses.replace(
            config, server=dataclasses.replace(config.server, listen=f"127.0.0.1:{port}")
        )
        path = write_config(config, tmp_path / f"{name}-{port}.toml")
        log_path = LOG_DIR / f"{name}-{port}.log"
        with log_path.open("ab") as log_file:
            proc = await asyncio.create_subprocess_exec(
                PYTHON,
                "-m",
                "proxy",
                "serve",
                "--config",
                str(path),
                stdout=log_file,
                stderr=log_file,
                cwd=ROOT,
            )
        process = ServeProcess(proc=proc, port=port, log_path=log_path)
        started.append(process)
        if wait_ready:
            await wait_for_health(process)
        return process

    yield start
    for process in started:
        if process.proc.returncode is None:
            process.proc.kill()
            await process.proc.wait()


async def wait_for_health(process: ServeProcess) -> None:
    async with aiohttp.ClientSession() as session:

        async def healthy() -> bool:
            if process.proc.returncode is not None:
                raise AssertionError(
                    f"serve exited {process.proc.returncode}: "
                    f"{process.log_path.read_text()[-2000:]}"
                )
            try:
                async with session.get(process.base + "/-/healthz") as response:
                    return response.status == 200
            except aiohttp.ClientError:
                return False

        await wait_until(healthy)


@dataclasses.dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


async def raw_request(host: str, port: int, head: bytes, body: bytes = b"") -> RawResponse:
    """Send bytes exactly as given (no client-side URL normalisation) and parse the answer."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(head + body)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), timeout=30)
    finally:
        writer.close()
    header_block, _, payload = data.partition(b"\r\n\r\n")
    lines = header_block.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding") == "chunked":
        payload = _dechunk(payload)
    return RawResponse(status=status, headers=headers, body=payload)


def _dechunk(data: bytes) -> bytes:
    out = bytearray()
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += data[:size]
        data = data[size + 2 :]
    return bytes(out)


def get_head(target: str, host: str = "127.0.0.1", extra: str = "") -> bytes:
    return (f"GET {target} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n").encode()
