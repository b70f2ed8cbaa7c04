"""Request bodies: read once, hashed for the request log, parsed as Rails would.

The API middleware streams every body through `receive` (hashing it whole, but
keeping at most `MAX_KEPT_BODY` bytes in memory); handlers then read fields
from Rails-style wrappers such as `{"todo": {...}}`. A missing wrapper is 400
like Rails' `params.require`; a missing or malformed field is 422.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import date, datetime

from aiohttp import web

from .errors import BadRequest, PayloadTooLarge, Unprocessable

MAX_KEPT_BODY = 1024 * 1024

Fields = dict[str, object]


@dataclass(frozen=True, slots=True)
class ReceivedBody:
    data: bytes | None  # None when larger than MAX_KEPT_BODY; only hashed
    sha256: str
    size: int


_BODY_KEY = web.RequestKey("sandbox_body", ReceivedBody)


async def receive(request: web.Request) -> ReceivedBody:
    digest = hashlib.sha256()
    kept = bytearray()
    size = 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        digest.update(chunk)
        size += len(chunk)
        if size <= MAX_KEPT_BODY:
            kept += chunk
    body = ReceivedBody(bytes(kept) if size <= MAX_KEPT_BODY else None, digest.hexdigest(), size)
    request[_BODY_KEY] = body
    return body


def received(request: web.Request) -> ReceivedBody:
    return request[_BODY_KEY]  # KeyError means the API gate did not run


def json_object(request: web.Request) -> Fields:
    data = received(request).data
    if data is None:
        raise PayloadTooLarge("The request body is too large")
    if not data.strip():
        return {}
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError) as error:
        raise BadRequest(f"Error occurred while parsing request parameters: {error}") from None
    if not isinstance(value, dict):
        raise BadRequest("The request body must be a JSON object")
    return value


def wrapped(request: web.Request, name: str) -> Fields:
    inner = json_object(request).get(name)
    if not isinstance(inner, dict):
        raise BadRequest(f"param is missing or the value is empty: {name}")
    return inner


def text(fields: Fields, name: str, *, required: bool = False) -> str | None:
    value = fields.get(name)
    if value is None or (required and value == ""):
        if required:
            raise Unprocessable(f"{_label(name)} can't be blank")
        return None
    if not isinstance(value, str):
        raise Unprocessable(f"{_label(name)} must be a string")
    return value


def required_text(fields: Fields, name: str) -> str:
    return text(fields, name, required=True) or ""  # text() raised if it was missing


def text_list(fields: Fields, name: str) -> list[str] | None:
    value = fields.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise Unprocessable(f"{_label(name)} must be a list of strings")
    return [str(item) for item in value]


def integer(fields: Fields, name: str) -> int | None:
    value = fields.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise Unprocessable(f"{_label(name)} must be an integer")
    return value


def moment(fields: Fields, name: str) -> str | None:
    """A date ("2018-01-10") or an ISO-8601 time, kept as sent."""
    value = text(fields, name)
    if value is None or value == "":
        return None
    try:
        if len(value) == 10:
            date.fromisoformat(value)
        else:
            datetime.fromisoformat(value)
    except ValueError:
        raise Unprocessable(f"{_label(name)} is not a valid date") from None
    return value


def _label(name: str) -> str:
    return name.replace("_", " ").capitalize()
