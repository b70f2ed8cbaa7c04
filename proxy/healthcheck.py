"""`tower-proxy healthcheck`: ask a running proxy's probe, for a container HEALTHCHECK.

The image carries no curl: this calls `/-/readyz` (or `/-/healthz` with
`--live`) on the configured admin address, or on `server.listen` when there
is none, over TCP or the unix socket, and turns the answer into an exit code.
A wildcard listen address (0.0.0.0, ::) is reached through loopback.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import aiohttp

from .config import Config, TcpAddress, UnixAddress

_WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


@dataclass(frozen=True, slots=True)
class ProbeResult:
    ok: bool
    summary: str  # one line for the operator: never carries a secret


def probe_target(config: Config) -> TcpAddress | UnixAddress:
    return config.server.admin_address or config.server.address


async def probe(config: Config, *, live: bool, deadline: float) -> ProbeResult:
    address = probe_target(config)
    path = "/-/healthz" if live else "/-/readyz"
    connector, url = _endpoint(address, path)
    try:
        async with (
            aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=deadline)
            ) as session,
            session.get(url, allow_redirects=False) as response,
        ):
            body = await response.read()
            return _result(response.status, body, path)
    except (aiohttp.ClientError, TimeoutError) as exc:
        return ProbeResult(False, f"{path}: no answer from {_show(address)} ({type(exc).__name__})")


def _endpoint(address: TcpAddress | UnixAddress, path: str) -> tuple[aiohttp.BaseConnector, str]:
    if isinstance(address, UnixAddress):
        return aiohttp.UnixConnector(path=address.path), f"http://localhost{path}"
    host = _WILDCARDS.get(address.host, address.host)
    shown = f"[{host}]" if ":" in host else host
    return aiohttp.TCPConnector(), f"http://{shown}:{address.port}{path}"


def _result(status: int, body: bytes, path: str) -> ProbeResult:
    try:
        data = json.loads(body)
    except ValueError:
        data = {}
    state = data.get("status", "") if isinstance(data, dict) else ""
    reason = data.get("reason", "") if isinstance(data, dict) else ""
    text = f"{path}: {status} {state}".rstrip() + (f" ({reason})" if reason else "")
    return ProbeResult(status == 200, text)


def _show(address: TcpAddress | UnixAddress) -> str:
    if isinstance(address, UnixAddress):
        return f"unix:{address.path}"
    return f"{address.host}:{address.port}"
