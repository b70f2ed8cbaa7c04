"""Who may call: inbound keys, browser origins and CORS, with aiohttp clients.

Each test ends with `assert_contained`: the canary heard nothing and the
token went nowhere but /api/v1.
"""

from __future__ import annotations

import json

import pytest

from ..conftest import LOG_DIR, raw_request
from .conftest import Rig, RigFactory, write_keys

KEY_A = "k-alpha-7f3c9e1d2b4a6f80"
KEY_B = "k-beta-0c1e2d3f4a5b6c7d8e"


@pytest.fixture
async def keyed(make_rig: RigFactory, tmp_path) -> Rig:
    return await make_rig(inbound_keys_file=write_keys(tmp_path / "keys", KEY_A, KEY_B))


@pytest.mark.parametrize(
    "presented",
    [None, "", "wrong-key-0000000000", KEY_A[:-1], KEY_A + "x", f" {KEY_A}x", KEY_A.upper()],
)
async def test_request_without_a_valid_key_is_refused(keyed: Rig, presented):
    """No key, a wrong one, a prefix or an extension of a real one: 401, Tower untouched."""
    headers = {} if presented is None else {"X-Proxy-Key": presented}
    response = await keyed.proxy.get("/api/v1/user", headers=headers)
    assert response.status == 401
    assert response.headers["X-Tower-Proxy-Error"] == "unauthorized_caller"
    assert keyed.tap.seen == []
    keyed.assert_contained()


@pytest.mark.parametrize("key", [KEY_A, KEY_B])
async def test_every_listed_key_is_accepted_and_stripped(keyed: Rig, key):
    """Both keys of a rotation work; Tower never sees X-Proxy-Key."""
    response = await keyed.proxy.get("/api/v1/_test/echo", headers={"X-Proxy-Key": key})
    assert response.status == 200
    echoed = await response.json()
    assert "x-proxy-key" not in {name.lower() for name in echoed["headers"]}
    assert key not in await response.text()
    keyed.assert_contained()


async def test_admin_token_state_needs_the_key_too(keyed: Rig):
    """`/-/token` is behind the same key; probes are not (they reveal nothing)."""
    assert (await keyed.proxy.get("/-/token")).status == 401
    assert (await keyed.proxy.get("/-/token", headers={"X-Proxy-Key": KEY_B})).status == 200
    assert (await keyed.proxy.get("/-/healthz")).status == 200


async def test_keys_never_reach_the_log(keyed: Rig):
    """Requests with right and wrong keys leave no key in the log."""
    for key in (KEY_A, KEY_B, "wrong-key-1111111111"):
        await keyed.proxy.get("/api/v1/user", headers={"X-Proxy-Key": key})
    text = (LOG_DIR / "in-process.log").read_text()
    lines = [json.loads(line) for line in text.splitlines()]
    assert sum(line.get("path") == "/api/v1/user" for line in lines) >= 3  # they were logged
    assert KEY_A not in text and KEY_B not in text


@pytest.mark.parametrize(
    "origin", ["http://evil.example", "http://localhost:3000.evil.example", "null"]
)
async def test_foreign_origin_is_refused_even_with_a_valid_key(keyed: Rig, origin):
    """A web page cannot borrow a key it somehow learned: its Origin is refused."""
    response = await keyed.proxy.get(
        "/api/v1/user", headers={"Origin": origin, "X-Proxy-Key": KEY_A}
    )
    assert response.status == 403
    assert response.headers["X-Tower-Proxy-Error"] == "forbidden_origin"
    assert "Access-Control-Allow-Origin" not in response.headers
    keyed.assert_contained()


APP = "http://localhost:3000"


@pytest.fixture
async def browser_rig(make_rig: RigFactory) -> Rig:
    return await make_rig(allowed_origins=(APP,))


async def test_preflight_for_an_allowed_origin_names_it_exactly(browser_rig: Rig):
    """The preflight is answered by the proxy: the origin itself, never `*`; Tower untouched."""
    response = await browser_rig.proxy.options(
        "/api/v1/todos/1",
        headers={
            "Origin": APP,
            "Access-Control-Request-Method": "PATCH",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert response.status == 204
    assert response.headers["Access-Control-Allow-Origin"] == APP
    assert "PATCH" in response.headers["Access-Control-Allow-Methods"]
    assert "Content-Type" in response.headers["Access-Control-Allow-Headers"]
    assert "Authorization" not in response.headers["Access-Control-Allow-Headers"]
    assert "Access-Control-Allow-Credentials" not in response.headers
    assert "Origin" in response.headers.getall("Vary")
    assert browser_rig.tap.seen == []


@pytest.mark.parametrize("origin", ["http://evil.example", "http://localhost:3001", "null"])
async def test_preflight_for_any_other_origin_is_refused(browser_rig: Rig, origin):
    """A preflight from an origin not listed: 403 and no CORS header at all."""
    response = await browser_rig.proxy.options(
        "/api/v1/user", headers={"Origin": origin, "Access-Control-Request-Method": "GET"}
    )
    assert response.status == 403
    assert response.headers["X-Tower-Proxy-Error"] == "forbidden_origin"
    assert not [h for h in response.headers if h.lower().startswith("access-control-")]
    assert browser_rig.tap.seen == []


async def test_allowed_origin_reads_the_answer_without_tower_cors_headers(browser_rig: Rig):
    """The allowed page gets the answer with its own origin named; Tower's CORS never passes."""
    response = await browser_rig.proxy.get(
        "/api/v1/_test/echo", headers={"Origin": APP, "Sec-Fetch-Site": "same-site"}
    )
    assert response.status == 200
    assert response.headers.getall("Access-Control-Allow-Origin") == [APP]
    assert [seen.token for seen in browser_rig.tap.seen] == [browser_rig.token.access_token]
    browser_rig.assert_contained()


async def test_read_only_proxy_offers_only_read_methods_in_preflight(make_rig: RigFactory):
    """With read_only the preflight lists GET, HEAD and OPTIONS only."""
    rig = await make_rig(allowed_origins=(APP,), read_only=True)
    response = await rig.proxy.options(
        "/api/v1/user", headers={"Origin": APP, "Access-Control-Request-Method": "DELETE"}
    )
    assert response.headers["Access-Control-Allow-Methods"] == "GET, HEAD, OPTIONS"


async def test_host_of_a_configured_service_name_is_accepted(make_rig: RigFactory):
    """`allowed_hosts` adds names (any port); other names stay refused."""
    rig = await make_rig(allowed_hosts=("tower-proxy",))
    ok = await raw_request(
        "127.0.0.1",
        rig.port,
        b"GET /api/v1/user HTTP/1.1\r\nHost: tower-proxy:8730\r\nConnection: close\r\n\r\n",
    )
    refused = await raw_request(
        "127.0.0.1",
        rig.port,
        b"GET /api/v1/user HTTP/1.1\r\nHost: tower-proxy.evil:8730\r\nConnection: close\r\n\r\n",
    )
    assert (ok.status, refused.status) == (200, 403)
    rig.assert_contained()
