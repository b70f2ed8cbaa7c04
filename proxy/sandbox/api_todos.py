"""Routes for todos: CRUD, completion, assignment, due date, description, cc.

A todo is found by guid (`/todos/{id}`) or by team-wide number
(`/teams/{id}/todos/{n}`). Completing moves it from the uncompleted lists to
the completed ones; reopening moves it back; deleting makes it 404.
"""

from __future__ import annotations

from aiohttp import web

from . import payload
from .api_projects import attfile_guids, team_members, todolist_of
from .api_teams import team_of
from .errors import BadRequest, NotFound, Unprocessable
from .jsonapi import collection, paged, single
from .payload import Fields
from .records import Comment, Todo
from .respond import flag, int_param, no_content, ok, store_of
from .store import Store

routes = web.RouteTableDef()

PRIORITIES = ("highest", "higher", "normal", "lower")


def todo_of(request: web.Request) -> Todo:
    store = store_of(request)
    if "todo_id" in request.match_info:
        return store.get(store.todos, request.match_info["todo_id"], "Todo")
    team = team_of(request)
    wide_id = int_param(request, "team_wide_id")
    target = store.wide_id_target(team.id, wide_id)
    if not isinstance(target, Todo):
        raise NotFound(f"Couldn't find Todo with 'team_wide_id'={wide_id}")
    return target


@routes.get("/todolists/{todolist_id}/todos")
async def list_todos(request: web.Request) -> web.Response:
    todolist = todolist_of(request)
    store = store_of(request)
    completed = flag(request, "completed_todo")
    todos = [
        t
        for t in store.todos.values()
        if t.todolist_id == todolist.id and (t.completed_at is not None) == completed
    ]
    return ok(paged(request, store, todos))


@routes.post("/todolists/{todolist_id}/todos")
async def create_todo(request: web.Request) -> web.Response:
    todolist = todolist_of(request)
    store = store_of(request)
    fields = payload.wrapped(request, "todo")
    project = store.projects[todolist.project_id]
    me = store.my_member(project.team_id)
    now = store.now()
    todo = Todo(
        store.new_id(), project.team_id, 0, project.id, todolist.id,
        payload.required_text(fields, "content"), me.id, now, now,
    )  # fmt: skip
    _apply_fields(request, store, todo, fields)
    todo.team_wide_id = store.next_wide_id(project.team_id)
    store.todos[todo.id] = todo
    store.record_event(me, "created", todo)
    return ok(single(store, todo))


def _apply_fields(request: web.Request, store: Store, todo: Todo, fields: Fields) -> None:
    if "content" in fields:
        todo.content = payload.required_text(fields, "content")
    if "desc" in fields:
        todo.desc = payload.text(fields, "desc") or ""
    if "assignee_id" in fields:
        todo.assignee_id = _assignee(store, todo, fields)
    for name in ("due_at", "start_at"):
        if name in fields:
            setattr(todo, name, payload.moment(fields, name))
    if "priority" in fields:
        todo.priority = _priority(fields)
    if "parent_id" in fields:
        todo.parent_id = _parent(store, todo, fields)
    guids = attfile_guids(request, store, fields)
    if guids is not None:
        todo.attfile_guids = guids


def _assignee(store: Store, todo: Todo, fields: Fields) -> str | None:
    assignee_id = payload.text(fields, "assignee_id")
    if not assignee_id:
        return None
    return team_members(store, todo.team_id, [assignee_id], "Assignee")[0].id


def _priority(fields: Fields) -> str:
    priority = payload.text(fields, "priority") or "normal"
    if priority not in PRIORITIES:
        raise Unprocessable(f"Priority must be one of {', '.join(PRIORITIES)}")
    return priority


def _parent(store: Store, todo: Todo, fields: Fields) -> str | None:
    parent_id = payload.text(fields, "parent_id")
    if not parent_id:
        return None
    parent = store.todos.get(parent_id)
    if parent is None or parent.project_id != todo.project_id or parent.id == todo.id:
        raise Unprocessable("Parent must be a todo of the same project")
    return parent.id


@routes.get("/todos/{todo_id}")
@routes.get("/teams/{team_id}/todos/{team_wide_id}")
async def get_todo(request: web.Request) -> web.Response:
    return ok(single(store_of(request), todo_of(request)))


@routes.patch("/todos/{todo_id}")
@routes.patch("/teams/{team_id}/todos/{team_wide_id}")
async def update_todo(request: web.Request) -> web.Response:
    todo = todo_of(request)
    store = store_of(request)
    _apply_fields(request, store, todo, payload.wrapped(request, "todo"))
    todo.updated_at = store.now()
    return ok(single(store, todo))


@routes.delete("/todos/{todo_id}")
@routes.delete("/teams/{team_id}/todos/{team_wide_id}")
async def delete_todo(request: web.Request) -> web.Response:
    todo = todo_of(request)
    store = store_of(request)
    store.delete_todo(todo)
    store.record_event(store.my_member(todo.team_id), "deleted", todo)
    return no_content()


@routes.post("/todos/{todo_id}/completion")
async def complete_todo(request: web.Request) -> web.Response:
    todo = todo_of(request)
    store = store_of(request)
    me = store.my_member(todo.team_id)
    if todo.completed_at is None:
        todo.completed_at, todo.closer_id = store.now(), me.id
        store.record_event(me, "completed", todo)
    return ok(single(store, todo))


@routes.delete("/todos/{todo_id}/completion")
async def reopen_todo(request: web.Request) -> web.Response:
    todo = todo_of(request)
    store = store_of(request)
    if todo.completed_at is not None:
        todo.completed_at, todo.closer_id = None, None
        store.record_event(store.my_member(todo.team_id), "reopen", todo)
    return ok(single(store, todo))


@routes.patch("/todos/{todo_id}/assignment")
async def assign_todo(request: web.Request) -> web.Response:
    todo = todo_of(request)
    store = store_of(request)
    fields = payload.wrapped(request, "todos_assignment")
    todo.assignee_id = _assignee(store, todo, {"assignee_id": fields.get("assignee_id")})
    store.record_event(store.my_member(todo.team_id), "assigned", todo)
    return ok(single(store, todo))


@routes.delete("/todos/{todo_id}/assignment")
async def unassign_todo(request: web.Request) -> web.Response:
    todo = todo_of(request)
    store = store_of(request)
    todo.assignee_id = None
    store.record_event(store.my_member(todo.team_id), "unassigned", todo)
    return web.Response(status=200)  # Tower documents this 200 without a body


@routes.patch("/todos/{todo_id}/due")
async def set_due(request: web.Request) -> web.Response:
    todo = todo_of(request)
    todo.due_at = payload.moment(payload.wrapped(request, "todos_due"), "due_at")
    return ok(single(store_of(request), todo))


@routes.patch("/todos/{todo_id}/desc")
async def set_desc(request: web.Request) -> web.Response:
    todo = todo_of(request)
    todo.desc = payload.text(payload.wrapped(request, "todos_desc"), "desc") or ""
    return ok(single(store_of(request), todo))


@routes.get("/todos/{todo_id}/comments")
async def list_comments(request: web.Request) -> web.Response:
    todo = todo_of(request)
    store = store_of(request)
    comments = [c for c in store.comments.values() if c.todo_id == todo.id]
    return ok(paged(request, store, comments))


@routes.post("/todos/{todo_id}/comments")
async def create_comment(request: web.Request) -> web.Response:
    todo = todo_of(request)
    store = store_of(request)
    content = payload.required_text(payload.wrapped(request, "comment"), "content")
    me = store.my_member(todo.team_id)
    now = store.now()
    comment = Comment(store.new_id(), todo.id, me.id, content, now, now)
    store.comments[comment.id] = comment
    store.record_event(me, "commented", comment)
    return ok(single(store, comment))


@routes.get("/todos/{todo_id}/cc_members")
async def list_cc_members(request: web.Request) -> web.Response:
    todo = todo_of(request)
    store = store_of(request)
    members = [store.members[i] for i in todo.cc_member_ids if i in store.members]
    return ok(collection(store, members))


@routes.patch("/todos/{todo_id}/cc_members")
async def set_cc_members(request: web.Request) -> web.Response:
    todo = todo_of(request)
    store = store_of(request)
    guids = payload.text_list(payload.json_object(request), "guids")
    if guids is None:
        raise BadRequest("param is missing or the value is empty: guids")
    members = team_members(store, todo.team_id, guids, "Guids")
    todo.cc_member_ids = [m.id for m in members]
    return ok(collection(store, members))
