"""Running both hosts on real sockets, in-process and as `python -m proxy.sandbox`."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sys
from pathlib import Path

import aiohttp

from proxy.sandbox import SandboxSettings, start_sandbox

ROOT = Path(__file__).resolve().parents[2]
LISTENING = re.compile(
    r"^sandbox listening on (http://127\.0\.0\.1:\d+) \(files on (http://127\.0\.0\.1:\d+)\)\n$"
)


async def test_start_sandbox_serves_api_and_file_host_on_separate_ports():
    """start_sandbox binds two ports, wires the file host URL, and closes cleanly."""
    running = await start_sandbox(SandboxSettings(), "127.0.0.1", 0, 0)
    try:
        assert running.api_base != running.file_base
        assert running.sandbox.file_host_url == running.file_base
        code = running.sandbox.issue_code()
        async with aiohttp.ClientSession() as session:
            form = {
                "client_id": "sandbox-client",
                "client_secret": "sandbox-secret",
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": "urn:ietf:wg:oauth:2.0:oob",
            }
            async with session.post(f"{running.api_base}/oauth/token", data=form) as response:
                token = (await response.json())["access_token"]
            async with session.get(
                f"{running.api_base}/api/v1/user", headers={"Authorization": f"Bearer {token}"}
            ) as response:
                user = await response.json()
    finally:
        await running.close()
    assert user["data"]["attributes"]["email"] == "alice@example.com"


async def test_module_prints_one_line_and_exits_0_on_sigterm(tmp_path):
    """`python -m proxy.sandbox` prints the listening line, serves, and exits 0 on SIGTERM."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "proxy.sandbox",
        "--port",
        "0",
        "--token-ttl",
        "60",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )
    try:
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        match = LISTENING.match(line)
        assert match, line
        api_base = match.group(1)
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{api_base}/_sandbox/knobs") as response:
                assert (await response.json())["token_ttl"] == 60
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
        assert await proc.stdout.read() == b""
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_module_with_a_bad_seed_exits_2_with_one_line(tmp_path):
    """A seed file of the wrong shape: exit 2 and one line naming the field."""
    seed = tmp_path / "seed.json"
    seed.write_text(
        json.dumps({"user": {"email": "a@b.c", "nickname": "A"}, "teams": [{"name": 5}]})
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "proxy.sandbox",
        "--seed",
        str(seed),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2
    assert out == b""
    assert err.decode() == "sandbox: seed.teams[0].name: expected a string\n"
