"""Listeners as a real `tower-proxy serve` process: unix sockets, peer uids, exposure.

A TCP listen off loopback needs inbound keys; a unix socket is born with its
configured mode (0600 by default), a stale socket file is replaced and a live
one refused; `allowed_uids` checks the caller's uid with SO_PEERCRED.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import socket
import stat
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest

from proxy.config import Config

from ..conftest import LOG_DIR, PYTHON, ROOT, login, make_config, run_cli, wait_until, write_config
from .conftest import Tap, write_keys


@dataclasses.dataclass
class UnixServe:
    proc: asyncio.subprocess.Process
    path: Path

    async def get(self, target: str, **headers: str) -> tuple[int, dict[str, str], str]:
        connector = aiohttp.UnixConnector(path=str(self.path))
        async with (
            aiohttp.ClientSession(connector=connector) as session,
            session.get(f"http://localhost{target}", headers=headers) as response,
        ):
            return response.status, dict(response.headers), await response.text()


Start = Callable[..., Awaitable[UnixServe]]


@pytest.fixture
async def sandbox_config(tapped_sandbox, tmp_path) -> Config:
    sandbox, _tap = tapped_sandbox
    config = make_config(sandbox, tmp_path)
    await login(config, sandbox)
    return config


@pytest.fixture
async def serve_unix(sandbox_config: Config, tmp_path: Path) -> AsyncIterator[Start]:
    started: list[asyncio.subprocess.Process] = []

    async def start(path: Path, *, wait: bool = True, **server: object) -> UnixServe:
        config = dataclasses.replace(
            sandbox_config,
            server=dataclasses.replace(sandbox_config.server, listen=f"unix:{path}", **server),
        )
        toml = write_config(config, tmp_path / f"unix-{len(started)}.toml")
        log = (LOG_DIR / f"security-unix-{os.getpid()}-{len(started)}.log").open("ab")
        with log:
            proc = await asyncio.create_subprocess_exec(
                PYTHON, "-m", "proxy", "serve", "--config", str(toml),
                stdout=log, stderr=log, cwd=ROOT,
            )  # fmt: skip
        started.append(proc)
        serving = UnixServe(proc, path)
        if wait:
            await wait_until(lambda: _answers(serving))
        return serving

    yield start
    for proc in started:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def _answers(serving: UnixServe) -> bool:
    if serving.proc.returncode is not None:
        raise AssertionError(f"serve exited {serving.proc.returncode}")
    try:
        status, _, _ = await serving.get("/-/healthz")
    except aiohttp.ClientError:
        return False
    return status == 200


async def test_unix_socket_is_created_0600_and_serves_its_owner(serve_unix: Start, tmp_path):
    """Default mode 0600: only this user can connect; the owner's requests are proxied."""
    serving = await serve_unix(tmp_path / "proxy.sock")
    assert stat.S_IMODE(serving.path.stat().st_mode) == 0o600
    status, _, _ = await serving.get("/api/v1/user")
    assert status == 200


async def test_unix_socket_mode_is_configurable_for_a_group(serve_unix: Start, tmp_path):
    """`unix_socket_mode = "0660"` shares the socket with the group, nobody else."""
    serving = await serve_unix(tmp_path / "proxy.sock", unix_socket_mode="0660")
    assert stat.S_IMODE(serving.path.stat().st_mode) == 0o660


async def test_stale_socket_file_is_replaced(serve_unix: Start, tmp_path):
    """A socket file left by a dead process (nobody listening) does not block a start."""
    path = tmp_path / "proxy.sock"
    leftover = socket.socket(socket.AF_UNIX)
    leftover.bind(str(path))
    leftover.close()  # the file stays, nobody listens
    serving = await serve_unix(path)
    assert (await serving.get("/-/healthz"))[0] == 200


async def test_live_socket_is_not_stolen(serve_unix: Start, tmp_path):
    """A second proxy on a socket another process listens on exits 2; the first keeps serving."""
    path = tmp_path / "proxy.sock"
    first = await serve_unix(path)
    second = await serve_unix(path, wait=False)
    assert await asyncio.wait_for(second.proc.wait(), timeout=30) == 2
    assert (await first.get("/-/healthz"))[0] == 200


async def test_listed_uid_is_served(serve_unix: Start, tmp_path):
    """`allowed_uids` with the caller's own uid: served."""
    serving = await serve_unix(tmp_path / "proxy.sock", allowed_uids=(os.getuid(),))
    assert (await serving.get("/api/v1/user"))[0] == 200


async def test_unlisted_uid_is_refused_by_peer_credentials(
    serve_unix: Start, tmp_path, tapped_sandbox
):
    """A caller whose uid (from SO_PEERCRED, unforgeable) is not listed: 401, Tower untouched."""
    _sandbox, tap = tapped_sandbox
    serving = await serve_unix(
        tmp_path / "proxy.sock", allowed_uids=(os.getuid() + 4242,), unix_socket_mode="0666"
    )
    tap.seen.clear()
    status, headers, _ = await serving.get("/api/v1/user")
    assert (status, headers["X-Tower-Proxy-Error"]) == (401, "unauthorized_caller")
    assert (await serving.get("/-/token"))[0] == 401
    assert _tokens_seen(tap) == 0


def _tokens_seen(tap: Tap) -> int:
    return sum(1 for seen in tap.seen if seen.token)


@pytest.mark.parametrize("listen", ["0.0.0.0:0", "[::]:0", "192.0.2.10:8730"])
async def test_exposed_listen_without_keys_refuses_to_start(sandbox_config, tmp_path, listen):
    """Off loopback without inbound_keys_file: exit 2, one line naming the fix."""
    toml = write_config(sandbox_config, tmp_path / "exposed.toml")
    code, _, err = await run_cli(
        "serve", "--config", str(toml), "--listen", listen, log_name="security-exposed"
    )
    assert code == 2
    assert err.count("\n") == 1 and "inbound_keys_file" in err and "Traceback" not in err


async def test_exposed_listen_with_keys_is_accepted(sandbox_config, tmp_path):
    """With inbound keys the same listen address is valid configuration."""
    keys = write_keys(tmp_path / "keys", "k-gamma-1234567890abcdef")
    config = dataclasses.replace(
        sandbox_config,
        server=dataclasses.replace(
            sandbox_config.server, listen="0.0.0.0:8730", inbound_keys_file=keys
        ),
    )
    toml = write_config(config, tmp_path / "keyed.toml")
    code, out, _ = await run_cli("check-config", "--config", str(toml), log_name="security-cfg")
    assert code == 0
    assert "k-gamma-1234567890abcdef" not in out


async def test_world_usable_socket_without_uid_list_is_a_config_error(sandbox_config, tmp_path):
    """`unix_socket_mode = "0666"` alone would hand the token to every local user: exit 2."""
    config = dataclasses.replace(
        sandbox_config,
        server=dataclasses.replace(
            sandbox_config.server, listen=f"unix:{tmp_path}/p.sock", unix_socket_mode="0666"
        ),
    )
    toml = write_config(config, tmp_path / "open.toml")
    code, _, err = await run_cli("serve", "--config", str(toml), log_name="security-cfg")
    assert code == 2 and "unix_socket_mode" in err


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "cannot read"), ("# only a comment\n\n", "holds no key"), ("short\n", "16 characters")],
)
async def test_unusable_inbound_keys_file_refuses_to_start(
    sandbox_config, tmp_path, content, message
):
    """A missing keys file, one without keys, or a key under 16 characters: exit 2."""
    keys = tmp_path / "keys"
    if content is not None:
        keys.write_text(content)
    config = dataclasses.replace(
        sandbox_config,
        server=dataclasses.replace(sandbox_config.server, inbound_keys_file=str(keys)),
    )
    toml = write_config(config, tmp_path / "keys.toml")
    code, _, err = await run_cli("serve", "--config", str(toml), log_name="security-cfg")
    assert code == 2
    assert "server.inbound_keys_file" in err and message in err and "Traceback" not in err
