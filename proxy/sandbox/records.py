"""The records the simulated Tower keeps, one dataclass per JSON:API type.

Records are plain mutable rows; `store.Store` owns them and keeps them
consistent, `render` turns them into JSON:API resource objects. Ids are
32-hex guids; `team_wide_id` is the per-team number Tower shows in URLs.
Timestamps are ISO-8601 strings in Tower's +08:00 form.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import ClassVar

TOWER_TZ = timezone(timedelta(hours=8))


def timestamp(unix_seconds: float) -> str:
    moment = datetime.fromtimestamp(unix_seconds, tz=TOWER_TZ)
    return moment.isoformat(timespec="milliseconds")


@dataclass(slots=True)
class User:
    TYPE: ClassVar[str] = "users"
    id: str
    email: str
    nickname: str
    created_at: str


@dataclass(slots=True)
class Team:
    TYPE: ClassVar[str] = "teams"
    id: str
    name: str
    created_at: str
    updated_at: str
    last_wide_id: int = 0


@dataclass(slots=True)
class Member:
    TYPE: ClassVar[str] = "members"
    id: str
    team_id: str
    nickname: str
    email: str
    role: str
    created_at: str
    updated_at: str
    phone: str | None = None
    comment: str | None = None
    is_active: bool = True


@dataclass(slots=True)
class Project:
    TYPE: ClassVar[str] = "projects"
    id: str
    team_id: str
    name: str
    desc: str
    creator_id: str
    created_at: str
    updated_at: str
    member_ids: list[str] = field(default_factory=list)
    color_id: int | None = None
    icon_id: int | None = None


@dataclass(slots=True)
class Todolist:
    TYPE: ClassVar[str] = "todolists"
    id: str
    project_id: str
    name: str
    desc: str
    created_at: str
    updated_at: str


@dataclass(slots=True)
class Todo:
    TYPE: ClassVar[str] = "todos"
    id: str
    team_id: str
    team_wide_id: int
    project_id: str
    todolist_id: str
    content: str
    creator_id: str
    created_at: str
    updated_at: str
    desc: str = ""
    assignee_id: str | None = None
    due_at: str | None = None
    start_at: str | None = None
    completed_at: str | None = None
    closer_id: str | None = None
    box: int = 0
    priority: str = "normal"
    labels: list[str] = field(default_factory=list)
    parent_id: str | None = None
    cc_member_ids: list[str] = field(default_factory=list)
    attfile_guids: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Comment:
    TYPE: ClassVar[str] = "comments"
    id: str
    todo_id: str
    creator_id: str
    content: str
    created_at: str
    updated_at: str


@dataclass(slots=True)
class Topic:
    TYPE: ClassVar[str] = "topics"
    id: str
    team_id: str
    team_wide_id: int
    project_id: str
    subject: str
    content: str
    creator_id: str
    created_at: str
    updated_at: str
    attfile_guids: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Attfile:
    """A file known to the file host; `data` is None until the upload arrives."""

    TYPE: ClassVar[str] = "attachments"
    id: str
    team_id: str
    filename: str
    byte_size: int
    md5: str
    key: str
    created_at: str
    content_type: str = "application/octet-stream"
    data: bytes | None = None


@dataclass(slots=True)
class Upload:
    TYPE: ClassVar[str] = "uploads"
    id: str
    team_id: str
    team_wide_id: int
    project_id: str
    attfile_id: str
    creator_id: str
    created_at: str
    updated_at: str


@dataclass(slots=True)
class TimeLog:
    TYPE: ClassVar[str] = "time_logs"
    id: str
    todo_id: str
    project_id: str
    creator_id: str
    starts_at: str
    ends_at: str
    desc: str
    created_at: str
    updated_at: str


@dataclass(slots=True)
class Event:
    TYPE: ClassVar[str] = "events"
    id: str
    team_id: str
    project_id: str | None
    actor_id: str
    action: str
    title: str
    target_type: str
    target_id: str
    created_at: str


@dataclass(slots=True)
class Notification:
    TYPE: ClassVar[str] = "notifications"
    id: str
    team_id: str
    actor_id: str
    title: str
    content: str
    target_type: str
    target_id: str
    created_at: str
    is_read: bool = False


Record = (
    User
    | Team
    | Member
    | Project
    | Todolist
    | Todo
    | Comment
    | Topic
    | Attfile
    | Upload
    | TimeLog
    | Event
    | Notification
)
