"""Header rules for both legs of the proxy.

- Hop-by-hop headers (RFC 9110 7.6.1, plus any name listed in `Connection`)
  are dropped in both directions.
- Towards Tower: the client's `Authorization`, `Host`, `X-Proxy-Key`, cookies
  and `Content-Length` (set again from the kept body) are dropped; the bearer
  token is added by the caller, never here.
- Towards the client: `Content-Length`/`Transfer-Encoding` are left to the
  response writer, cookies and Tower's own `Access-Control-*` headers are
  dropped (the proxy decides CORS for its origins, see guard.py — a `*` from
  upstream must never reach a browser); everything else passes unchanged.
"""

from __future__ import annotations

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
}
_NOT_RETURNED = HOP_BY_HOP | {"content-length", "set-cookie"}
_NO_PREFIX = "\0"  # no header name starts with NUL


def _connection_tokens(headers: CIMultiDictProxy[str] | CIMultiDict[str]) -> set[str]:
    tokens: set[str] = set()
    for value in headers.getall("Connection", ()):
        tokens.update(part.strip().lower() for part in value.split(",") if part.strip())
    return tokens


def _filtered(
    headers: CIMultiDictProxy[str] | CIMultiDict[str],
    dropped: frozenset[str],
    *,
    dropped_prefix: str = _NO_PREFIX,
) -> CIMultiDict[str]:
    listed = _connection_tokens(headers)
    drop = dropped | listed if listed else dropped  # per request only when needed
    kept: CIMultiDict[str] = CIMultiDict()
    for name, value in headers.items():
        lower = name.lower()
        if lower not in drop and not lower.startswith(dropped_prefix):
            kept.add(name, value)
    return kept


def upstream_request_headers(incoming: CIMultiDictProxy[str]) -> CIMultiDict[str]:
    """The client's headers as they may go to Tower (without any credential)."""
    return _filtered(incoming, _NOT_FORWARDED)


def client_response_headers(upstream: CIMultiDictProxy[str]) -> CIMultiDict[str]:
    """Tower's response headers as they may go back to the client."""
    return _filtered(upstream, _NOT_RETURNED, dropped_prefix="access-control-")
