"""`[server] workers = N`: N processes on one port (SO_REUSEPORT), one refresh between them."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import signal
from pathlib import Path

import aiohttp
import pytest

from proxy.tokens import FileStore

from .conftest import wait_until

pytestmark = pytest.mark.slow


def _children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(child) for child in text.split()]


def _listening_inodes(port: int) -> set[str]:
    """Socket inodes in LISTEN state (0A) on 127.0.0.1:port, from /proc/net/tcp."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == f"0100007F:{port:04X}" and fields[3] == "0A":
            inodes.add(fields[9])
    return inodes


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = fd.readlink().name
        except FileNotFoundError:
            continue  # closed while we looked
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes


def _events(log_path: Path, name: str) -> list[dict[str, object]]:
    events = []
    for line in log_path.read_text().splitlines():
        if line.startswith("{"):
            event = json.loads(line)
            if event.get("event") == name:
                events.append(event)
    return events


async def test_two_workers_share_the_port_and_refresh_once(
    serve_process, config, sandbox, logged_in
):
    """2 workers each listen on the port; after a revoke, 60 requests: all 200, 1 refresh."""
    config = dataclasses.replace(config, server=dataclasses.replace(config.server, workers=2))
    process = await serve_process(config, "serve-workers")

    async def both_listening() -> bool:  # healthz answered as soon as one worker was up
        return len(_listening_inodes(process.port)) == 2

    await wait_until(both_listening)
    workers = _children(process.proc.pid)
    listening = _listening_inodes(process.port)
    assert len(workers) == 2
    assert [len(_socket_inodes(pid) & listening) for pid in workers] == [1, 1]

    await sandbox.revoke()
    # A connection each: the kernel spreads new connections over both workers.
    connector = aiohttp.TCPConnector(force_close=True, limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def get() -> int:
            async with session.get(process.base + "/api/v1/user") as response:
                return response.status

        statuses = await asyncio.gather(*(get() for _ in range(60)))

    assert statuses == [200] * 60
    assert await sandbox.refreshes() == 1
    stored = await FileStore(config.token_path).load()
    assert stored is not None and stored.generation == 2
    # One worker refreshed; the other found the new set in the shared file.

    async def both_logged() -> bool:  # log lines reach the file within log.FLUSH_DELAY
        names = ("token_refreshed", "token_store_changed")
        return all(_events(process.log_path, name) for name in names)

    await wait_until(both_logged)
    assert len(_events(process.log_path, "token_refreshed")) == 1
    assert len(_events(process.log_path, "token_store_changed")) == 1

    process.proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(process.proc.wait(), timeout=30) == 0
    assert len(_events(process.log_path, "stopped")) == 2
