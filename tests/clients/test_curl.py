"""examples/clients/curl-tour.sh: typical curl calls through the proxy."""

from __future__ import annotations

import re

from .conftest import EXAMPLES, Stack, run_tool, tool

TOUR = EXAMPLES / "clients" / "curl-tour.sh"


async def test_curl_tour_lists_creates_updates_deletes_and_pages(stack: Stack):
    """The tour passes; every call reached the sandbox once, with the proxy's token."""
    tool("curl"), tool("jq")
    run = await run_tool("curl-tour", "bash", str(TOUR), stack.api)

    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[-1] == "tour ok"
    assert "user: alice@example.com" in run.stdout
    assert "members: 3 over 3 pages" in run.stdout
    todo = re.search(r"created todo: ([0-9a-f]{32})", run.stdout)
    assert todo is not None
    assert todo[1] not in stack.sandbox.state.store.todos  # created, then deleted

    calls = await stack.sandbox.requests()
    # user, teams, projects, todolists, todos, POST, list again, PATCH, completion,
    # DELETE, GET after delete, and three member pages: 14 calls, no replay.
    assert len(calls) == 14
    assert all(entry["token_fingerprint"] for entry in calls)
    assert [entry["method"] for entry in calls if entry["method"] != "GET"] == [
        "POST",
        "PATCH",
        "POST",
        "DELETE",
    ]
    pages = [e["raw_path"] for e in calls if "/members" in e["raw_path"]]
    assert len(pages) == 3 and "page%5Bnumber%5D=3" in pages[-1]
    stats = await stack.sandbox.stats()
    assert stats["token_requests"]["refresh_token"] == 0
    assert stats["api_unauthorized"] == 0
