"""The forwarding path (SPEC section 2) against a real sandbox upstream."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json

from .conftest import free_port, get_head, make_config, raw_request


async def test_get_is_forwarded_with_the_token(proxy, sandbox, logged_in):
    """A plain GET gets Tower's answer; upstream saw the stored token."""
    response = await proxy.get("/api/v1/user")
    assert response.status == 200
    assert (await response.json())["data"]["type"] == "users"
    last = (await sandbox.requests())[-1]
    assert (
        last["token_fingerprint"] == hashlib.sha256(logged_in.access_token.encode()).hexdigest()[:8]
    )


async def test_path_and_query_go_upstream_byte_exact(proxy, sandbox):
    """Percent-encoding, order and brackets are untouched."""
    target = "/api/v1/_test/echo/caf%C3%A9/a%20b?page%5Bnumber%5D=2&z=1&a=%2F&empty="
    response = await raw_request(proxy.host, proxy.port, get_head(target))
    assert response.status == 200
    assert response.json()["raw_path"] == target


async def test_client_credentials_are_removed(proxy, sandbox, logged_in):
    """An incoming Authorization header and access_token parameter never reach Tower."""
    response = await proxy.get(
        "/api/v1/_test/echo?access_token=stolen&keep=1",
        headers={"Authorization": "Bearer clientsupplied"},
    )
    echoed = await response.json()
    assert echoed["raw_path"] == "/api/v1/_test/echo?keep=1"
    last = (await sandbox.requests())[-1]
    assert (
        last["token_fingerprint"] == hashlib.sha256(logged_in.access_token.encode()).hexdigest()[:8]
    )


async def test_hop_by_hop_headers_are_dropped_both_ways(proxy):
    """Connection-listed and RFC 9110 hop-by-hop headers are not forwarded."""
    response = await proxy.get(
        "/api/v1/_test/echo",
        headers={
            "Connection": "keep-alive, X-Secret-Hop",
            "X-Secret-Hop": "1",
            "TE": "trailers",
            "Proxy-Authorization": "Basic eA==",
            "X-Kept": "yes",
        },
    )
    headers = {k.lower(): v for k, v in (await response.json())["headers"].items()}
    assert "x-secret-hop" not in headers and "te" not in headers
    assert "proxy-authorization" not in headers
    assert headers["x-kept"] == "yes"


async def test_request_id_is_generated_sent_upstream_and_returned(proxy, sandbox):
    """X-Request-ID from the client is kept; without one, one is made."""
    given = await proxy.get("/api/v1/user", headers={"X-Request-ID": "abc-123"})
    assert given.headers["X-Request-ID"] == "abc-123"
    assert (await sandbox.requests())[-1]["headers"]["X-Request-ID"] == "abc-123"
    made = await proxy.get("/api/v1/user")
    assert len(made.headers["X-Request-ID"]) == 32


async def test_paths_outside_the_prefix_get_json_404(proxy):
    """Only the prefix is forwarded; anything else is the proxy's own not_found."""
    response = await proxy.get("/api/v2/user")
    assert response.status == 404
    assert response.headers["X-Tower-Proxy-Error"] == "not_found"
    assert (await response.json())["error"] == "not_found"


async def test_redirect_is_returned_with_location_rewritten(proxy, sandbox):
    """Redirects are not followed; a Location under api_url points at the proxy."""
    inside = f"{sandbox.base}/api/v1/user"
    response = await proxy.get(f"/api/v1/_test/redirect?to={inside}", allow_redirects=False)
    assert response.status == 302
    assert response.headers["Location"] == f"http://{proxy.host}:{proxy.port}/api/v1/user"
    outside = "https://aliossdl1.tower.im/x"
    response = await proxy.get(f"/api/v1/_test/redirect?to={outside}", allow_redirects=False)
    assert response.headers["Location"] == outside


async def test_pagination_links_are_rewritten_to_the_proxy(proxy, sandbox):
    """Absolute api_url links inside JSON bodies point at the proxy."""
    body = await (await proxy.get("/api/v1/_test/links")).json()
    own = f"http://{proxy.host}:{proxy.port}/api/v1"
    assert body["links"]["self"].startswith(own)
    assert body["meta"]["home"] == f"{own}/user"
    assert sandbox.base not in json.dumps(body)


async def test_links_are_left_alone_when_rewrite_is_off(make_proxy, sandbox, tmp_path, logged_in):
    """rewrite_links = false passes JSON bodies untouched."""
    config = make_config(sandbox, tmp_path, rewrite_links=False)
    proxy = await make_proxy(config)
    body = await (await proxy.get("/api/v1/_test/links")).json()
    assert body["links"]["self"].startswith(f"{sandbox.base}/api/v1")


async def test_gzip_bytes_pass_through_untouched(proxy):
    """A compressed response reaches the client compressed, byte for byte."""
    response = await proxy.get("/api/v1/_test/gzip", auto_decompress=False)
    raw = await response.read()
    assert response.headers["Content-Encoding"] == "gzip"
    assert hashlib.sha256(raw).hexdigest() == response.headers["X-Sandbox-Sha256"]
    assert json.loads(gzip.decompress(raw))


async def test_head_and_delete_statuses_pass_through(proxy):
    """HEAD and 204 responses keep their status and carry no body."""
    head = await proxy.head("/api/v1/user")
    assert head.status == 200 and await head.read() == b""
    teams = await (await proxy.get("/api/v1/teams")).json()
    team = teams["data"][0]["id"]
    projects = await (await proxy.get(f"/api/v1/teams/{team}/projects")).json()
    project = projects["data"][0]["id"]
    deleted = await proxy.delete(f"/api/v1/projects/{project}")
    assert deleted.status == 204 and await deleted.read() == b""
    assert (await proxy.get(f"/api/v1/projects/{project}")).status == 404


async def test_body_over_max_body_size_gets_413(make_proxy, sandbox, tmp_path, logged_in):
    """A body over max_body_size is refused before anything goes upstream."""
    proxy = await make_proxy(make_config(sandbox, tmp_path, max_body_size=1000))
    before = len(await sandbox.requests())
    response = await proxy.post("/api/v1/_test/echo", data=b"x" * 1001)
    assert response.status == 413
    assert response.headers["X-Tower-Proxy-Error"] == "body_too_large"
    chunked = await proxy.post("/api/v1/_test/echo", data=_chunks(b"y" * 600, 3))
    assert chunked.status == 413
    assert len(await sandbox.requests()) == before


async def _chunks(data: bytes, count: int):
    for _ in range(count):
        yield data


async def test_unreachable_upstream_gives_502(make_proxy, sandbox, tmp_path, logged_in):
    """Nothing listening upstream → 502 upstream_unreachable."""
    config = make_config(sandbox, tmp_path)
    dead = f"http://127.0.0.1:{free_port()}/api/v1"
    config = dataclasses.replace(config, tower=dataclasses.replace(config.tower, api_url=dead))
    proxy = await make_proxy(config)
    response = await proxy.get("/api/v1/user")
    assert response.status == 502
    assert (await response.json())["error"] == "upstream_unreachable"


async def test_slow_upstream_gives_504(make_proxy, sandbox, tmp_path, logged_in):
    """No answer within read_timeout → 504 upstream_timeout."""
    proxy = await make_proxy(make_config(sandbox, tmp_path, read_timeout=0.2))
    await sandbox.knobs(latency_ms=2000)
    response = await proxy.get("/api/v1/user")
    assert response.status == 504
    assert response.headers["X-Tower-Proxy-Error"] == "upstream_timeout"


async def test_connect_and_trace_are_refused(proxy):
    """CONNECT and TRACE are never proxied."""
    response = await proxy.request("TRACE", "/api/v1/user")
    assert response.status == 405
    assert response.headers["X-Tower-Proxy-Error"] == "method_not_allowed"


async def test_admin_token_endpoint_shows_fingerprint_only(proxy, logged_in):
    """/-/token shows identity and a fingerprint, never the token."""
    response = await proxy.get("/-/token")
    text = await response.text()
    state = json.loads(text)
    assert state["fingerprint"] == logged_in.fingerprint
    assert state["generation"] == 1 and state["email"]
    assert logged_in.access_token not in text and logged_in.refresh_token not in text


async def test_probes(proxy):
    """healthz is 200; readyz is 200 with a usable token."""
    assert (await proxy.get("/-/healthz")).status == 200
    assert (await proxy.get("/-/readyz")).status == 200


async def test_no_token_makes_readyz_503_and_requests_401(make_proxy, config):
    """Without a stored token: readiness 503, requests 401 reauthorization_required."""
    proxy = await make_proxy(config)
    assert (await proxy.get("/-/readyz")).status == 503
    response = await proxy.get("/api/v1/user")
    assert response.status == 401
    assert response.headers["X-Tower-Proxy-Error"] == "reauthorization_required"


async def test_browser_origin_and_foreign_host_are_refused(proxy):
    """A web page's Origin or a rebinding Host never gets the token."""
    origin = await proxy.get("/api/v1/user", headers={"Origin": "https://evil.example"})
    assert origin.status == 403
    assert origin.headers["X-Tower-Proxy-Error"] == "forbidden_origin"
    host = await proxy.get("/api/v1/user", headers={"Host": "evil.example:8730"})
    assert host.headers["X-Tower-Proxy-Error"] == "forbidden_host"
