"""httpie through the proxy: nested JSON bodies, exit codes, the proxy's own errors."""

from __future__ import annotations

import json
from pathlib import Path

from .conftest import HTTPIE, Stack, run_tool, tool

LIST = "d95b0b76c837063168cb3b5de22fb451"  # the seed's "Design" todolist


def _env(tmp_path: Path) -> dict[str, str]:
    # A private config directory; update warnings off so httpie never calls home.
    config_dir = tmp_path / "httpie"
    config_dir.mkdir()
    (config_dir / "config.json").write_text('{"disable_update_warnings": true}')
    return {"HTTPIE_CONFIG_DIR": str(config_dir)}


async def test_httpie_reads_and_creates_with_nested_json(stack: Stack, tmp_path: Path):
    """`http GET` and `http POST todo[content]=...` work through the proxy as against Tower."""
    http = tool(HTTPIE)
    env = _env(tmp_path)
    common = ("--ignore-stdin", "--check-status", "--body")

    user = await run_tool("httpie", http, *common, "GET", f"{stack.api}/user", env=env)
    created = await run_tool(
        "httpie",
        http,
        *common,
        "POST",
        f"{stack.api}/todolists/{LIST}/todos",
        "todo[content]=Written by httpie",
        "todo[priority]=highest",
        env=env,
    )

    assert user.returncode == 0, user.stderr
    assert json.loads(user.stdout)["data"]["attributes"]["email"] == "alice@example.com"
    assert created.returncode == 0, created.stderr
    todo = json.loads(created.stdout)["data"]
    stored = stack.sandbox.state.store.todos[todo["id"]]
    assert (stored.content, stored.priority) == ("Written by httpie", "highest")


async def test_httpie_tells_towers_errors_from_the_proxys(stack: Stack, tmp_path: Path):
    """A Tower 404 and a proxy 404 both exit 4; only the proxy's carries X-Tower-Proxy-Error."""
    http = tool(HTTPIE)
    env = _env(tmp_path)
    common = ("--ignore-stdin", "--check-status", "--print=hb")
    missing = "0" * 32

    tower = await run_tool("httpie", http, *common, "GET", f"{stack.api}/todos/{missing}", env=env)
    outside = stack.api.removesuffix("/api/v1") + "/elsewhere"
    proxy = await run_tool("httpie", http, *common, "GET", outside, env=env)

    assert tower.returncode == 4 and proxy.returncode == 4
    assert "X-Tower-Proxy-Error" not in tower.stdout
    assert '"errors"' in tower.stdout
    assert "X-Tower-Proxy-Error: not_found" in proxy.stdout
