"""Test-only routes under /api/v1/_test/, mounted when `test_routes` is set.

They sit behind the same Doorkeeper gate as the real API, so a proxy under
test must authenticate them too. They exist to exercise the proxy's edges:
large and slow streams, compressed bodies, redirects, exact echo of what
arrived, a permanent 401, and absolute links to rewrite.
"""

from __future__ import annotations

import asyncio
import functools
import gzip
import hashlib
import json

from aiohttp import web

from .errors import BadRequest
from .grants import TokenProblem
from .guard import doorkeeper_401
from .jsonapi import JSONAPI_VERSION, Page, origin, page_links, read_page
from .payload import received
from .stats import mask_headers

routes = web.RouteTableDef()

CHUNK_SIZE = 256 * 1024
HASHED_LIMIT = 64 * 1024 * 1024
SLOW_INTERVAL = 0.5
GZIP_DOCUMENT = {
    "data": [{"id": str(n), "type": "samples", "attributes": {"n": n}} for n in range(50)]
}
# mtime=0 keeps the compressed bytes, and so their sha256, the same on every run.
GZIP_BODY = gzip.compress(json.dumps(GZIP_DOCUMENT).encode(), mtime=0)
_PATTERN = bytes(range(256)) * (CHUNK_SIZE // 256)
_LINK_ITEMS = 5
_LINK_PAGE_SIZE = 2


def _number(request: web.Request, name: str) -> float:
    try:
        value = float(request.query.get(name, ""))
    except ValueError:
        raise BadRequest(f"{name} must be a number") from None
    if value < 0:
        raise BadRequest(f"{name} must not be negative")
    return value


def _pattern_chunks(size: int) -> list[int]:
    full, rest = divmod(size, CHUNK_SIZE)
    return [CHUNK_SIZE] * full + ([rest] if rest else [])


@functools.lru_cache(maxsize=32)
def _pattern_sha256(size: int) -> str:
    digest = hashlib.sha256()
    for length in _pattern_chunks(size):
        digest.update(_PATTERN[:length])
    return digest.hexdigest()


@routes.get("/_test/bytes")
async def stream_bytes(request: web.Request) -> web.StreamResponse:
    size = int(_number(request, "size"))
    response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
    response.content_length = size
    if size <= HASHED_LIMIT:
        response.headers["X-Sandbox-Sha256"] = _pattern_sha256(size)
    await response.prepare(request)
    for length in _pattern_chunks(size):
        await response.write(_PATTERN[:length])
    await response.write_eof()
    return response


@routes.get("/_test/gzip")
async def gzipped(request: web.Request) -> web.Response:
    headers = {
        "Content-Type": "application/json",
        "Content-Encoding": "gzip",
        "X-Sandbox-Sha256": hashlib.sha256(GZIP_BODY).hexdigest(),
    }
    return web.Response(body=GZIP_BODY, headers=headers)


@routes.get("/_test/redirect")
async def redirect(request: web.Request) -> web.Response:
    target = request.query.get("to")
    if not target:
        raise BadRequest("to is required")
    return web.Response(status=302, headers={"Location": target})


@routes.get("/_test/slow")
async def slow(request: web.Request) -> web.StreamResponse:
    seconds = _number(request, "seconds")
    response = web.StreamResponse(headers={"Content-Type": "text/plain"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    ticks = int(seconds / SLOW_INTERVAL)
    for tick in range(ticks):
        await response.write(f"tick {tick}\n".encode())
        await asyncio.sleep(SLOW_INTERVAL)
    await response.write_eof()
    return response


@routes.route("*", "/_test/echo")
@routes.route("*", "/_test/echo/{tail:.*}")
async def echo(request: web.Request) -> web.Response:
    body = received(request)
    return web.json_response(
        {
            "method": request.method,
            "raw_path": request.raw_path,
            "headers": mask_headers(request.headers.items()),
            "body_sha256": body.sha256,
            "body_size": body.size,
        }
    )


@routes.get("/_test/always401")
async def always_401(request: web.Request) -> web.Response:
    return doorkeeper_401(TokenProblem.INVALID)


@routes.get("/_test/links")
async def links(request: web.Request) -> web.Response:
    page: Page = read_page(request, _LINK_ITEMS, _LINK_PAGE_SIZE)
    first = (page.number - 1) * page.size
    numbers = range(first, min(first + page.size, _LINK_ITEMS))
    data = [{"id": f"{n:032x}", "type": "samples", "attributes": {"n": n}} for n in numbers]
    document = {
        "data": data,
        "jsonapi": JSONAPI_VERSION,
        "links": page_links(request, page),
        "meta": {"home": f"{origin(request)}/api/v1/user"},
    }
    return web.json_response(document)
