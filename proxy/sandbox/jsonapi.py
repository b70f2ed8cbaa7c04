"""JSON:API 1.0 documents: single resources, lists, and page-number paging.

Paging follows Tower: `page[number]` from 1, `page[size]`, and absolute
`links.{self,first,prev,next,last}` built from the request's own scheme and
Host (so a proxy in front can rewrite them), prev/next null at the ends.
Other query parameters are kept in the links, except `access_token`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlencode

from aiohttp import web

from .records import Record
from .render import JsonObject, resource
from .store import Store

JSONAPI_VERSION: JsonObject = {"version": "1.0"}
MAX_PAGE_SIZE = 200
_PAGE_PARAMS = ("page[number]", "page[size]", "access_token")


def single(store: Store, record: Record) -> JsonObject:
    data, related = resource(store, record)
    included = _included(store, related, {(record.TYPE, record.id)})
    return {"data": data, "included": included, "jsonapi": JSONAPI_VERSION}


def collection(store: Store, records: Sequence[Record]) -> JsonObject:
    data: list[JsonObject] = []
    related: list[Record] = []
    for record in records:
        body, linked = resource(store, record)
        data.append(body)
        related += linked
    primary = {(record.TYPE, record.id) for record in records}
    included = _included(store, related, primary)
    return {"data": data, "included": included, "jsonapi": JSONAPI_VERSION}


def _included(store: Store, related: list[Record], seen: set[tuple[str, str]]) -> list[JsonObject]:
    included: list[JsonObject] = []
    for record in related:
        if (record.TYPE, record.id) not in seen:
            seen.add((record.TYPE, record.id))
            included.append(resource(store, record)[0])
    return included


@dataclass(frozen=True, slots=True)
class Page:
    number: int
    size: int
    total: int

    @property
    def last(self) -> int:
        return max(1, math.ceil(self.total / self.size))

    def of(self, records: Sequence[Record]) -> Sequence[Record]:
        start = (self.number - 1) * self.size
        return records[start : start + self.size]


def read_page(request: web.Request, total: int, default_size: int) -> Page:
    # Rails' to_i: junk reads as 0, which Tower treats as the first page.
    number = max(1, _to_int(request.query.get("page[number]", "1")))
    size = _to_int(request.query.get("page[size]", str(default_size)))
    size = min(MAX_PAGE_SIZE, size if size > 0 else default_size)
    return Page(number, size, total)


def _to_int(text: str) -> int:
    digits = ""
    for char in text.strip():
        if not char.isdigit():
            break
        digits += char
    return int(digits) if digits else 0


def page_links(request: web.Request, page: Page) -> JsonObject:
    def link(number: int) -> str:
        return page_url(request, number, page.size)

    return {
        "self": link(page.number),
        "first": link(1),
        "prev": link(page.number - 1) if page.number > 1 else None,
        "next": link(page.number + 1) if page.number < page.last else None,
        "last": link(page.last),
    }


def page_url(request: web.Request, number: int, size: int) -> str:
    kept = [(k, v) for k, v in request.query.items() if k not in _PAGE_PARAMS]
    query = urlencode([*kept, ("page[number]", str(number)), ("page[size]", str(size))])
    return f"{origin(request)}{request.rel_url.raw_path}?{query}"


def origin(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


def paged(
    request: web.Request, store: Store, records: Sequence[Record], *, default_size: int = 25
) -> JsonObject:
    page = read_page(request, len(records), default_size)
    document = collection(store, page.of(records))
    document["links"] = page_links(request, page)
    return document
