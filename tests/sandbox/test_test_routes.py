"""The test-only routes under /api/v1/_test/ that exercise a proxy's edges."""

from __future__ import annotations

import gzip
import hashlib
import io
import json

from proxy.sandbox.api_test import CHUNK_SIZE


def _pattern(size: int) -> bytes:
    return (bytes(range(256)) * (size // 256 + 1))[:size]


async def test_bytes_streams_the_pattern_with_length_and_hash(harness, token):
    """bytes?size=N: N pattern bytes, Content-Length and X-Sandbox-Sha256 of the body."""
    size = CHUNK_SIZE * 2 + 1000
    response = await harness.api("GET", f"/_test/bytes?size={size}", token)
    body = await response.read()
    assert response.headers["Content-Length"] == str(size)
    assert body == _pattern(size)
    assert response.headers["X-Sandbox-Sha256"] == hashlib.sha256(body).hexdigest()


async def test_gzip_is_sent_compressed_with_the_hash_of_what_was_sent(harness, token):
    """gzip: Content-Encoding gzip; the hash is of the compressed bytes."""
    response = await harness.api("GET", "/_test/gzip", token, auto_decompress=False)
    raw = await response.read()
    assert response.headers["Content-Encoding"] == "gzip"
    assert response.headers["X-Sandbox-Sha256"] == hashlib.sha256(raw).hexdigest()
    assert len(json.loads(gzip.decompress(raw))["data"]) == 50


async def test_redirect_answers_302_to_the_target(harness, token):
    """redirect?to=URL: 302 with that Location, not followed."""
    response = await harness.api(
        "GET", "/_test/redirect?to=https://example.com/x", token, allow_redirects=False
    )
    assert (response.status, response.headers["Location"]) == (302, "https://example.com/x")


async def test_slow_streams_a_chunk_per_half_second(harness, token):
    """slow?seconds=1: two chunks, chunked transfer encoding."""
    response = await harness.api("GET", "/_test/slow?seconds=1", token)
    assert response.headers["Transfer-Encoding"] == "chunked"
    assert await response.text() == "tick 0\ntick 1\n"


async def test_echo_reports_what_arrived_with_the_token_masked(harness, token):
    """echo/{tail}: method, raw path, masked headers, body hash and size."""
    fingerprint = hashlib.sha256(token.encode()).hexdigest()[:8]
    response = await harness.api(
        "PATCH", "/_test/echo/a%2Fb?x=%20", token, data=b"abc", headers={"X-Custom": "1"}
    )
    echoed = await response.json()
    assert echoed["method"] == "PATCH"
    assert echoed["raw_path"] == "/api/v1/_test/echo/a%2Fb?x=%20"
    assert echoed["headers"]["Authorization"] == f"Bearer {fingerprint}"
    assert echoed["headers"]["X-Custom"] == "1"
    assert (echoed["body_sha256"], echoed["body_size"]) == (hashlib.sha256(b"abc").hexdigest(), 3)


async def test_echo_hashes_bodies_larger_than_it_keeps(harness, token):
    """A 3 MiB body is hashed whole although only JSON-sized bodies are kept."""
    body = b"z" * (3 * 1024 * 1024)
    echoed = await harness.json("POST", "/_test/echo", token, data=io.BytesIO(body))
    assert (echoed["body_sha256"], echoed["body_size"]) == (
        hashlib.sha256(body).hexdigest(),
        len(body),
    )


async def test_always401_refuses_even_a_valid_token(harness, token):
    """always401: Doorkeeper's 401 whatever the token."""
    response = await harness.api("GET", "/_test/always401", token)
    assert response.status == 401
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    assert await response.read() == b""


async def test_links_are_absolute_with_a_nested_home(harness, token):
    """links: JSON:API list with absolute paging links and meta.home."""
    document = await harness.json("GET", "/_test/links", token)
    base = str(harness.client.make_url("")).rstrip("/")
    assert document["meta"] == {"home": f"{base}/api/v1/user"}
    assert document["links"]["next"] == (
        f"{base}/api/v1/_test/links?page%5Bnumber%5D=2&page%5Bsize%5D=2"
    )
    assert len(document["data"]) == 2


async def test_test_routes_need_a_token(harness):
    """The test routes sit behind the same Doorkeeper gate."""
    assert (await harness.client.get("/api/v1/_test/echo")).status == 401


async def test_test_routes_are_absent_unless_enabled(make_harness):
    """Without test_routes the paths are plain 404s."""
    harness = await make_harness()
    token = await harness.access_token()
    assert (await harness.api("GET", "/_test/echo", token)).status == 404
