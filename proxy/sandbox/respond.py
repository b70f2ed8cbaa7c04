"""Small helpers every API route module shares: state access and answers."""

from __future__ import annotations

from aiohttp import web

from .errors import NotFound
from .state import SANDBOX, Sandbox
from .store import Store


def sandbox_of(request: web.Request) -> Sandbox:
    return request.config_dict[SANDBOX]


def store_of(request: web.Request) -> Store:
    return request.config_dict[SANDBOX].store


def ok(document: object) -> web.Response:
    # Rails renders JSON:API documents as application/json; charset=utf-8.
    return web.json_response(document)


def no_content() -> web.Response:
    return web.Response(status=204)


def int_param(request: web.Request, name: str) -> int:
    try:
        return int(request.match_info[name])
    except ValueError:
        raise NotFound(f"Couldn't find a record with '{name}'={request.match_info[name]}") from None


def flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "false").lower() in ("1", "true", "yes")
