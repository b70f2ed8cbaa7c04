"""Rewriting Tower's absolute URLs to the proxy's own address.

`Location` headers and, with `rewrite_links`, JSON bodies (pagination
`links` and any other absolute `api_url` URL) are rewritten so a client can
follow them through the proxy.  Only JSON bodies up to `MAX_REWRITE` bytes
are touched; a compressed one is decoded only to look, and passed on
untouched, still compressed, when it holds nothing to rewrite.
"""

from __future__ import annotations

import functools
import zlib

MAX_REWRITE = 8 * 1024 * 1024
MAX_DECODED = 4 * MAX_REWRITE  # a compression bomb is passed on, not expanded
_JSON_TYPES = ("application/json", "application/vnd.api+json")
_DECODERS = {
    "gzip": 16 + zlib.MAX_WBITS,
    "x-gzip": 16 + zlib.MAX_WBITS,
    "deflate": zlib.MAX_WBITS,
    "identity": 0,
    "": 0,
}


def is_rewritable(content_type: str, content_encoding: str, length: int | None) -> bool:
    return (length is None or length <= MAX_REWRITE) and _json_kind(content_type, content_encoding)


@functools.lru_cache(maxsize=64)  # a few (type, encoding) pairs recur on every answer
def _json_kind(content_type: str, content_encoding: str) -> bool:
    return (
        content_type.split(";", 1)[0].strip().lower() in _JSON_TYPES
        and content_encoding.strip().lower() in _DECODERS
    )


class LinkRewriter:
    """Replaces `upstream_base` (e.g. https://tower.im/api/v1) by the proxy's
    own base: `http://` + the Host the client named + `proxy_prefix`."""

    def __init__(self, upstream_base: str, proxy_prefix: str = "/") -> None:
        self._plain = upstream_base.rstrip("/").encode()
        self._escaped = self._plain.replace(b"/", b"\\/")
        # In both spellings of every URL to rewrite (JSON escapes "/" only):
        # a body without it has nothing to rewrite, found in one search.
        self._authority = self._plain.split(b"/")[2]
        self._prefix = proxy_prefix.rstrip("/")

    def location(self, value: str, host: str) -> str:
        plain = self._plain.decode()
        if value == plain or value.startswith(plain + "/") or value.startswith(plain + "?"):
            return self._base(host) + value[len(plain) :]
        return value

    def body(self, body: bytes, encoding: str, host: str) -> tuple[bytes, bool]:
        """(new body, decoded?) — decoded means Content-Encoding must be dropped."""
        wbits = _DECODERS.get(encoding.strip().lower(), 0) if encoding else 0
        plain = _decoded(body, wbits) if wbits else body
        if plain is None or self._authority not in plain:
            return body, False
        if self._plain not in plain and self._escaped not in plain:
            return body, False
        base = self._base(host).encode()
        plain = plain.replace(self._plain, base).replace(self._escaped, base.replace(b"/", b"\\/"))
        return plain, bool(wbits)

    def _base(self, host: str) -> str:
        return f"http://{host}{self._prefix}"


def _decoded(body: bytes, wbits: int) -> bytes | None:
    decoder = zlib.decompressobj(wbits)
    try:
        plain = decoder.decompress(body, MAX_DECODED)
    except zlib.error:
        return None
    return None if decoder.unconsumed_tail else plain
