"""Header rules for both legs of the proxy.

- Hop-by-hop headers (RFC 9110 7.6.1, plus any name listed in `Connection`)
  are dropped in both directions.
- Towards Tower: the client's `Authorization`, `Host`, `X-Proxy-Key`, cookies,
  `Expect`, `Content-Length` (set again from the kept body) and `X-Request-ID`
  (the forwarder sets the one it logs) are dropped; the bearer token is added
  by the caller, never here.
- Towards the client: `Content-Length`/`Transfer-Encoding` are left to the
  response writer, cookies and Tower's own `Access-Control-*` headers are
  dropped (the proxy decides CORS for its origins, see guard.py — a `*` from
  upstream must never reach a browser); everything else passes unchanged.
"""

from __future__ import annotations

import functools

from multidict import CIMultiDict, CIMultiDictProxy

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
_NOT_FORWARDED = HOP_BY_HOP | {
    "host",
    "authorization",
    "content-length",
    "x-proxy-key",
    "cookie",
    "expect",
    "x-request-id",  # the forwarder sets it: the client's when usable, else a new one
}
_NOT_RETURNED = HOP_BY_HOP | {"content-length", "set-cookie"}
_NOT_RETURNED_PREFIX = "access-control-"


@functools.lru_cache(maxsize=64)
def _listed(value: str, base: frozenset[str]) -> frozenset[str]:
    """`base` plus the names one `Connection` value lists (cached: a few values recur)."""
    return base | {part.strip().lower() for part in value.split(",") if part.strip()}


def _dropped(headers: CIMultiDictProxy[str], base: frozenset[str]) -> frozenset[str]:
    drop = base
    for value in headers.getall("Connection", ()):
        drop = _listed(value, drop)
    return drop


def upstream_request_headers(incoming: CIMultiDictProxy[str]) -> list[tuple[str, str]]:
    """The client's headers as they may go to Tower (without any credential), in order."""
    drop = _dropped(incoming, _NOT_FORWARDED)
    return [(name, value) for name, value in incoming.items() if name.lower() not in drop]


def client_response_headers(upstream: CIMultiDictProxy[str]) -> CIMultiDict[str]:
    """Tower's response headers as they may go back to the client."""
    drop = _dropped(upstream, _NOT_RETURNED)
    return CIMultiDict(
        [
            (name, value)
            for name, value in upstream.items()
            if (lower := name.lower()) not in drop and not lower.startswith(_NOT_RETURNED_PREFIX)
        ]
    )
