"""The do-it-yourself baseline: a minimal aiohttp streaming proxy (~60 lines).

What a user writes in an afternoon: one shared ClientSession, the client's
headers minus hop-by-hop ones, a fixed bearer token, the body streamed both
ways.  No refresh, no guard, no logging — the floor for an aiohttp proxy.

    python -m bench.plain_proxy --port 9000 --upstream http://127.0.0.1:8080
"""

from __future__ import annotations

import argparse
import os

import aiohttp
from aiohttp import web

HOP = {"connection", "keep-alive", "te", "trailer", "transfer-encoding", "upgrade", "host"}
SESSION = web.AppKey("session", aiohttp.ClientSession)


def make_app(upstream: str, token: str) -> web.Application:
    async def session_ctx(app: web.Application):  # type: ignore[no-untyped-def]
        app[SESSION] = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0), auto_decompress=False
        )
        yield
        await app[SESSION].close()

    async def handle(request: web.Request) -> web.StreamResponse:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP}
        headers["Authorization"] = f"Bearer {token}"
        data = request.content if request.body_exists else None
        async with request.app[SESSION].request(
            request.method,
            upstream + request.raw_path,
            headers=headers,
            data=data,
            allow_redirects=False,
        ) as resp:
            out = {k: v for k, v in resp.headers.items() if k.lower() not in HOP}
            out.pop("Content-Length", None)
            response = web.StreamResponse(status=resp.status, headers=out)
            if resp.content_length is not None:
                response.content_length = resp.content_length
            await response.prepare(request)
            async for chunk in resp.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response

    app = web.Application()
    app.cleanup_ctx.append(session_ctx)
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    args = parser.parse_args()
    app = make_app(args.upstream.rstrip("/"), os.environ["BENCH_TOKEN"])
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
