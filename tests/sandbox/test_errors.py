"""Error answers: 404 for routes and records, 422 validation, 400 bad bodies."""

from __future__ import annotations

from .conftest import BOB, DESIGN, TEAM


async def test_unknown_record_is_404_json(harness, token):
    """A guid that does not exist: 404 with a JSON:API error naming it."""
    response = await harness.api("GET", f"/todos/{'0' * 32}", token)
    assert response.status == 404
    assert await response.json() == {
        "errors": [
            {
                "status": "404",
                "title": "Not Found",
                "detail": f"Couldn't find Todo with 'id'={'0' * 32}",
            }
        ]
    }


async def test_wrong_method_on_a_known_path_is_404_like_rails(harness, token):
    """Rails has no route for PUT /user, so it answers 404, not 405."""
    response = await harness.api("PUT", "/user", token, json={})
    assert response.status == 404


async def test_todo_without_content_is_422(harness, token):
    """Creating a todo with no content fails validation."""
    response = await harness.api(
        "POST", f"/todolists/{DESIGN}/todos", token, json={"todo": {"desc": "no content"}}
    )
    assert response.status == 422
    assert await response.json() == {
        "errors": [
            {"status": "422", "title": "Unprocessable Entity", "detail": "Content can't be blank"}
        ]
    }


async def test_assignee_outside_the_team_is_422(harness, token):
    """An assignee who is not a team member fails validation."""
    response = await harness.api(
        "POST",
        f"/todolists/{DESIGN}/todos",
        token,
        json={"todo": {"content": "x", "assignee_id": "1" * 32}},
    )
    assert response.status == 422


async def test_bad_json_is_400(harness, token):
    """A body that is not JSON is 400."""
    response = await harness.api(
        "POST",
        f"/todolists/{DESIGN}/todos",
        token,
        data=b"{oops",
        headers={"Content-Type": "application/json"},
    )
    assert response.status == 400
    assert (await response.json())["errors"][0]["title"] == "Bad Request"


async def test_missing_wrapper_is_400_like_params_require(harness, token):
    """No {"todo": ...} wrapper: Rails' ParameterMissing, 400."""
    response = await harness.api(
        "POST", f"/todolists/{DESIGN}/todos", token, json={"content": "unwrapped"}
    )
    assert response.status == 400
    assert (await response.json())["errors"][0]["detail"] == (
        "param is missing or the value is empty: todo"
    )


async def test_bad_due_date_and_priority_are_422(harness, token):
    """A due date that is no date, or an unknown priority, fails validation."""
    due = await harness.api(
        "PATCH", f"/todos/{'0' * 32}/due", token, json={"todos_due": {"due_at": "soon"}}
    )
    assert due.status == 404  # the record is looked up first
    created = await harness.json(
        "POST",
        f"/todolists/{DESIGN}/todos",
        token,
        json={"todo": {"content": "x", "assignee_id": BOB}},
    )
    path = f"/todos/{created['data']['id']}"
    bad_due = await harness.api(
        "PATCH", f"{path}/due", token, json={"todos_due": {"due_at": "soon"}}
    )
    bad_priority = await harness.api("PATCH", path, token, json={"todo": {"priority": "max"}})
    assert (bad_due.status, bad_priority.status) == (422, 422)


async def test_non_numeric_team_wide_id_is_404(harness, token):
    """/teams/{id}/todos/abc matches no record."""
    assert (await harness.api("GET", f"/teams/{TEAM}/todos/abc", token)).status == 404


async def test_unknown_paths_outside_the_api_are_json_404(harness):
    """Outside /api/v1 an unknown path answers a JSON 404 too."""
    response = await harness.client.get("/nothing/here")
    assert response.status == 404
    assert (await response.json())["error"] == "not_found"
