"""`create_app`: the simulated Tower as one aiohttp application.

    /oauth/authorize   GET consent page, POST approve/deny (DELETE denies)
    /oauth/token       POST code and refresh grants
    /api/v1/...        the JSON:API, behind the Doorkeeper gate (`guard.py`)
    /api/v1/_test/...  only with `test_routes`
    /_sandbox/...      the control path (`control.py`)
    /_sandbox/files/   the file host, for when no separate one is configured

The factory does no I/O; the seed is loaded when the app starts.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from aiohttp import web
from aiohttp.typedefs import Handler

from . import (
    api_files,
    api_projects,
    api_teams,
    api_test,
    api_time_logs,
    api_todos,
    authorize,
    control,
    oauth,
)
from .api_files import FILE_HOST_FALLBACK_PATH
from .files import create_file_host_app
from .guard import api_gate
from .seed import load_seed, read_seed
from .settings import SandboxSettings
from .state import SANDBOX, Sandbox

API_PREFIX = "/api/v1"


def create_app(
    settings: SandboxSettings | None = None, *, clock: Callable[[], float] | None = None
) -> web.Application:
    sandbox = Sandbox(settings or SandboxSettings(), clock=clock)
    app = web.Application(middlewares=[_json_not_found])
    app[SANDBOX] = sandbox
    app.cleanup_ctx.append(_seeded)
    app.router.add_get("/oauth/authorize", authorize.show)
    app.router.add_post("/oauth/authorize", authorize.decide)
    app.router.add_delete("/oauth/authorize", authorize.decide)
    app.router.add_post("/oauth/token", oauth.token)
    app.router.add_routes(control.routes)
    app.add_subapp(API_PREFIX, _api_app(sandbox.settings))
    app.add_subapp(FILE_HOST_FALLBACK_PATH, create_file_host_app(sandbox))
    return app


def _api_app(settings: SandboxSettings) -> web.Application:
    # No client_max_size here: the gate streams bodies itself, so large ones
    # (the proxy's spooled-body tests) are hashed without being held.
    api = web.Application(middlewares=[api_gate])
    for module in (api_teams, api_projects, api_todos, api_time_logs, api_files):
        api.router.add_routes(module.routes)
    if settings.test_routes:
        api.router.add_routes(api_test.routes)
    return api


async def _seeded(app: web.Application) -> AsyncIterator[None]:
    sandbox = app[SANDBOX]
    load_seed(sandbox.store, read_seed(sandbox.settings.seed_file))
    yield


@web.middleware
async def _json_not_found(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Outside /api/v1, unknown paths and methods answer JSON too, not aiohttp's text."""
    try:
        return await handler(request)
    except web.HTTPNotFound:
        return _json_error(404, "not_found", f"no route for {request.path}")
    except web.HTTPMethodNotAllowed:
        return _json_error(405, "method_not_allowed", f"{request.method} is not allowed here")


def _json_error(status: int, error: str, description: str) -> web.Response:
    body = {"error": error, "error_description": description}
    return web.json_response(body, status=status)
