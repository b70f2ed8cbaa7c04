"""Fixtures for the real-client tests: a sandbox, a logged-in proxy on a loopback port.

The clients (curl, httpie, node, newman) run as child processes against the
proxy exactly as a user's tools would. Their output is appended to a file in
`LOG_DIR`, so the session's secret scan reads it too. A missing tool fails its
test with the fix (`scripts/setup`), never skips: CI must run them all.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from proxy.config import Config
from proxy.tokens import TokenSet

from ..conftest import LOG_DIR, PYTHON, ROOT, ProxyClient, ProxyFactory, SandboxHandle

EXAMPLES = ROOT / "examples"
NEWMAN = ROOT / "tools" / "node" / "node_modules" / ".bin" / "newman"
HTTPIE = Path(PYTHON).parent / "http"


@dataclass
class Stack:
    """The simulator upstream and an authorized proxy listening on 127.0.0.1."""

    sandbox: SandboxHandle
    proxy: ProxyClient
    config: Config

    @property
    def api(self) -> str:
        """What a user configures in their tool: the proxy's /api/v1 base."""
        return str(self.proxy.make_url("/api/v1"))


@pytest.fixture
async def stack(
    sandbox: SandboxHandle, config: Config, logged_in: TokenSet, make_proxy: ProxyFactory
) -> Stack:
    return Stack(sandbox=sandbox, proxy=await make_proxy(config), config=config)


@dataclass(frozen=True)
class ToolRun:
    returncode: int
    stdout: str
    stderr: str


def tool(path: str | Path) -> str:
    """The tool's executable, or a failure naming the set-up step that installs it."""
    found = shutil.which(str(path))
    if found is None:
        pytest.fail(f"{path} is not installed: run scripts/setup (scripts/setup.d/20-node.sh)")
    return found


async def run_tool(
    name: str,
    *argv: str,
    env: Mapping[str, str] | None = None,
    cwd: Path = ROOT,
    timeout: float = 120,
) -> ToolRun:
    """Run a client to completion while this event loop keeps serving the proxy."""
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=cwd,
        env={**os.environ, **(env or {})},
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout=timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    run = ToolRun(proc.returncode or 0, out.decode(), err.decode())
    with (LOG_DIR / f"client-{name}.log").open("a") as log:
        log.write(f"$ {' '.join(argv)}\n{run.stdout}{run.stderr}[exit {run.returncode}]\n")
    return run
