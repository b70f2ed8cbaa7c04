"""A todo's life: created, listed, completed, reopened, deleted — all consistent."""

from __future__ import annotations

from .conftest import BOB, BUILD, TEAM, assert_single


def _ids(document):
    return [item["id"] for item in document["data"]]


async def test_todo_lifecycle_moves_between_lists(harness, token):
    """Create → uncompleted lists; complete → completed lists; reopen → back; delete → 404."""
    created = await harness.json(
        "POST",
        f"/todolists/{BUILD}/todos",
        token,
        json={"todo": {"content": "Deploy", "assignee_id": BOB, "due_at": "2024-05-01"}},
    )
    assert_single(created, "todos")
    todo_id = created["data"]["id"]
    assert created["data"]["attributes"]["is_completed"] is False
    open_list = f"/todolists/{BUILD}/todos"
    done_list = f"/todolists/{BUILD}/todos?completed_todo=true"
    bob_open = f"/members/{BOB}/assigned_uncompleted_todos"
    bob_done = f"/members/{BOB}/assigned_completed_todos"
    assert todo_id in _ids(await harness.json("GET", open_list, token))
    assert todo_id in _ids(await harness.json("GET", bob_open, token))

    completed = await harness.json("POST", f"/todos/{todo_id}/completion", token)
    assert completed["data"]["attributes"]["is_completed"] is True
    assert completed["data"]["attributes"]["completed_at"] is not None
    assert todo_id not in _ids(await harness.json("GET", open_list, token))
    assert todo_id in _ids(await harness.json("GET", done_list, token))
    assert todo_id in _ids(await harness.json("GET", bob_done, token))

    reopened = await harness.api("DELETE", f"/todos/{todo_id}/completion", token)
    assert reopened.status == 200
    assert (await reopened.json())["data"]["attributes"]["is_completed"] is False
    assert todo_id in _ids(await harness.json("GET", open_list, token))
    assert todo_id not in _ids(await harness.json("GET", bob_done, token))

    assert (await harness.api("DELETE", f"/todos/{todo_id}", token)).status == 204
    assert (await harness.api("GET", f"/todos/{todo_id}", token)).status == 404
    assert todo_id not in _ids(await harness.json("GET", open_list, token))


async def test_lifecycle_is_written_to_the_event_feed(harness, token):
    """Each step of a todo's life adds an event, newest first."""
    created = await harness.json(
        "POST", f"/todolists/{BUILD}/todos", token, json={"todo": {"content": "Audit"}}
    )
    todo_id = created["data"]["id"]
    await harness.api("POST", f"/todos/{todo_id}/completion", token)
    await harness.api("DELETE", f"/todos/{todo_id}/completion", token)
    await harness.api("DELETE", f"/todos/{todo_id}", token)
    events = await harness.json("GET", f"/teams/{TEAM}/events?limit=4", token)
    assert [e["attributes"]["action"] for e in events["data"]] == [
        "deleted",
        "reopen",
        "completed",
        "created",
    ]
    assert {e["attributes"]["title"] for e in events["data"]} == {"Audit"}
    # The deleted todo keeps its linkage, with nothing to include.
    assert events["data"][0]["relationships"]["target"] == {
        "data": {"id": todo_id, "type": "todos"}
    }


async def test_new_todos_get_growing_team_wide_ids(harness, token):
    """Team-wide numbers keep growing and resolve through /teams/{id}/resources."""
    first = await harness.json(
        "POST", f"/todolists/{BUILD}/todos", token, json={"todo": {"content": "One"}}
    )
    second = await harness.json(
        "POST", f"/todolists/{BUILD}/todos", token, json={"todo": {"content": "Two"}}
    )
    n1 = first["data"]["attributes"]["team_wide_id"]
    assert second["data"]["attributes"]["team_wide_id"] == n1 + 1
    resolved = await harness.json("GET", f"/teams/{TEAM}/resources/{n1 + 1}", token)
    assert resolved["data"] == {"id": second["data"]["id"], "type": "todos"}
