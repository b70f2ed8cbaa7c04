"""Routes for time logs, listed per project (with filters) or per todo."""

from __future__ import annotations

from aiohttp import web

from . import payload
from .api_projects import project_of, team_members
from .api_todos import todo_of
from .errors import Unprocessable
from .jsonapi import paged, single
from .payload import Fields
from .records import TimeLog
from .render import duration_seconds
from .respond import no_content, ok, store_of
from .store import Store

routes = web.RouteTableDef()


def _log_of(request: web.Request) -> TimeLog:
    store = store_of(request)
    return store.get(store.time_logs, request.match_info["time_log_id"], "TimeLog")


@routes.get("/projects/{project_id}/time_logs")
async def project_time_logs(request: web.Request) -> web.Response:
    project = project_of(request)
    store = store_of(request)
    creator_id = request.query.get("creator_id")
    starts_date = request.query.get("starts_date", "")
    ends_date = request.query.get("ends_date", "9999")
    logs = [
        log
        for log in store.time_logs.values()
        if log.project_id == project.id
        and (not creator_id or log.creator_id == creator_id)
        and starts_date <= log.starts_at[:10] <= ends_date
    ]
    return ok(paged(request, store, logs))


@routes.get("/todos/{todo_id}/time_logs")
async def todo_time_logs(request: web.Request) -> web.Response:
    todo = todo_of(request)
    store = store_of(request)
    logs = [log for log in store.time_logs.values() if log.todo_id == todo.id]
    return ok(paged(request, store, logs))


@routes.post("/todos/{todo_id}/time_logs")
async def create_time_log(request: web.Request) -> web.Response:
    todo = todo_of(request)
    store = store_of(request)
    fields = payload.wrapped(request, "time_log")
    now = store.now()
    log = TimeLog(
        store.new_id(), todo.id, todo.project_id, store.my_member(todo.team_id).id,
        _time(fields, "starts_at"), _time(fields, "ends_at"), "", now, now,
    )  # fmt: skip
    _apply_fields(store, log, fields, todo.team_id)
    store.time_logs[log.id] = log
    return ok(single(store, log))


@routes.patch("/time_logs/{time_log_id}")
async def update_time_log(request: web.Request) -> web.Response:
    log = _log_of(request)
    store = store_of(request)
    fields = payload.wrapped(request, "time_log")
    for name in ("starts_at", "ends_at"):
        if name in fields:
            setattr(log, name, _time(fields, name))
    _apply_fields(store, log, fields, store.todos[log.todo_id].team_id)
    log.updated_at = store.now()
    return ok(single(store, log))


@routes.delete("/time_logs/{time_log_id}")
async def delete_time_log(request: web.Request) -> web.Response:
    log = _log_of(request)
    del store_of(request).time_logs[log.id]
    return no_content()


def _time(fields: Fields, name: str) -> str:
    value = payload.moment(fields, name)
    if value is None:
        raise Unprocessable(f"{name.replace('_', ' ').capitalize()} can't be blank")
    return value


def _apply_fields(store: Store, log: TimeLog, fields: Fields, team_id: str) -> None:
    if "desc" in fields:
        log.desc = payload.text(fields, "desc") or ""
    creator_id = payload.text(fields, "creator_id")
    if creator_id:
        log.creator_id = team_members(store, team_id, [creator_id], "Creator")[0].id
    if duration_seconds(log.starts_at, log.ends_at) < 0:
        raise Unprocessable("Ends at must be after starts at")
