"""Seed data: the bundled seed.json and custom files of the same shape."""

from __future__ import annotations

import json

import pytest

from proxy.sandbox.seed import SeedError, load_seed, read_seed
from proxy.sandbox.settings import SandboxSettings
from proxy.sandbox.state import Sandbox


def _store():
    return Sandbox(SandboxSettings(random_seed=3)).store


def test_bundled_seed_has_a_small_real_world():
    """One team, three members, two projects, ten todos and the rest."""
    store = _store()
    load_seed(store, read_seed(None))
    assert [t.name for t in store.teams.values()] == ["Sandbox Team"]
    assert {m.email: m.role for m in store.members.values()} == {
        "alice@example.com": "owner",
        "bob@example.com": "admin",
        "carol@example.com": "member",
    }
    counts = (
        len(store.projects),
        len(store.todolists),
        len(store.todos),
        len(store.topics),
        len(store.comments),
        len(store.time_logs),
        len(store.notifications),
        len(store.uploads),
        len(store.events),
    )
    assert counts == (2, 3, 10, 1, 3, 2, 2, 1, 17)
    assert store.user.email == "alice@example.com"


def test_custom_seed_file_is_loaded(tmp_path):
    """A minimal file: ids are generated and the creator defaults to the user."""
    path = tmp_path / "mine.json"
    path.write_text(
        json.dumps(
            {
                "user": {"email": "me@example.com", "nickname": "Me"},
                "teams": [
                    {
                        "name": "Mine",
                        "members": [{"nickname": "Me", "email": "me@example.com", "role": "owner"}],
                        "projects": [
                            {"name": "P", "todolists": [{"name": "L", "todos": [{"content": "T"}]}]}
                        ],
                    }
                ],
            }
        )
    )
    store = _store()
    load_seed(store, read_seed(str(path)))
    (todo,) = store.todos.values()
    (me,) = store.members.values()
    assert (todo.content, todo.creator_id, todo.team_wide_id) == ("T", me.id, 1)
    assert len(todo.id) == 32


def test_user_must_be_a_member_of_every_team():
    """A team without the user's member is refused, naming where."""
    document = {
        "user": {"email": "me@example.com", "nickname": "Me"},
        "teams": [{"name": "X", "members": []}],
    }
    with pytest.raises(SeedError, match=r"seed.teams\[0\].members: the user me@example.com"):
        load_seed(_store(), document)


def test_reference_to_an_unknown_member_is_refused():
    """An assignee that is not a member of the team is a SeedError with its path."""
    document = {
        "user": {"email": "me@example.com", "nickname": "Me"},
        "teams": [
            {
                "name": "X",
                "members": [{"nickname": "Me", "email": "me@example.com"}],
                "projects": [
                    {
                        "name": "P",
                        "todolists": [
                            {"name": "L", "todos": [{"content": "T", "assignee": "f" * 32}]}
                        ],
                    }
                ],
            }
        ],
    }
    with pytest.raises(SeedError, match=r"todos\[0\].assignee: f{32} is not a member"):
        load_seed(_store(), document)


def test_unreadable_seed_file_is_a_seed_error(tmp_path):
    """A missing or non-JSON file is a SeedError naming the file."""
    with pytest.raises(SeedError, match="cannot read seed file"):
        read_seed(str(tmp_path / "missing.json"))
