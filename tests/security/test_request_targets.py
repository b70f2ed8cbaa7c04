"""Crafted request targets and request heads, sent as raw bytes (no client-side cleanup).

Every case ends with the same invariant (`Rig.assert_contained`): the canary
received nothing and the upstream never saw the token outside /api/v1.  A
refused case must also not have reached the upstream at all.  `{canary}` in a
case is the canary's port.
"""

from __future__ import annotations

import hashlib

import pytest

from ..conftest import raw_request
from .conftest import Rig

# (name, request line and extra header lines, expected status, proxy error code or None
# when aiohttp's own parser refuses the bytes before the proxy sees them)
REFUSED_TARGETS = [
    ("absolute-form to canary", "GET http://127.0.0.1:{canary}/api/v1/user", 400, "bad_request"),
    ("absolute-form to tower", "GET https://tower.im/api/v1/user", 400, "bad_request"),
    (
        "absolute-form https canary",
        "GET https://127.0.0.1:{canary}/api/v1/user",
        400,
        "bad_request",
    ),
    ("authority-form GET", "GET 127.0.0.1:{canary}", 400, None),
    ("asterisk-form OPTIONS", "OPTIONS *", 400, "bad_request"),
    ("CONNECT authority", "CONNECT 127.0.0.1:{canary}", 405, "method_not_allowed"),
    ("CONNECT origin-form", "CONNECT /api/v1/user", 405, "method_not_allowed"),
    ("TRACE", "TRACE /api/v1/user", 405, "method_not_allowed"),
    ("scheme-relative //host", "GET //127.0.0.1:{canary}/api/v1/user", 400, "bad_request"),
    ("userinfo-looking prefix", "GET /api/v1@127.0.0.1:{canary}/user", 404, "not_found"),
    ("dot-dot raw", "GET /api/v1/../../_sandbox/secrets", 400, "bad_request"),
    ("dot raw", "GET /api/v1/./user", 400, "bad_request"),
    ("dot-dot %2e%2e", "GET /api/v1/%2e%2e/%2e%2e/_sandbox/secrets", 400, "bad_request"),
    ("dot-dot %2E%2E", "GET /api/v1/%2E%2E/oauth/token", 400, "bad_request"),
    ("dot-dot mixed .%2e", "GET /api/v1/.%2e/_sandbox/stats", 400, "bad_request"),
    ("dot %2e", "GET /api/v1/%2e/user", 400, "bad_request"),
    ("dot-dot double-encoded", "GET /api/v1/%252e%252e/_sandbox/secrets", 400, "bad_request"),
    ("dot-dot triple-encoded", "GET /api/v1/%25252e%25252e/x", 400, "bad_request"),
    ("encoded slash %2f", "GET /api/v1/..%2f_sandbox%2fsecrets", 400, "bad_request"),
    ("encoded slash %2F", "GET /api/v1/teams%2F..%2F..%2Foauth", 400, "bad_request"),
    ("double-encoded slash", "GET /api/v1/x%252f..%252f..%252f_sandbox", 400, "bad_request"),
    ("backslash raw", "GET /api/v1/..\\..\\_sandbox\\secrets", 400, "bad_request"),
    ("backslash %5c", "GET /api/v1/..%5c..%5c_sandbox", 400, "bad_request"),
    ("backslash %5C double", "GET /api/v1/..%255C_sandbox", 400, "bad_request"),
    ("NUL encoded", "GET /api/v1/user%00.json", 400, "bad_request"),
    ("NUL double-encoded", "GET /api/v1/user%2500", 400, "bad_request"),
    ("CRLF encoded in path", "GET /api/v1/user%0d%0aHost:%20evil", 400, "bad_request"),
    ("tab encoded", "GET /api/v1/us%09er", 400, "bad_request"),
    ("DEL encoded", "GET /api/v1/user%7f", 400, "bad_request"),
    ("encoded ?", "GET /api/v1/user%3f.json", 400, "bad_request"),
    ("encoded #", "GET /api/v1/user%23frag", 400, "bad_request"),
    ("raw fragment", "GET /api/v1/user#frag", 400, None),
    ("bad escape", "GET /api/v1/user%zz", 400, "bad_request"),
    ("truncated escape", "GET /api/v1/user%2", 400, "bad_request"),
    ("empty segment", "GET /api/v1//user", 400, "bad_request"),
    ("raw non-ascii", "GET /api/v1/caf\u00e9", 400, None),
    ("raw control char", "GET /api/v1/us\x01er", 400, None),
    ("over-long target", "GET /api/v1/" + "a" * 8100, 400, "bad_request"),
    ("grossly over-long target", "GET /api/v1/" + "a" * 17000, 400, None),
    ("outside prefix", "GET /_sandbox/secrets", 404, "not_found"),
    ("outside prefix oauth", "POST /oauth/token", 404, "not_found"),
    ("prefix lookalike", "GET /api/v1x/user", 404, "not_found"),
    ("prefix case", "GET /API/V1/user", 404, "not_found"),
    ("encoded prefix slash", "GET /api%2fv1/user", 404, "not_found"),
    ("forbidden host", "GET /api/v1/user|Host: evil.example", 403, "forbidden_host"),
    ("rebinding host", "GET /api/v1/user|Host: localhost.evil.example:8730", 403, "forbidden_host"),
    ("host with userinfo", "GET /api/v1/user|Host: 127.0.0.1@evil.example", 403, "forbidden_host"),
    ("two hosts", "GET /api/v1/user|Host: 127.0.0.1|Host: evil.example", 400, None),
    ("no host", "GET /api/v1/user|-Host", 400, None),
    ("HTTP/1.0 without host", "GET /api/v1/user HTTP/1.0|-Host", 403, "forbidden_host"),
    ("foreign origin", "GET /api/v1/user|Origin: http://evil.example", 403, "forbidden_origin"),
    ("null origin", "GET /api/v1/user|Origin: null", 403, "forbidden_origin"),
    ("cross-site fetch", "GET /api/v1/user|Sec-Fetch-Site: cross-site", 403, "forbidden_origin"),
    ("same-site fetch", "GET /api/v1/user|Sec-Fetch-Site: same-site", 403, "forbidden_origin"),
    ("over-long header", "GET /api/v1/user|X-Pad: " + "p" * 20000, 400, "bad_request"),
    ("grossly over-long header", "GET /api/v1/user|X-Pad: " + "p" * 40000, 400, None),
    (
        "too many headers",
        "GET /api/v1/user|" + "|".join(f"X-H{n}: v" for n in range(200)),
        400,
        None,
    ),
    ("obs-fold header", "GET /api/v1/user|X-A: a|  folded", 400, None),
    ("bare LF in header", "GET /api/v1/user|X-A: a\nHost: evil.example", 400, None),
    (
        "smuggling TE+CL",
        "POST /api/v1/_test/echo|Content-Length: 4|Transfer-Encoding: chunked",
        400,
        None,
    ),
    ("unknown TE", "POST /api/v1/_test/echo|Transfer-Encoding: gzip", 400, None),
]

# Passed through to Tower, but only ever to the API, without the caller's credentials.
FORWARDED_TARGETS = [
    ("canary in Host port", "GET /api/v1/_test/echo|Host: 127.0.0.1:{canary}"),
    ("canary as X-Forwarded-Host", "GET /api/v1/_test/echo|X-Forwarded-Host: 127.0.0.1:{canary}"),
    ("canary in query", "GET /api/v1/_test/echo?next=http://127.0.0.1:{canary}/x&a=%2F.."),
    ("same-origin fetch", "GET /api/v1/_test/echo|Sec-Fetch-Site: same-origin"),
    ("user-initiated fetch", "GET /api/v1/_test/echo|Sec-Fetch-Site: none"),
    ("caller bearer", "GET /api/v1/_test/echo|Authorization: Bearer stolen-by-caller-0001"),
    ("caller access_token", "GET /api/v1/_test/echo?access_token=stolen-by-caller-0002"),
    ("encoded access_token name", "GET /api/v1/_test/echo?access%5Ftoken=stolen-by-caller-0003"),
    ("IPv6 loopback host", "GET /api/v1/_test/echo|Host: [::1]:8730"),
    ("localhost host", "GET /api/v1/_test/echo|Host: LOCALHOST"),
    ("redirect to canary", "GET /api/v1/_test/redirect?to=http://127.0.0.1:{canary}/steal"),
    ("encoded unreserved", "GET /api/v1/_test/echo/%41%2D%7E"),
]


def _head(spec: str, port: int) -> bytes:
    """`LINE|Header: v|...` → raw bytes; `-Host` drops the default Host header."""
    line, *headers = spec.replace("{canary}", str(port)).split("|")
    if " HTTP/" not in line:
        line += " HTTP/1.1"
    if "-Host" in headers:
        headers.remove("-Host")
    elif not any(h.lower().startswith("host:") for h in headers):
        headers.insert(0, "Host: 127.0.0.1")
    lines = [line, *headers, "Connection: close", "", ""]
    return "\r\n".join(lines).encode("utf-8", "surrogateescape")


@pytest.mark.parametrize(
    ("spec", "status", "code"),
    [case[1:] for case in REFUSED_TARGETS],
    ids=[case[0] for case in REFUSED_TARGETS],
)
async def test_attack_is_refused_before_upstream(rig: Rig, spec, status, code):
    """The crafted request is refused; neither Tower nor any other host hears of it."""
    response = await raw_request("127.0.0.1", rig.port, _head(spec, rig.canary.port))
    assert response.status == status
    if code is not None:
        assert response.headers["x-tower-proxy-error"] == code
        assert response.json()["error"] == code
    assert rig.tap.seen == []
    rig.assert_contained()


@pytest.mark.parametrize(
    "spec", [case[1] for case in FORWARDED_TARGETS], ids=[case[0] for case in FORWARDED_TARGETS]
)
async def test_lookalike_is_forwarded_only_to_the_api(rig: Rig, spec):
    """Tower gets exactly one request, under /api/v1, carrying the proxy's token only."""
    response = await raw_request("127.0.0.1", rig.port, _head(spec, rig.canary.port))
    assert response.status in (200, 302)
    assert "x-tower-proxy-error" not in response.headers
    assert [seen.token for seen in rig.tap.seen] == [rig.token.access_token]
    assert rig.tap.seen[0].raw_path.startswith("/api/v1/_test/")
    assert "stolen-by-caller" not in rig.tap.seen[0].raw_path
    rig.assert_contained()


async def test_canary_counts_what_reaches_it(rig: Rig):
    """The canary is live: one direct request is counted, so zero elsewhere means zero."""
    response = await raw_request("127.0.0.1", rig.canary.port, b"GET /x HTTP/1.1\r\n\r\n")
    assert (response.status, rig.canary.connections) == (200, 1)
    rig.canary.connections = 0
    rig.canary.received.clear()


async def test_file_host_urls_pass_through_but_the_proxy_never_calls_them(rig: Rig):
    """Upload policies and download links name the file host (the canary); the proxy only relays."""
    team = hashlib.md5(b"team-sandbox").hexdigest()  # seed ids are md5 of a label
    response = await rig.proxy.post(
        f"/api/v1/teams/{team}/direct_uploads",
        json={"filename": "notes.txt", "byte_size": 5, "md5": hashlib.md5(b"hello").hexdigest()},
    )
    assert response.status == 200
    assert rig.canary.base in await response.text()
    assert [seen.raw_path for seen in rig.tap.seen] == [f"/api/v1/teams/{team}/direct_uploads"]
    rig.assert_contained()
