"""`tower-proxy sandbox` as a newcomer runs it: own seed, short tokens, refreshes in the log."""

from __future__ import annotations

import asyncio
import json
import re
import signal
from pathlib import Path

import aiohttp

from ..conftest import LOG_DIR, PYTHON, ROOT, free_port, run_cli, wait_until

SEED = {
    "user": {"email": "dev@example.com", "nickname": "Dev"},
    "teams": [
        {
            "name": "My Own Team",
            "members": [{"nickname": "Dev", "email": "dev@example.com", "role": "owner"}],
            "projects": [{"name": "Rehearsal", "todolists": [{"name": "Inbox"}]}],
        }
    ],
}


def _refreshed_generations(log: str) -> list[int]:
    return [
        json.loads(line)["generation"]
        for line in log.splitlines()
        if line.startswith("{") and '"token_refreshed"' in line
    ]


async def test_short_token_ttl_and_own_seed_show_refreshes_in_the_log(tmp_path: Path):
    """--token-ttl 3 --seed F: the user's data answers, and refreshes appear in the log."""
    seed = tmp_path / "seed.json"
    seed.write_text(json.dumps(SEED))
    port = free_port()
    log_path = LOG_DIR / f"client-sandbox-command-{port}.log"
    with log_path.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            PYTHON, "-m", "proxy", "sandbox", "--port", str(port),
            "--token-ttl", "3", "--seed", str(seed),
            stdout=out, stderr=out, cwd=ROOT,
        )  # fmt: skip
    try:
        await wait_until(lambda: _logged(log_path, "Ctrl-C stops both"))
        welcome = log_path.read_text()
        assert "watch for token_refreshed lines" in welcome
        simulator = re.search(r"Tower simulator:\s+(http://127\.0\.0\.1:\d+)", welcome)
        assert simulator is not None
        # Two proactive refreshes: each new token lives 3 s and is renewed before it ends.
        await wait_until(lambda: _logged_refreshes(log_path, 2))
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/api/v1/teams") as response:
                assert response.status == 200
                teams = await response.json()
            async with session.get(f"{simulator[1]}/_sandbox/stats") as response:
                stats = await response.json()
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()

    assert [team["attributes"]["name"] for team in teams["data"]] == ["My Own Team"]
    generations = _refreshed_generations(log_path.read_text())
    assert generations[:2] == [2, 3]  # the login stored generation 1
    assert stats["token_requests"]["refresh_token"] >= 2
    assert stats["token_responses"]["invalid_grant"] == 0


async def test_unreadable_seed_is_one_line_and_exit_2(tmp_path: Path):
    """A seed file that is not JSON: one stderr line naming it, exit 2, no traceback."""
    seed = tmp_path / "broken.json"
    seed.write_text("{not json")
    rc, _, err = await run_cli(
        "sandbox", "--port", str(free_port()), "--seed", str(seed), log_name="client-sandbox"
    )
    assert rc == 2
    assert err.count("\n") == 1 and "broken.json" in err
    assert "Traceback" not in err


async def _logged(path: Path, text: str) -> bool:
    return text in path.read_text()


async def _logged_refreshes(path: Path, count: int) -> bool:
    return len(_refreshed_generations(path.read_text())) >= count
