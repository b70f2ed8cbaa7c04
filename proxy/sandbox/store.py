"""The in-memory Tower: every record, how they hang together, and the event feed.

Invariants: a record is reachable only while its parents exist (deleting a
project deletes its todolists, todos, topics and uploads; deleting a todo
deletes its comments, time logs and sub-todos); team-wide ids only grow; the
user has exactly one member per team, found by e-mail. Ids come from the
sandbox's random source so `random_seed` makes a run repeatable.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TypeVar

from .errors import NotFound
from .records import (
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
    timestamp,
)

R = TypeVar("R")


class Store:
    def __init__(self, *, new_id: Callable[[], str], clock: Callable[[], float]) -> None:
        self._new_id = new_id
        self._clock = clock
        self.user = User(new_id(), "alice@example.com", "Alice", self.now())
        self.teams: dict[str, Team] = {}
        self.members: dict[str, Member] = {}
        self.projects: dict[str, Project] = {}
        self.todolists: dict[str, Todolist] = {}
        self.todos: dict[str, Todo] = {}
        self.comments: dict[str, Comment] = {}
        self.topics: dict[str, Topic] = {}
        self.attfiles: dict[str, Attfile] = {}
        self.uploads: dict[str, Upload] = {}
        self.time_logs: dict[str, TimeLog] = {}
        self.events: dict[str, Event] = {}
        self.notifications: dict[str, Notification] = {}

    def new_id(self) -> str:
        return self._new_id()

    def now(self) -> str:
        return timestamp(self._clock())

    def _tables(self) -> Mapping[str, Mapping[str, Record]]:
        return {
            "teams": self.teams,
            "members": self.members,
            "projects": self.projects,
            "todolists": self.todolists,
            "todos": self.todos,
            "comments": self.comments,
            "topics": self.topics,
            "attachments": self.attfiles,
            "uploads": self.uploads,
            "time_logs": self.time_logs,
            "events": self.events,
            "notifications": self.notifications,
        }

    def lookup(self, type_: str, id_: str) -> Record | None:
        if type_ == "users":
            return self.user if id_ == self.user.id else None
        table = self._tables().get(type_)
        return None if table is None else table.get(id_)

    @staticmethod
    def get(table: Mapping[str, R], id_: str, what: str) -> R:
        record = table.get(id_)
        if record is None:
            raise NotFound(f"Couldn't find {what} with 'id'={id_}")
        return record

    def my_member(self, team_id: str) -> Member:
        for member in self.members.values():
            if member.team_id == team_id and member.email == self.user.email:
                return member
        raise NotFound(f"Couldn't find Team with 'id'={team_id}")

    def next_wide_id(self, team_id: str) -> int:
        team = self.teams[team_id]
        team.last_wide_id += 1
        return team.last_wide_id

    def wide_id_target(self, team_id: str, wide_id: int) -> Todo | Topic | Upload | None:
        for table in (self.todos, self.topics, self.uploads):
            for record in table.values():
                if record.team_id == team_id and record.team_wide_id == wide_id:
                    return record
        return None

    def record_event(self, actor: Member, action: str, target: Todo | Topic | Comment) -> None:
        project_id = self._project_of(target)
        title = target.subject if isinstance(target, Topic) else target.content
        event = Event(
            self.new_id(), actor.team_id, project_id, actor.id, action, title,
            target.TYPE, target.id, self.now(),
        )  # fmt: skip
        self.events[event.id] = event

    def _project_of(self, target: Todo | Topic | Comment) -> str | None:
        if isinstance(target, Comment):
            todo = self.todos.get(target.todo_id)
            return todo.project_id if todo else None
        return target.project_id

    def delete_project(self, project: Project) -> None:
        for todolist in [t for t in self.todolists.values() if t.project_id == project.id]:
            self.delete_todolist(todolist)
        for topic in [t for t in self.topics.values() if t.project_id == project.id]:
            del self.topics[topic.id]
        for upload in [u for u in self.uploads.values() if u.project_id == project.id]:
            del self.uploads[upload.id]
        for log in [t for t in self.time_logs.values() if t.project_id == project.id]:
            del self.time_logs[log.id]
        del self.projects[project.id]

    def delete_todolist(self, todolist: Todolist) -> None:
        for todo in [t for t in self.todos.values() if t.todolist_id == todolist.id]:
            self.delete_todo(todo)
        del self.todolists[todolist.id]

    def delete_todo(self, todo: Todo) -> None:
        if todo.id not in self.todos:
            return  # already gone with its parent todo
        del self.todos[todo.id]
        for child in [t for t in self.todos.values() if t.parent_id == todo.id]:
            self.delete_todo(child)
        for comment in [c for c in self.comments.values() if c.todo_id == todo.id]:
            del self.comments[comment.id]
        for log in [t for t in self.time_logs.values() if t.todo_id == todo.id]:
            del self.time_logs[log.id]
