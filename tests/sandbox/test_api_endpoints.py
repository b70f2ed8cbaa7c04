"""Every documented /api/v1 endpoint answers its documented status and shape."""

from __future__ import annotations

import pytest

from .conftest import (
    ALICE,
    BOB,
    BRIEF,
    CAROL,
    DESIGN,
    HOMEPAGE,
    KICKOFF,
    MOBILE,
    PALETTE,
    TEAM,
    WEBSITE,
    WIREFRAMES,
    assert_list,
    assert_resource,
    assert_single,
)

SINGLE_READS = [
    ("/user", "users"),
    (f"/teams/{TEAM}/member", "members"),
    (f"/members/{BOB}", "members"),
    (f"/projects/{WEBSITE}", "projects"),
    (f"/todolists/{DESIGN}", "todolists"),
    (f"/todos/{WIREFRAMES}", "todos"),
    (f"/teams/{TEAM}/todos/1", "todos"),
    (f"/topics/{KICKOFF}", "topics"),
]
LIST_READS = [
    ("/teams", "teams", 1),
    (f"/teams/{TEAM}/notifications", "notifications", 2),
    (f"/teams/{TEAM}/members", "members", 3),
    (f"/members/{BOB}/assigned_uncompleted_todos", "todos", 2),
    (f"/members/{BOB}/assigned_completed_todos", "todos", 2),
    (f"/members/{ALICE}/created_uncompleted_todos", "todos", 2),
    (f"/members/{ALICE}/created_completed_todos", "todos", 3),
    (f"/teams/{TEAM}/projects", "projects", 2),
    (f"/projects/{MOBILE}/members", "members", 2),
    (f"/projects/{WEBSITE}/todolists", "todolists", 2),
    (f"/todolists/{DESIGN}/todos", "todos", 3),
    (f"/todolists/{DESIGN}/todos?completed_todo=true", "todos", 1),
    (f"/todos/{WIREFRAMES}/comments", "comments", 2),
    (f"/todos/{WIREFRAMES}/cc_members", "members", 0),
    (f"/projects/{WEBSITE}/topics", "topics", 1),
    (f"/projects/{WEBSITE}/uploads", "uploads", 1),
    (f"/projects/{WEBSITE}/time_logs", "time_logs", 2),
    (f"/todos/{PALETTE}/time_logs", "time_logs", 1),
    (f"/teams/{TEAM}/events", "events", 17),
]


@pytest.mark.parametrize(("path", "type_"), SINGLE_READS)
async def test_single_reads_are_jsonapi_documents(harness, token, path, type_):
    """GET of one record: 200 and a JSON:API document of the right type."""
    assert_single(await harness.json("GET", path, token), type_)


@pytest.mark.parametrize(("path", "type_", "count"), LIST_READS)
async def test_list_reads_are_jsonapi_lists(harness, token, path, type_, count):
    """GET of a list: 200, a JSON:API list with the seeded number of records."""
    document = await harness.json("GET", path, token)
    assert_list(document, type_)
    assert len(document["data"]) == count


async def test_included_holds_linked_records_once(harness, token):
    """Relationships carry linkage only; the linked records sit once in `included`."""
    document = await harness.json("GET", f"/todos/{WIREFRAMES}", token)
    links = document["data"]["relationships"]
    assert links["assignee"] == {"data": {"id": BOB, "type": "members"}}
    assert links["project"] == {"data": {"id": WEBSITE, "type": "projects"}}
    keys = [(item["type"], item["id"]) for item in document["included"]]
    assert len(keys) == len(set(keys))
    assert ("members", BOB) in keys and ("todolists", DESIGN) in keys


async def test_team_resource_maps_a_team_wide_id(harness, token):
    """/teams/{id}/resources/{n} answers the record's id and type only."""
    document = await harness.json("GET", f"/teams/{TEAM}/resources/1", token)
    assert document == {"data": {"id": WIREFRAMES, "type": "todos"}, "jsonapi": {"version": "1.0"}}


async def test_team_create_and_rename(harness, token):
    """POST /teams makes the user its owner; PATCH renames it."""
    created = await harness.json("POST", "/teams", token, json={"team": {"name": "Second"}})
    assert_single(created, "teams")
    team_id = created["data"]["id"]
    member = await harness.json("GET", f"/teams/{team_id}/member", token)
    assert member["data"]["attributes"]["role"] == "owner"
    renamed = await harness.json(
        "PATCH", f"/teams/{team_id}", token, json={"team": {"name": "Renamed"}}
    )
    assert renamed["data"]["attributes"]["name"] == "Renamed"
    assert len((await harness.json("GET", "/teams", token))["data"]) == 2


async def test_project_create_update_delete(harness, token):
    """Projects: create 200 (creator is a member), update 200, delete 204, then 404."""
    body = {"project": {"name": "Docs", "desc": "<p>d</p>", "member_ids": [CAROL]}}
    created = await harness.json("POST", f"/teams/{TEAM}/projects", token, json=body)
    assert_single(created, "projects")
    project_id = created["data"]["id"]
    members = created["data"]["relationships"]["members"]["data"]
    assert [m["id"] for m in members] == [ALICE, CAROL]
    updated = await harness.json(
        "PATCH", f"/projects/{project_id}", token, json={"project": {"name": "Docs 2"}}
    )
    assert updated["data"]["attributes"]["name"] == "Docs 2"
    assert (await harness.api("DELETE", f"/projects/{project_id}", token)).status == 204
    assert (await harness.api("GET", f"/projects/{project_id}", token)).status == 404


async def test_todolist_create_update_delete_takes_its_todos(harness, token):
    """Todolists: create, update, delete 204; its todos are gone with it."""
    created = await harness.json(
        "POST", f"/projects/{WEBSITE}/todolists", token, json={"todolist": {"name": "QA"}}
    )
    assert_single(created, "todolists")
    list_id = created["data"]["id"]
    todo = await harness.json(
        "POST", f"/todolists/{list_id}/todos", token, json={"todo": {"content": "Test forms"}}
    )
    patched = await harness.json(
        "PATCH", f"/todolists/{list_id}", token, json={"todolist": {"desc": "Quality"}}
    )
    assert patched["data"]["attributes"]["desc"] == "Quality"
    assert (await harness.api("DELETE", f"/todolists/{list_id}", token)).status == 204
    assert (await harness.api("GET", f"/todos/{todo['data']['id']}", token)).status == 404


async def test_topic_create_update_delete(harness, token):
    """Topics take {"message": {subject, content}}; delete is 204."""
    created = await harness.json(
        "POST",
        f"/projects/{MOBILE}/topics",
        token,
        json={"message": {"subject": "Release", "content": "<p>v1</p>"}},
    )
    assert_single(created, "topics")
    topic_id = created["data"]["id"]
    patched = await harness.json(
        "PATCH", f"/topics/{topic_id}", token, json={"message": {"subject": "Release v1"}}
    )
    assert patched["data"]["attributes"]["subject"] == "Release v1"
    assert patched["data"]["attributes"]["content"] == "<p>v1</p>"
    assert (await harness.api("DELETE", f"/topics/{topic_id}", token)).status == 204
    assert (await harness.api("GET", f"/topics/{topic_id}", token)).status == 404


async def test_time_log_create_update_delete(harness, token):
    """Time logs: create on a todo, listed on its project, update, delete 204."""
    body = {
        "time_log": {
            "starts_at": "2024-04-01T09:00:00+08:00",
            "ends_at": "2024-04-01T10:30:00+08:00",
            "desc": "Review",
        }
    }
    created = await harness.json("POST", f"/todos/{HOMEPAGE}/time_logs", token, json=body)
    assert_single(created, "time_logs")
    assert created["data"]["attributes"]["duration"] == 5400
    log_id = created["data"]["id"]
    project_logs = await harness.json("GET", f"/projects/{WEBSITE}/time_logs", token)
    assert log_id in [item["id"] for item in project_logs["data"]]
    patched = await harness.json(
        "PATCH",
        f"/time_logs/{log_id}",
        token,
        json={"time_log": {"ends_at": "2024-04-01T11:00:00+08:00"}},
    )
    assert patched["data"]["attributes"]["duration"] == 7200
    assert (await harness.api("DELETE", f"/time_logs/{log_id}", token)).status == 204


async def test_project_time_logs_filter_by_creator_and_dates(harness, token):
    """creator_id, starts_date and ends_date narrow the project's time logs."""
    path = f"/projects/{WEBSITE}/time_logs"
    by_carol = await harness.json("GET", f"{path}?creator_id={CAROL}", token)
    assert [i["relationships"]["creator"]["data"]["id"] for i in by_carol["data"]] == [CAROL]
    window = await harness.json("GET", f"{path}?starts_date=2024-03-19&ends_date=2024-03-31", token)
    assert [i["attributes"]["desc"] for i in window["data"]] == ["Moodboard"]


async def test_todo_side_endpoints(harness, token):
    """Assignment, due, desc, cc_members and comments answer as documented."""
    path = f"/todos/{HOMEPAGE}"
    assigned = await harness.json(
        "PATCH", f"{path}/assignment", token, json={"todos_assignment": {"assignee_id": CAROL}}
    )
    assert assigned["data"]["relationships"]["assignee"]["data"]["id"] == CAROL
    unassigned = await harness.api("DELETE", f"{path}/assignment", token)
    assert (unassigned.status, await unassigned.read()) == (200, b"")
    due = await harness.json(
        "PATCH", f"{path}/due", token, json={"todos_due": {"due_at": "2018-01-10"}}
    )
    assert due["data"]["attributes"]["due_at"] == "2018-01-10"
    desc = await harness.json(
        "PATCH", f"{path}/desc", token, json={"todos_desc": {"desc": "<p>New</p>"}}
    )
    assert desc["data"]["attributes"]["desc"] == "<p>New</p>"
    cc = await harness.json("PATCH", f"{path}/cc_members", token, json={"guids": [BOB, CAROL]})
    assert [m["id"] for m in cc["data"]] == [BOB, CAROL]
    listed = await harness.json("GET", f"{path}/cc_members", token)
    assert [m["id"] for m in listed["data"]] == [BOB, CAROL]
    comment = await harness.json(
        "POST", f"{path}/comments", token, json={"comment": {"content": "<p>Done soon</p>"}}
    )
    assert_resource(comment["data"], "comments")
    comments = await harness.json("GET", f"{path}/comments", token)
    assert comments["data"][-1]["attributes"]["content"] == "<p>Done soon</p>"


async def test_todo_by_team_wide_id_can_be_patched_and_deleted(harness, token):
    """/teams/{id}/todos/{n} reaches the same todo for PATCH and DELETE."""
    created = await harness.json(
        "POST", f"/todolists/{DESIGN}/todos", token, json={"todo": {"content": "Favicon"}}
    )
    number = created["data"]["attributes"]["team_wide_id"]
    path = f"/teams/{TEAM}/todos/{number}"
    patched = await harness.json("PATCH", path, token, json={"todo": {"priority": "higher"}})
    assert patched["data"]["id"] == created["data"]["id"]
    assert patched["data"]["attributes"]["priority"] == "higher"
    assert (await harness.api("DELETE", path, token)).status == 204
    assert (await harness.api("GET", path, token)).status == 404


async def test_attfile_answers_plain_json_with_a_file_host_url(harness, token):
    """/attfiles/{guid} is plain JSON {"url"} on the file host, not JSON:API."""
    body = await harness.json("GET", f"/attfiles/{BRIEF}", token)
    assert list(body) == ["url"]
    assert body["url"].startswith(f"{harness.state.file_host_url}/attachments/{BRIEF}/brief.txt?")
