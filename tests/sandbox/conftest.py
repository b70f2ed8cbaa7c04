"""Fixtures for the simulator's own tests: real HTTP against `create_app`.

`harness` starts the API host and the file host under `aiohttp_client`, wires
them together and puts a fake clock in the state, so expiry is driven by
moving the clock, never by sleeping.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from proxy.sandbox import SANDBOX, Sandbox, SandboxSettings, create_app, create_file_host_app

OOB = "urn:ietf:wg:oauth:2.0:oob"
CALLBACK = "https://localhost/callback"
CLIENT = {"client_id": "sandbox-client", "client_secret": "sandbox-secret"}
START = 1_700_000_000.0
HEX32 = re.compile(r"^[0-9a-f]{32}$")
HEX64 = re.compile(r"^[0-9a-f]{64}$")


def seed_id(label: str) -> str:
    """Ids in the bundled seed.json are md5 of a label, so tests can name them."""
    return hashlib.md5(label.encode()).hexdigest()


TEAM = seed_id("team-sandbox")
ALICE, BOB, CAROL = seed_id("member-alice"), seed_id("member-bob"), seed_id("member-carol")
WEBSITE, MOBILE = seed_id("project-website"), seed_id("project-mobile")
DESIGN, BUILD = seed_id("list-design"), seed_id("list-build")
WIREFRAMES, PALETTE, HOMEPAGE = (
    seed_id("todo-wireframes"),
    seed_id("todo-palette"),
    seed_id("todo-homepage"),
)
KICKOFF = seed_id("topic-kickoff")
BRIEF = seed_id("file-brief")


class FakeClock:
    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Harness:
    client: TestClient[Any, Any]
    files: TestClient[Any, Any]
    state: Sandbox
    clock: FakeClock

    async def token(self, scopes: str = "") -> dict[str, Any]:
        """A token response from a real code exchange."""
        code = self.state.issue_code(scopes)
        form = {**CLIENT, "grant_type": "authorization_code", "code": code, "redirect_uri": OOB}
        response = await self.client.post("/oauth/token", data=form)
        assert response.status == 200
        body: dict[str, Any] = await response.json()
        return body

    async def access_token(self, scopes: str = "") -> str:
        return str((await self.token(scopes))["access_token"])

    async def refresh(self, refresh_token: str, **headers: str) -> Any:
        form = {**CLIENT, "grant_type": "refresh_token", "refresh_token": refresh_token}
        return await self.client.post(
            "/oauth/token", data={**form, "redirect_uri": OOB}, headers=headers
        )

    async def api(self, method: str, path: str, token: str, **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {token}", **kwargs.pop("headers", {})}
        return await self.client.request(method, "/api/v1" + path, headers=headers, **kwargs)

    async def json(
        self, method: str, path: str, token: str, status: int = 200, **kwargs: Any
    ) -> Any:
        response = await self.api(method, path, token, **kwargs)
        assert response.status == status, await response.text()
        return await response.json()

    async def stats(self) -> dict[str, Any]:
        body: dict[str, Any] = await (await self.client.get("/_sandbox/stats")).json()
        return body


MakeHarness = Callable[..., Awaitable[Harness]]


@pytest.fixture
def make_harness(aiohttp_client: Any) -> MakeHarness:
    async def make(**settings: Any) -> Harness:
        clock = FakeClock()
        app = create_app(SandboxSettings(**{"random_seed": 1, **settings}), clock=clock)
        client = await aiohttp_client(app)
        files = await aiohttp_client(create_file_host_app(app[SANDBOX]))
        app[SANDBOX].file_host_url = str(files.make_url("")).rstrip("/")
        return Harness(client, files, app[SANDBOX], clock)

    return make


@pytest.fixture
async def harness(make_harness: MakeHarness) -> Harness:
    return await make_harness(test_routes=True)


@pytest.fixture
async def token(harness: Harness) -> str:
    return await harness.access_token()


def assert_resource(resource: dict[str, Any], type_: str) -> None:
    assert set(resource) == {"id", "type", "attributes", "relationships"}
    assert HEX32.match(resource["id"]) and resource["type"] == type_
    for link in resource["relationships"].values():
        assert set(link) == {"data"}


def assert_single(document: dict[str, Any], type_: str) -> None:
    assert document["jsonapi"] == {"version": "1.0"}
    assert_resource(document["data"], type_)
    for item in document["included"]:
        assert_resource(item, item["type"])


def assert_list(document: dict[str, Any], type_: str) -> None:
    assert document["jsonapi"] == {"version": "1.0"}
    assert isinstance(document["data"], list)
    for item in document["data"]:
        assert_resource(item, type_)
    for item in document["included"]:
        assert_resource(item, item["type"])
