"""examples/clients/node-fetch.mjs: a non-Python program using Node's built-in fetch."""

from __future__ import annotations

import json

from .conftest import EXAMPLES, Stack, run_tool, tool

SCRIPT = EXAMPLES / "clients" / "node-fetch.mjs"


async def test_node_fetch_script_creates_deletes_and_pages(stack: Stack):
    """The script reads, creates, completes, deletes and pages via links.next through the proxy."""
    run = await run_tool("node-fetch", tool("node"), str(SCRIPT), stack.api)

    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout.splitlines()[-1])
    assert summary["email"] == "alice@example.com"
    assert summary["projects"] == 2
    assert (summary["deleteStatus"], summary["afterDeleteStatus"]) == (204, 404)
    assert summary["members"] == ["Alice", "Bob", "Carol"]
    assert summary["pages"] == 3
    assert summary["todo"] not in stack.sandbox.state.store.todos
    stats = await stack.sandbox.stats()
    # user, teams, projects, todolists, POST, completion, DELETE, GET, three pages
    assert stats["api_requests"] == 11
    assert stats["token_requests"]["refresh_token"] == 0
