"""Routes about the user, teams, members, notifications and the event feed."""

from __future__ import annotations

from aiohttp import web

from . import payload
from .errors import NotFound, Unprocessable
from .jsonapi import JSONAPI_VERSION, collection, paged, single
from .records import Event, Member, Team, Todo
from .respond import int_param, ok, store_of

routes = web.RouteTableDef()

EVENTS_DEFAULT_LIMIT = 20
EVENTS_MAX_LIMIT = 100
_MEMBER_TODO_LISTS = {
    "assigned_uncompleted_todos": ("assignee", False),
    "assigned_completed_todos": ("assignee", True),
    "created_uncompleted_todos": ("creator", False),
    "created_completed_todos": ("creator", True),
}


def team_of(request: web.Request) -> Team:
    store = store_of(request)
    team = store.get(store.teams, request.match_info["team_id"], "Team")
    store.my_member(team.id)  # a team the user is not in does not exist for them
    return team


@routes.get("/user")
async def get_user(request: web.Request) -> web.Response:
    store = store_of(request)
    return ok(single(store, store.user))


@routes.get("/teams")
async def list_teams(request: web.Request) -> web.Response:
    store = store_of(request)
    mine = {m.team_id for m in store.members.values() if m.email == store.user.email}
    return ok(collection(store, [t for t in store.teams.values() if t.id in mine]))


@routes.post("/teams")
async def create_team(request: web.Request) -> web.Response:
    store = store_of(request)
    name = payload.required_text(payload.wrapped(request, "team"), "name")
    now = store.now()
    team = Team(store.new_id(), name, now, now)
    store.teams[team.id] = team
    user = store.user
    owner = Member(store.new_id(), team.id, user.nickname, user.email, "owner", now, now)
    store.members[owner.id] = owner
    return ok(single(store, team))


@routes.patch("/teams/{team_id}")
async def update_team(request: web.Request) -> web.Response:
    team = team_of(request)
    name = payload.text(payload.wrapped(request, "team"), "name")
    if name == "":
        raise Unprocessable("Name can't be blank")
    if name is not None:
        team.name = name
    team.updated_at = store_of(request).now()
    return ok(single(store_of(request), team))


@routes.get("/teams/{team_id}/resources/{resource_id}")
async def team_resource(request: web.Request) -> web.Response:
    team = team_of(request)
    wide_id = int_param(request, "resource_id")
    target = store_of(request).wide_id_target(team.id, wide_id)
    if target is None:
        raise NotFound(f"Couldn't find a resource with 'id'={wide_id}")
    data = {"id": target.id, "type": target.TYPE}
    return ok({"data": data, "jsonapi": JSONAPI_VERSION})


@routes.get("/teams/{team_id}/notifications")
async def list_notifications(request: web.Request) -> web.Response:
    team = team_of(request)
    store = store_of(request)
    items = [n for n in store.notifications.values() if n.team_id == team.id]
    return ok(paged(request, store, items[::-1]))


@routes.get("/teams/{team_id}/events")
async def list_events(request: web.Request) -> web.Response:
    """Newest first; `last_item_id` continues after that event, `limit` caps the page."""
    team = team_of(request)
    store = store_of(request)
    events = [e for e in reversed(store.events.values()) if _event_matches(request, team, e)]
    last_item_id = request.query.get("last_item_id")
    if last_item_id:
        ids = [event.id for event in events]
        events = events[ids.index(last_item_id) + 1 :] if last_item_id in ids else []
    return ok(collection(store, events[: _events_limit(request)]))


def _event_matches(request: web.Request, team: Team, event: Event) -> bool:
    by_member = request.query.get("by_member")
    by_project = request.query.get("by_project")
    return (
        event.team_id == team.id
        and (not by_member or event.actor_id == by_member)
        and (not by_project or event.project_id == by_project)
    )


def _events_limit(request: web.Request) -> int:
    try:
        limit = int(request.query.get("limit", EVENTS_DEFAULT_LIMIT))
    except ValueError:
        limit = EVENTS_DEFAULT_LIMIT
    return min(EVENTS_MAX_LIMIT, limit if limit > 0 else EVENTS_DEFAULT_LIMIT)


@routes.get("/teams/{team_id}/members")
async def list_members(request: web.Request) -> web.Response:
    team = team_of(request)
    store = store_of(request)
    members = [m for m in store.members.values() if m.team_id == team.id]
    return ok(paged(request, store, members, default_size=200))


@routes.get("/teams/{team_id}/member")
async def my_member(request: web.Request) -> web.Response:
    team = team_of(request)
    store = store_of(request)
    return ok(single(store, store.my_member(team.id)))


def member_of(request: web.Request) -> Member:
    store = store_of(request)
    return store.get(store.members, request.match_info["member_id"], "Member")


@routes.get("/members/{member_id}")
async def get_member(request: web.Request) -> web.Response:
    return ok(single(store_of(request), member_of(request)))


@routes.get("/members/{member_id}/{kind}")
async def member_todos(request: web.Request) -> web.Response:
    member = member_of(request)
    store = store_of(request)
    kind = _MEMBER_TODO_LISTS.get(request.match_info["kind"])
    if kind is None:
        raise NotFound(f'No route matches [GET] "{request.path}"')
    todos = [t for t in store.todos.values() if _member_todo(member, t, *kind)]
    return ok(paged(request, store, todos))


def _member_todo(member: Member, todo: Todo, role: str, completed: bool) -> bool:
    person = todo.assignee_id if role == "assignee" else todo.creator_id
    return person == member.id and (todo.completed_at is not None) == completed
