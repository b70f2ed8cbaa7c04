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


# Names remembered per rule set: Tower's recur on every answer, a client's
# too, but a client may send any; past this many, names are judged each time.
_MAX_NAMES = 256


@functools.lru_cache(maxsize=64)
def _listed(value: str, base: frozenset[str]) -> frozenset[str]:
    """`base` plus the names one `Connection` value lists (cached: a few values recur)."""
    return base | {part.strip().lower() for part in value.split(",") if part.strip()}


def _dropped(headers: CIMultiDictProxy[str], base: frozenset[str]) -> frozenset[str]:
    drop = base
    for value in headers.getall("Connection", ()):
        drop = _listed(value, drop)
    return drop


@functools.lru_cache(maxsize=64)
def _verdicts(drop: frozenset[str], prefix: str) -> dict[str, bool]:
    """Whether a name, as spelled on the wire, passes one rule: filled as names are met."""
    return {}


def _kept(
    headers: CIMultiDictProxy[str], base: frozenset[str], prefix: str = ""
) -> list[tuple[str, str]]:
    """The fields whose names are neither in `base` (or listed in `Connection`) nor start
    with `prefix` (lower case; "" for none), in order."""
    drop = _dropped(headers, base)
    verdicts = _verdicts(drop, prefix)
    kept = []
    for item in headers.items():
        name = item[0]
        keep = verdicts.get(name)
        if keep is None:
            lower = name.lower()
            keep = lower not in drop and not (prefix and lower.startswith(prefix))
            if len(verdicts) < _MAX_NAMES:
                verdicts[name] = keep
        if keep:
            kept.append(item)
    return kept


def upstream_request_headers(incoming: CIMultiDictProxy[str]) -> list[tuple[str, str]]:
    """The client's headers as they may go to Tower (without any credential), in order."""
    return _kept(incoming, _NOT_FORWARDED)


def client_response_headers(upstream: CIMultiDictProxy[str]) -> CIMultiDict[str]:
    """Tower's response headers as they may go back to the client."""
    return CIMultiDict(_kept(upstream, _NOT_RETURNED, _NOT_RETURNED_PREFIX))
