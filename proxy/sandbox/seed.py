"""Seed data: the JSON file that fills the sandbox at start.

`seed.json` next to this module is the default and the living example; pass
`--seed FILE` (or `SandboxSettings.seed_file`) to load another file of the
same shape. Ids are optional (32-hex guids are generated when missing);
`created_at` is optional everywhere (it defaults to the team's, then to now).
Member references (`creator`, `assignee`, `actor`, `members`) name member ids
of the same team; `creator` defaults to the user's own member.

    {
      "user": {"email": "alice@example.com", "nickname": "Alice"},
      "teams": [{
        "id", "name", "created_at",
        "members": [{"id", "nickname", "email", "role": "owner|admin|member", "phone"}],
        "projects": [{
          "id", "name", "desc", "creator", "members": [member ids], "color_id", "icon_id",
          "todolists": [{"id", "name", "desc", "todos": [{
            "id", "content", "desc", "creator", "assignee", "due_at", "start_at",
            "completed": bool, "priority": "highest|higher|normal|lower", "box": 0-3,
            "comments": [{"id", "creator", "content"}],
            "time_logs": [{"id", "creator", "starts_at", "ends_at", "desc"}]}]}],
          "topics": [{"id", "subject", "content", "creator"}],
          "files": [{"guid", "filename", "content_type", "text", "creator"}]}],
        "notifications": [{"id", "actor", "title", "content", "target_type",
                           "target_id", "is_read"}]}]
    }

The user (matched by e-mail) must be a member of every team. Events are not
listed: loading records "created", "commented" and "completed" events in file
order, as the API does for later changes. `files` become uploaded attachments
with `text` as their content, listed as project uploads.
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path

from .oss import object_key
from .records import (
    Attfile,
    Comment,
    Member,
    Notification,
    Project,
    Team,
    TimeLog,
    Todo,
    Todolist,
    Topic,
    Upload,
    User,
)
from .store import Store


class SeedError(ValueError):
    """The seed file is unreadable or does not have the documented shape."""


def read_seed(path: str | None) -> object:
    try:
        if path is None:
            text = resources.files(__package__).joinpath("seed.json").read_text("utf-8")
        else:
            text = Path(path).read_text("utf-8")
        return json.loads(text)
    except (OSError, ValueError) as error:
        raise SeedError(f"cannot read seed file {path or 'seed.json'}: {error}") from None


class _Node:
    """One JSON object of the seed, with the path used in error messages."""

    def __init__(self, value: object, path: str) -> None:
        if not isinstance(value, dict):
            raise SeedError(f"{path}: expected an object")
        self.value: dict[str, object] = value
        self.path = path

    def text(self, name: str, default: str | None = None) -> str:
        value = self.value.get(name, default)
        if not isinstance(value, str):
            raise SeedError(f"{self.path}.{name}: expected a string")
        return value

    def maybe_text(self, name: str) -> str | None:
        return self.text(name) if self.value.get(name) is not None else None

    def integer(self, name: str, default: int) -> int:
        value = self.value.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise SeedError(f"{self.path}.{name}: expected an integer")
        return value

    def nodes(self, name: str) -> list[_Node]:
        items = self.value.get(name, [])
        if not isinstance(items, list):
            raise SeedError(f"{self.path}.{name}: expected a list")
        return [_Node(item, f"{self.path}.{name}[{n}]") for n, item in enumerate(items)]

    def texts(self, name: str) -> list[str]:
        items = self.value.get(name, [])
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise SeedError(f"{self.path}.{name}: expected a list of strings")
        return [str(item) for item in items]


class _Loader:
    def __init__(self, store: Store, root: _Node) -> None:
        self.store = store
        self.root = root
        self.team: Team | None = None
        self.me: Member | None = None

    def load(self) -> None:
        user = _Node(self.root.value.get("user"), f"{self.root.path}.user")
        store = self.store
        store.user = User(store.user.id, user.text("email"), user.text("nickname"), store.now())
        for team in self.root.nodes("teams"):
            self._team(team)

    def _id(self, node: _Node, name: str = "id") -> str:
        return node.maybe_text(name) or self.store.new_id()

    def _created(self, node: _Node) -> str:
        default = self.team.created_at if self.team else self.store.now()
        return node.text("created_at", default)

    def _member_ref(self, node: _Node, name: str) -> str | None:
        ref = node.maybe_text(name)
        return None if ref is None else self._member_id(f"{node.path}.{name}", ref)

    def _member_id(self, path: str, ref: str) -> str:
        member = self.store.members.get(ref)
        if member is None or self.team is None or member.team_id != self.team.id:
            raise SeedError(f"{path}: {ref} is not a member of this team")
        return member.id

    def _creator(self, node: _Node) -> str:
        assert self.me is not None  # set before any record that has a creator
        return self._member_ref(node, "creator") or self.me.id

    def _team(self, node: _Node) -> None:
        store = self.store
        created = node.text("created_at", store.now())
        self.team = Team(self._id(node), node.text("name"), created, created)
        store.teams[self.team.id] = self.team
        for member in node.nodes("members"):
            self._member(member)
        self.me = next((m for m in store.members.values() if self._is_me(m)), None)
        if self.me is None:
            raise SeedError(f"{node.path}.members: the user {store.user.email} is not a member")
        for project in node.nodes("projects"):
            self._project(project)
        for notification in node.nodes("notifications"):
            self._notification(notification)

    def _is_me(self, member: Member) -> bool:
        assert self.team is not None
        return member.team_id == self.team.id and member.email == self.store.user.email

    def _member(self, node: _Node) -> None:
        assert self.team is not None
        created = self._created(node)
        member = Member(
            self._id(node), self.team.id, node.text("nickname"), node.text("email"),
            node.text("role", "member"), created, created, phone=node.maybe_text("phone"),
        )  # fmt: skip
        self.store.members[member.id] = member

    def _project(self, node: _Node) -> None:
        assert self.team is not None
        created = self._created(node)
        project = Project(
            self._id(node), self.team.id, node.text("name"), node.text("desc", ""),
            self._creator(node), created, created,
        )  # fmt: skip
        refs = node.texts("members")
        project.member_ids = [self._member_id(f"{node.path}.members", ref) for ref in refs]
        project.color_id = node.integer("color_id", 0) or None
        project.icon_id = node.integer("icon_id", 0) or None
        self.store.projects[project.id] = project
        for todolist in node.nodes("todolists"):
            self._todolist(project, todolist)
        for topic in node.nodes("topics"):
            self._topic(project, topic)
        for file in node.nodes("files"):
            self._file(project, file)

    def _todolist(self, project: Project, node: _Node) -> None:
        created = self._created(node)
        todolist = Todolist(
            self._id(node), project.id, node.text("name"), node.text("desc", ""), created, created
        )
        self.store.todolists[todolist.id] = todolist
        for todo in node.nodes("todos"):
            self._todo(project, todolist, todo)

    def _todo(self, project: Project, todolist: Todolist, node: _Node) -> None:
        store = self.store
        created = self._created(node)
        todo = Todo(
            self._id(node), project.team_id, store.next_wide_id(project.team_id), project.id,
            todolist.id, node.text("content"), self._creator(node), created, created,
            desc=node.text("desc", ""), assignee_id=self._member_ref(node, "assignee"),
            due_at=node.maybe_text("due_at"), start_at=node.maybe_text("start_at"),
            box=node.integer("box", 0), priority=node.text("priority", "normal"),
        )  # fmt: skip
        store.todos[todo.id] = todo
        store.record_event(store.members[todo.creator_id], "created", todo)
        for comment in node.nodes("comments"):
            self._comment(todo, comment)
        for log in node.nodes("time_logs"):
            self._time_log(todo, log)
        if node.value.get("completed") is True:
            todo.completed_at = created
            todo.closer_id = todo.assignee_id or todo.creator_id
            store.record_event(store.members[todo.closer_id], "completed", todo)

    def _comment(self, todo: Todo, node: _Node) -> None:
        created = self._created(node)
        comment = Comment(
            self._id(node), todo.id, self._creator(node), node.text("content"), created, created
        )
        self.store.comments[comment.id] = comment
        self.store.record_event(self.store.members[comment.creator_id], "commented", comment)

    def _time_log(self, todo: Todo, node: _Node) -> None:
        created = self._created(node)
        log = TimeLog(
            self._id(node), todo.id, todo.project_id, self._creator(node),
            node.text("starts_at"), node.text("ends_at"), node.text("desc", ""), created, created,
        )  # fmt: skip
        self.store.time_logs[log.id] = log

    def _topic(self, project: Project, node: _Node) -> None:
        store = self.store
        created = self._created(node)
        topic = Topic(
            self._id(node), project.team_id, store.next_wide_id(project.team_id), project.id,
            node.text("subject"), node.text("content", ""), self._creator(node), created, created,
        )  # fmt: skip
        store.topics[topic.id] = topic
        store.record_event(store.members[topic.creator_id], "created", topic)

    def _file(self, project: Project, node: _Node) -> None:
        store = self.store
        created = self._created(node)
        guid, filename = self._id(node, "guid"), node.text("filename")
        data = node.text("text", "").encode()
        md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
        attfile = Attfile(
            guid, project.team_id, filename, len(data), md5, object_key(guid, filename),
            created, node.text("content_type", "application/octet-stream"), data,
        )  # fmt: skip
        store.attfiles[guid] = attfile
        upload = Upload(
            store.new_id(), project.team_id, store.next_wide_id(project.team_id), project.id,
            guid, self._creator(node), created, created,
        )  # fmt: skip
        store.uploads[upload.id] = upload

    def _notification(self, node: _Node) -> None:
        assert self.team is not None and self.me is not None
        notification = Notification(
            self._id(node), self.team.id, self._member_ref(node, "actor") or self.me.id,
            node.text("title"), node.text("content", ""), node.text("target_type"),
            node.text("target_id"), self._created(node),
            is_read=node.value.get("is_read") is True,
        )  # fmt: skip
        self.store.notifications[notification.id] = notification


def load_seed(store: Store, document: object) -> None:
    """Fill an empty store from a seed document; raises SeedError naming the bad field."""
    _Loader(store, _Node(document, "seed")).load()
