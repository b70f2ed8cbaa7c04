"""Records as JSON:API resource objects.

Each resource carries `{id, type, attributes, relationships}`; relationships
hold only `{id, type}` linkage, and `resource()` also returns the linked
records so the document can put them in `included` (one level deep, as Tower
does). A link to a record that no longer exists keeps its linkage.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from .records import (
    TOWER_TZ,
    Attfile,
    Comment,
    Event,
    Member,
    Notification,
    Project,
    Record,
    Team,
    TimeLog,
    Todo,
    Todolist,
    Topic,
    Upload,
    User,
)
from .store import Store

JsonObject = dict[str, object]


@dataclass(frozen=True, slots=True)
class Ref:
    """Linkage to a record that may be gone (an event about a deleted todo)."""

    type: str
    id: str


Link = Record | Ref | list[Record] | None


def resource(store: Store, record: Record) -> tuple[JsonObject, list[Record]]:
    """The resource object and the records it links to."""
    attributes, links = _shape(store, record)
    related: list[Record] = []
    relationships: JsonObject = {}
    for name, link in links.items():
        relationships[name] = {"data": _linkage(link)}
        if isinstance(link, list):
            related += link
        elif link is not None and not isinstance(link, Ref):
            related.append(link)
    body: JsonObject = {"id": record.id, "type": record.TYPE, "attributes": attributes}
    body["relationships"] = relationships
    return body, related


def _linkage(link: Link) -> object:
    if link is None:
        return None
    if isinstance(link, list):
        return [{"id": item.id, "type": item.TYPE} for item in link]
    if isinstance(link, Ref):
        return {"id": link.id, "type": link.type}
    return {"id": link.id, "type": link.TYPE}


def _shape(store: Store, record: Record) -> tuple[JsonObject, dict[str, Link]]:
    match record:
        case User():
            return _user(store, record)
        case Team():
            return _team(record), {}
        case Member():
            return _member(store, record)
        case Project():
            return _project(store, record)
        case Todolist():
            return _todolist(store, record)
        case Todo():
            return _todo(store, record)
        case Comment() | Topic():
            return _discussion(store, record)
        case Attfile():
            return _attfile(record), {}
        case Upload():
            return _upload(store, record)
        case TimeLog():
            return _time_log(store, record)
        case Event() | Notification():
            return _activity(store, record)


def _stamps(record: Team | Member | Project | Todolist | Todo | Comment | Topic) -> JsonObject:
    return {"created_at": record.created_at, "updated_at": record.updated_at}


def _avatar(id_: str) -> str:
    return f"https://avatar.tower.im/{id_}"


def _user(store: Store, user: User) -> tuple[JsonObject, dict[str, Link]]:
    teams = [
        team
        for team in store.teams.values()
        if any(m.team_id == team.id and m.email == user.email for m in store.members.values())
    ]
    attributes: JsonObject = {"email": user.email, "nickname": user.nickname}
    attributes |= {"gavatar": _avatar(user.id), "created_at": user.created_at}
    return attributes, {"teams": list[Record](teams)}


def _team(team: Team) -> JsonObject:
    return {"name": team.name, **_stamps(team)}


def _member(store: Store, member: Member) -> tuple[JsonObject, dict[str, Link]]:
    attributes: JsonObject = {
        "nickname": member.nickname,
        "email": member.email,
        "is_active": member.is_active,
        "gavatar": _avatar(member.id),
        "role": member.role,
        "comment": member.comment,
        "phone": member.phone,
        **_stamps(member),
    }
    return attributes, {"team": store.teams.get(member.team_id), "groups": []}


def _project(store: Store, project: Project) -> tuple[JsonObject, dict[str, Link]]:
    attributes: JsonObject = {
        "name": project.name,
        "desc": project.desc,
        "is_archived": False,
        "color_id": project.color_id,
        "icon_id": project.icon_id,
        **_stamps(project),
    }
    members: list[Record] = [store.members[i] for i in project.member_ids if i in store.members]
    links: dict[str, Link] = {"team": store.teams.get(project.team_id), "members": members}
    links["creator"] = store.members.get(project.creator_id)
    return attributes, links


def _todolist(store: Store, todolist: Todolist) -> tuple[JsonObject, dict[str, Link]]:
    attributes: JsonObject = {"name": todolist.name, "desc": todolist.desc}
    attributes |= {"is_archived": False, **_stamps(todolist)}
    return attributes, {"project": store.projects.get(todolist.project_id)}


def _todo(store: Store, todo: Todo) -> tuple[JsonObject, dict[str, Link]]:
    attributes: JsonObject = {
        "content": todo.content,
        "desc": todo.desc,
        "is_completed": todo.completed_at is not None,
        "completed_at": todo.completed_at,
        "due_at": todo.due_at,
        "start_at": todo.start_at,
        "box": todo.box,
        "priority": todo.priority,
        "labels": list(todo.labels),
        "team_wide_id": todo.team_wide_id,
        **_stamps(todo),
    }
    links: dict[str, Link] = {
        "project": store.projects.get(todo.project_id),
        "todolist": store.todolists.get(todo.todolist_id),
        "creator": store.members.get(todo.creator_id),
        "assignee": store.members.get(todo.assignee_id or ""),
        "closer": store.members.get(todo.closer_id or ""),
        "parent": store.todos.get(todo.parent_id or ""),
        "sub_todos": [t for t in store.todos.values() if t.parent_id == todo.id],
        "attachments": _attachments(store, todo.attfile_guids),
        "cc_members": [store.members[i] for i in todo.cc_member_ids if i in store.members],
        "todos_check_items": [],
        "custom_field_value": None,
    }
    return attributes, links


def _attachments(store: Store, guids: list[str]) -> list[Record]:
    return [store.attfiles[guid] for guid in guids if guid in store.attfiles]


def _discussion(store: Store, record: Comment | Topic) -> tuple[JsonObject, dict[str, Link]]:
    links: dict[str, Link] = {"creator": store.members.get(record.creator_id)}
    if isinstance(record, Comment):
        links["todo"] = store.todos.get(record.todo_id)
        return {"content": record.content, **_stamps(record)}, links
    links["project"] = store.projects.get(record.project_id)
    links["attachments"] = _attachments(store, record.attfile_guids)
    attributes: JsonObject = {"subject": record.subject, "content": record.content}
    attributes |= {"team_wide_id": record.team_wide_id, **_stamps(record)}
    return attributes, links


def _attfile(attfile: Attfile) -> JsonObject:
    return {
        "name": attfile.filename,
        "size": attfile.byte_size,
        "content_type": attfile.content_type,
        "is_uploaded": attfile.data is not None,
        "created_at": attfile.created_at,
    }


def _upload(store: Store, upload: Upload) -> tuple[JsonObject, dict[str, Link]]:
    attfile = store.attfiles.get(upload.attfile_id)
    attributes: JsonObject = {
        "name": attfile.filename if attfile else None,
        "size": attfile.byte_size if attfile else None,
        "content_type": attfile.content_type if attfile else None,
        "team_wide_id": upload.team_wide_id,
        "created_at": upload.created_at,
        "updated_at": upload.updated_at,
    }
    links: dict[str, Link] = {"project": store.projects.get(upload.project_id)}
    links |= {"creator": store.members.get(upload.creator_id), "attachment": attfile}
    return attributes, links


def _time_log(store: Store, log: TimeLog) -> tuple[JsonObject, dict[str, Link]]:
    attributes: JsonObject = {
        "starts_at": log.starts_at,
        "ends_at": log.ends_at,
        "duration": duration_seconds(log.starts_at, log.ends_at),
        "desc": log.desc,
        "created_at": log.created_at,
        "updated_at": log.updated_at,
    }
    links: dict[str, Link] = {"todo": store.todos.get(log.todo_id)}
    links |= {"project": store.projects.get(log.project_id)}
    links["creator"] = store.members.get(log.creator_id)
    return attributes, links


def duration_seconds(starts_at: str, ends_at: str) -> int:
    delta = _moment(ends_at) - _moment(starts_at)
    return int(delta.total_seconds())


def _moment(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    # A bare date or local time means Tower's own time zone.
    return moment if moment.tzinfo else moment.replace(tzinfo=TOWER_TZ)


def _activity(store: Store, record: Event | Notification) -> tuple[JsonObject, dict[str, Link]]:
    target = store.lookup(record.target_type, record.target_id)
    links: dict[str, Link] = {
        "actor": store.members.get(record.actor_id),
        "target": target or Ref(record.target_type, record.target_id),
    }
    attributes: JsonObject = {"title": record.title, "created_at": record.created_at}
    if isinstance(record, Event):
        attributes["action"] = record.action
        links["project"] = store.projects.get(record.project_id or "")
    else:
        attributes |= {"content": record.content, "is_read": record.is_read}
    return attributes, links
