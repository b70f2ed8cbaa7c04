"""Fleet fixtures: real `redis-server` processes on free ports, configs that use them.

`redis-server` comes from Debian's package (installed by
scripts/setup.d/10-redis.sh); each server writes its log into LOG_DIR and runs
with an append-only file, so a stop/start on the same port keeps the data, as
a production Redis would.  One server is shared by the module's tests (each
test uses its own key prefix); tests that stop Redis start their own.
"""

from __future__ import annotations

import dataclasses
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis
import trustme

from proxy.config import Config
from proxy.login import store_login
from proxy.oauth import OAuthClient
from proxy.tokens import TokenSet, make_store

from ..conftest import LOG_DIR, SandboxHandle, ServeProcess, free_port, make_config, wait_until
from ..secret_scan import SESSION_SECRETS


@dataclasses.dataclass(frozen=True)
class TlsFiles:
    """A test CA and a server certificate for 127.0.0.1, as PEM files."""

    ca: Path
    cert: Path
    key: Path

    @classmethod
    def make(cls, directory: Path) -> TlsFiles:
        authority = trustme.CA()
        issued = authority.issue_cert("127.0.0.1", "localhost")
        directory.mkdir(parents=True, exist_ok=True)
        files = cls(directory / "ca.pem", directory / "server.pem", directory / "server.key")
        authority.cert_pem.write_to_path(str(files.ca))
        issued.cert_chain_pems[0].write_to_path(str(files.cert))
        issued.private_key_pem.write_to_path(str(files.key))
        return files


@dataclasses.dataclass
class RedisServer:
    """One redis-server child process; `stop()` and `start()` keep its port and data.

    With `tls` (a test CA's files) it listens only for TLS on `port`.
    """

    directory: Path
    port: int = dataclasses.field(default_factory=free_port)
    password: str = ""
    tls: TlsFiles | None = None
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        if self.tls is not None:
            return f"rediss://127.0.0.1:{self.port}/0?ssl_ca_certs={self.tls.ca}"
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        tls: dict[str, Any] = {"ssl": True, "ssl_ca_certs": str(self.tls.ca)} if self.tls else {}
        return redis.Redis(port=self.port, password=self.password or None, socket_timeout=5, **tls)

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is missing: run scripts/setup (scripts/setup.d/10-redis.sh)"
        self.directory.mkdir(parents=True, exist_ok=True)
        conf = self.directory / "redis.conf"
        lines = [
            *self._listen_lines(),
            "bind 127.0.0.1",
            f"dir {self.directory}",
            'save ""',
            "appendonly yes",
            "appendfsync always",
            f"logfile {LOG_DIR / f'redis-{self.port}.log'}",
        ]
        if self.password:
            lines.append(f"requirepass {self.password}")
        conf.write_text("\n".join(lines) + "\n")
        self.proc = subprocess.Popen([binary, str(conf)], stdin=subprocess.DEVNULL)
        self._wait_for_ping()

    def _listen_lines(self) -> list[str]:
        if self.tls is None:
            return [f"port {self.port}"]
        return [
            "port 0",
            f"tls-port {self.port}",
            f"tls-cert-file {self.tls.cert}",
            f"tls-key-file {self.tls.key}",
            f"tls-ca-cert-file {self.tls.ca}",
            "tls-auth-clients no",
        ]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)
        self.proc = None

    def _wait_for_ping(self) -> None:
        deadline = time.monotonic() + 20
        client = self.client()
        try:
            while True:  # start-up polling only
                assert self.proc is not None and self.proc.poll() is None, "redis-server exited"
                try:
                    if client.ping():
                        return
                except redis.RedisError:
                    pass
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.02)
        finally:
            client.close()


@pytest.fixture(scope="module")
def shared_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def make_redis(tmp_path: Path) -> Iterator[Callable[..., RedisServer]]:
    """Start private Redis servers (for tests that stop them); all stopped after."""
    servers: list[RedisServer] = []

    def start(*, password: str = "", started: bool = True, tls: bool = False) -> RedisServer:
        directory = tmp_path / f"redis-{len(servers)}"
        files = TlsFiles.make(directory / "tls") if tls else None
        server = RedisServer(directory, password=password, tls=files)
        if password:
            SESSION_SECRETS.add(password)
        servers.append(server)
        if started:
            server.start()
        return server

    yield start
    for server in servers:
        server.stop()


def redis_config(
    sandbox: SandboxHandle, tmp_path: Path, server: RedisServer, **tokens: Any
) -> Config:
    """A config for `store = "redis"` on `server`, under a key prefix of its own."""
    config = make_config(sandbox, tmp_path)
    values: dict[str, Any] = {
        "store": "redis",
        "redis_url": server.url,
        "redis_key_prefix": f"test-{secrets.token_hex(4)}:",
        "redis_lock_ttl": 2.0,
        **tokens,
    }
    return dataclasses.replace(config, tokens=dataclasses.replace(config.tokens, **values))


async def redis_login(config: Config, sandbox: SandboxHandle) -> TokenSet:
    """A real code exchange against the sandbox, stored in the configured store."""
    code = sandbox.state.issue_code(scopes="")
    async with OAuthClient(config.tower) as oauth:
        response = await oauth.exchange_code(code)
    store = make_store(config)
    try:
        return await store_login(store, response)
    finally:
        await store.close()


async def status_of(session: aiohttp.ClientSession, process: ServeProcess, path: str) -> int:
    async with session.get(process.base + path) as response:
        await response.read()
        return response.status


async def wait_ready(
    session: aiohttp.ClientSession, process: ServeProcess, *, ready: bool = True
) -> None:
    """Wait for readiness to turn (200) or to fail (503) — start-up/outage polling."""
    want = 200 if ready else 503

    async def reached() -> bool:
        return await status_of(session, process, "/-/readyz") == want

    await wait_until(reached, timeout=30)
