"""The Tower API endpoints the sandbox simulates (issue 3's list), as (method, path).

`{}` stands for one path segment (an id, a team-wide number). The Postman
collection must call each of them; the test says which one it misses.
"""

from __future__ import annotations

_MEMBER_TODO_LISTS = (
    "assigned_uncompleted_todos",
    "assigned_completed_todos",
    "created_uncompleted_todos",
    "created_completed_todos",
)

ENDPOINTS: frozenset[tuple[str, str]] = frozenset(
    {
        ("GET", "/user"),
        ("GET", "/teams"),
        ("POST", "/teams"),
        ("PATCH", "/teams/{}"),
        ("GET", "/teams/{}/resources/{}"),
        ("GET", "/teams/{}/notifications"),
        ("GET", "/teams/{}/events"),
        ("GET", "/teams/{}/members"),
        ("GET", "/teams/{}/member"),
        ("GET", "/members/{}"),
        *(("GET", f"/members/{{}}/{kind}") for kind in _MEMBER_TODO_LISTS),
        ("GET", "/teams/{}/projects"),
        ("POST", "/teams/{}/projects"),
        ("GET", "/projects/{}"),
        ("PATCH", "/projects/{}"),
        ("DELETE", "/projects/{}"),
        ("GET", "/projects/{}/members"),
        ("GET", "/projects/{}/todolists"),
        ("POST", "/projects/{}/todolists"),
        ("GET", "/todolists/{}"),
        ("PATCH", "/todolists/{}"),
        ("DELETE", "/todolists/{}"),
        ("GET", "/todolists/{}/todos"),
        ("POST", "/todolists/{}/todos"),
        ("GET", "/todos/{}"),
        ("PATCH", "/todos/{}"),
        ("DELETE", "/todos/{}"),
        ("GET", "/teams/{}/todos/{}"),
        ("PATCH", "/teams/{}/todos/{}"),
        ("DELETE", "/teams/{}/todos/{}"),
        ("POST", "/todos/{}/completion"),
        ("DELETE", "/todos/{}/completion"),
        ("PATCH", "/todos/{}/assignment"),
        ("DELETE", "/todos/{}/assignment"),
        ("PATCH", "/todos/{}/due"),
        ("PATCH", "/todos/{}/desc"),
        ("GET", "/todos/{}/comments"),
        ("POST", "/todos/{}/comments"),
        ("GET", "/todos/{}/cc_members"),
        ("PATCH", "/todos/{}/cc_members"),
        ("GET", "/projects/{}/topics"),
        ("POST", "/projects/{}/topics"),
        ("GET", "/topics/{}"),
        ("PATCH", "/topics/{}"),
        ("DELETE", "/topics/{}"),
        ("GET", "/projects/{}/uploads"),
        ("POST", "/projects/{}/uploads"),
        ("GET", "/uploads/{}"),
        ("DELETE", "/uploads/{}"),
        ("GET", "/attfiles/{}"),
        ("POST", "/teams/{}/direct_uploads"),
        ("GET", "/projects/{}/time_logs"),
        ("GET", "/todos/{}/time_logs"),
        ("POST", "/todos/{}/time_logs"),
        ("PATCH", "/time_logs/{}"),
        ("DELETE", "/time_logs/{}"),
    }
)
