"""Failure knobs set at start-up (settings, `python -m proxy.sandbox` flags), not only live."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import aiohttp
import pytest

from proxy.sandbox import SandboxSettings

from .conftest import CLIENT, OOB

ROOT = Path(__file__).resolve().parents[2]


async def _code_grant(client, state) -> int:
    form = {**CLIENT, "grant_type": "authorization_code", "code": state.issue_code()}
    response = await client.post("/oauth/token", data={**form, "redirect_uri": OOB})
    return int(response.status)


async def test_token_failures_at_start_fail_the_first_calls(make_harness):
    """token_failures=2 in the settings: the first two token calls 503, the third succeeds."""
    harness = await make_harness(token_failures=2)
    statuses = [await _code_grant(harness.client, harness.state) for _ in range(3)]
    assert statuses == [503, 503, 200]
    assert (await harness.stats())["token_responses"]["unavailable"] == 2


async def test_token_fail_seconds_at_start_is_a_window_from_start(make_harness):
    """token_fail_seconds=30 in the settings: 503 until the clock passes 30 s after start."""
    harness = await make_harness(token_fail_seconds=30)
    assert await _code_grant(harness.client, harness.state) == 503
    harness.clock.now += 31
    assert await _code_grant(harness.client, harness.state) == 200


@pytest.mark.parametrize(
    "settings",
    [{"token_failures": -1}, {"token_fail_seconds": -0.5}],
)
def test_negative_start_up_failure_knobs_are_refused(settings):
    """Negative failure counts or windows are rejected when the settings are built."""
    with pytest.raises(ValueError, match="token_fail"):
        SandboxSettings(**settings)


async def test_module_flags_set_the_failure_knobs(tmp_path):
    """`python -m proxy.sandbox --token-failures 3 --token-fail-seconds 60` shows in the knobs."""
    out_path = tmp_path / "sandbox.out"
    with out_path.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "proxy.sandbox", "--token-failures", "3",
            "--token-fail-seconds", "60", stdout=out, stderr=out, cwd=ROOT,
        )  # fmt: skip
    try:
        for _ in range(200):  # start-up only: wait for the one listening line
            if "listening on" in out_path.read_text():
                break
            await asyncio.sleep(0.05)
        base = out_path.read_text().split()[3]
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{base}/_sandbox/knobs") as response:
                knobs = await response.json()
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert knobs["token_failures"] == 3
    assert 0 < knobs["token_fail_seconds"] <= 60
