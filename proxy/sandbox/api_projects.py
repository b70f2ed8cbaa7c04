"""Routes for projects, their members, todolists and topics (discussions)."""

from __future__ import annotations

from aiohttp import web

from . import payload
from .api_teams import team_of
from .errors import Unprocessable
from .jsonapi import collection, paged, single
from .payload import Fields
from .records import Member, Project, Todolist, Topic
from .respond import no_content, ok, store_of
from .store import Store

routes = web.RouteTableDef()


def project_of(request: web.Request) -> Project:
    store = store_of(request)
    return store.get(store.projects, request.match_info["project_id"], "Project")


def team_members(store: Store, team_id: str, ids: list[str], what: str) -> list[Member]:
    """The members named by `ids`, all of whom must belong to the team."""
    members = [store.members.get(id_) for id_ in ids]
    found = [m for m in members if m is not None and m.team_id == team_id]
    if len(found) != len(ids):
        raise Unprocessable(f"{what} must be members of the team")
    return found


@routes.get("/teams/{team_id}/projects")
async def list_projects(request: web.Request) -> web.Response:
    team = team_of(request)
    store = store_of(request)
    return ok(collection(store, [p for p in store.projects.values() if p.team_id == team.id]))


@routes.post("/teams/{team_id}/projects")
async def create_project(request: web.Request) -> web.Response:
    team = team_of(request)
    store = store_of(request)
    fields = payload.wrapped(request, "project")
    me = store.my_member(team.id)
    now = store.now()
    project = Project(
        store.new_id(), team.id, payload.required_text(fields, "name"),
        payload.text(fields, "desc") or "", me.id, now, now,
    )  # fmt: skip
    _apply_project_fields(store, project, fields)
    if me.id not in project.member_ids:
        project.member_ids.insert(0, me.id)
    store.projects[project.id] = project
    return ok(single(store, project))


def _apply_project_fields(store: Store, project: Project, fields: Fields) -> None:
    member_ids = payload.text_list(fields, "member_ids")
    if member_ids is not None:
        members = team_members(store, project.team_id, member_ids, "Member ids")
        project.member_ids = [m.id for m in members]
    color_id, icon_id = payload.integer(fields, "color_id"), payload.integer(fields, "icon_id")
    project.color_id = project.color_id if color_id is None else color_id
    project.icon_id = project.icon_id if icon_id is None else icon_id


@routes.get("/projects/{project_id}")
async def get_project(request: web.Request) -> web.Response:
    return ok(single(store_of(request), project_of(request)))


@routes.patch("/projects/{project_id}")
async def update_project(request: web.Request) -> web.Response:
    project = project_of(request)
    store = store_of(request)
    fields = payload.wrapped(request, "project")
    if "name" in fields:
        project.name = payload.required_text(fields, "name")
    if "desc" in fields:
        project.desc = payload.text(fields, "desc") or ""
    _apply_project_fields(store, project, fields)
    project.updated_at = store.now()
    return ok(single(store, project))


@routes.delete("/projects/{project_id}")
async def delete_project(request: web.Request) -> web.Response:
    store_of(request).delete_project(project_of(request))
    return no_content()


@routes.get("/projects/{project_id}/members")
async def project_members(request: web.Request) -> web.Response:
    project = project_of(request)
    store = store_of(request)
    members = [store.members[i] for i in project.member_ids if i in store.members]
    return ok(paged(request, store, members, default_size=200))


def todolist_of(request: web.Request) -> Todolist:
    store = store_of(request)
    return store.get(store.todolists, request.match_info["todolist_id"], "Todolist")


@routes.get("/projects/{project_id}/todolists")
async def list_todolists(request: web.Request) -> web.Response:
    project = project_of(request)
    store = store_of(request)
    todolists = [t for t in store.todolists.values() if t.project_id == project.id]
    return ok(collection(store, todolists))


@routes.post("/projects/{project_id}/todolists")
async def create_todolist(request: web.Request) -> web.Response:
    project = project_of(request)
    store = store_of(request)
    fields = payload.wrapped(request, "todolist")
    name = payload.required_text(fields, "name")
    now = store.now()
    todolist = Todolist(
        store.new_id(), project.id, name, payload.text(fields, "desc") or "", now, now
    )
    store.todolists[todolist.id] = todolist
    return ok(single(store, todolist))


@routes.get("/todolists/{todolist_id}")
async def get_todolist(request: web.Request) -> web.Response:
    return ok(single(store_of(request), todolist_of(request)))


@routes.patch("/todolists/{todolist_id}")
async def update_todolist(request: web.Request) -> web.Response:
    todolist = todolist_of(request)
    store = store_of(request)
    fields = payload.wrapped(request, "todolist")
    if "name" in fields:
        todolist.name = payload.required_text(fields, "name")
    if "desc" in fields:
        todolist.desc = payload.text(fields, "desc") or ""
    todolist.updated_at = store.now()
    return ok(single(store, todolist))


@routes.delete("/todolists/{todolist_id}")
async def delete_todolist(request: web.Request) -> web.Response:
    store_of(request).delete_todolist(todolist_of(request))
    return no_content()


def topic_of(request: web.Request) -> Topic:
    store = store_of(request)
    return store.get(store.topics, request.match_info["topic_id"], "Topic")


@routes.get("/projects/{project_id}/topics")
async def list_topics(request: web.Request) -> web.Response:
    project = project_of(request)
    store = store_of(request)
    topics = [t for t in store.topics.values() if t.project_id == project.id]
    return ok(paged(request, store, topics[::-1]))


@routes.post("/projects/{project_id}/topics")
async def create_topic(request: web.Request) -> web.Response:
    project = project_of(request)
    store = store_of(request)
    fields = payload.wrapped(request, "message")
    me = store.my_member(project.team_id)
    now = store.now()
    topic = Topic(
        store.new_id(), project.team_id, store.next_wide_id(project.team_id), project.id,
        payload.required_text(fields, "subject"), payload.text(fields, "content") or "",
        me.id, now, now,
    )  # fmt: skip
    topic.attfile_guids = attfile_guids(request, store, fields) or []
    store.topics[topic.id] = topic
    store.record_event(me, "created", topic)
    return ok(single(store, topic))


def attfile_guids(request: web.Request, store: Store, fields: Fields) -> list[str] | None:
    """`attfile_guids` from the wrapper or the top level; each must be an uploaded file."""
    guids = payload.text_list(fields, "attfile_guids")
    if guids is None:
        guids = payload.text_list(payload.json_object(request), "attfile_guids")
    for guid in guids or []:
        attfile = store.attfiles.get(guid)
        if attfile is None or attfile.data is None:
            raise Unprocessable(f"Attachment {guid} has not been uploaded")
    return guids


@routes.get("/topics/{topic_id}")
async def get_topic(request: web.Request) -> web.Response:
    return ok(single(store_of(request), topic_of(request)))


@routes.patch("/topics/{topic_id}")
async def update_topic(request: web.Request) -> web.Response:
    topic = topic_of(request)
    store = store_of(request)
    fields = payload.wrapped(request, "message")
    if "subject" in fields:
        topic.subject = payload.required_text(fields, "subject")
    if "content" in fields:
        topic.content = payload.text(fields, "content") or ""
    guids = attfile_guids(request, store, fields)
    if guids is not None:  # omitted keeps the attachments, [] removes them
        topic.attfile_guids = guids
    topic.updated_at = store.now()
    return ok(single(store, topic))


@routes.delete("/topics/{topic_id}")
async def delete_topic(request: web.Request) -> web.Response:
    topic = topic_of(request)
    del store_of(request).topics[topic.id]
    return no_content()
