"""The HTTP sessions towards Tower: a kept-alive pool, warmed at start-up, and
a session that never reuses a connection, for the forwarder's one retry.

- Keep-alive outlives idle gaps: aiohttp drops a pooled connection after 15 s
  idle by default, and a script calling once a minute would then pay a new TCP
  and TLS handshake (three round trips to a distant Tower) on every call.
  Idle connections are kept `KEEPALIVE` seconds; when Tower closes one first
  and a request races the close, the forwarder retries it (forward.py).
- Warm-up: before the proxy listens, one connection to `api_url`'s origin is
  opened with a `HEAD /` (no credentials, outside the API path), so the first
  proxied call finds a TLS connection ready.  It is bounded by `WARM_TIMEOUT`
  and its failure is only logged: a Tower that is down at start must not stop
  the proxy from starting.  Through an egress proxy there is no warm-up: the
  tunnel's life is the corporate proxy's to decide, and it sees one CONNECT
  per real need.
"""

from __future__ import annotations

import asyncio
import ssl

import aiohttp
import structlog
from yarl import URL

from .egress import Egress

log = structlog.get_logger("proxy.pool")

KEEPALIVE = 300.0  # seconds an idle upstream connection is kept
WARM_TIMEOUT = 2.0  # at most this long before listening


def open_sessions(
    context: ssl.SSLContext, *, connect_timeout: float
) -> tuple[aiohttp.ClientSession, aiohttp.ClientSession]:
    """(pooled, fresh): the shared keep-alive session and the never-reusing one."""
    pooled = aiohttp.TCPConnector(
        ssl=context,
        limit=0,
        ttl_dns_cache=300,
        keepalive_timeout=KEEPALIVE,
        enable_cleanup_closed=True,
    )
    fresh = aiohttp.TCPConnector(ssl=context, limit=0, force_close=True)
    return _session(pooled, connect_timeout), _session(fresh, connect_timeout)


def _session(connector: aiohttp.TCPConnector, connect_timeout: float) -> aiohttp.ClientSession:
    session = aiohttp.ClientSession(
        connector=connector,
        auto_decompress=False,
        cookie_jar=aiohttp.DummyCookieJar(),
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout),
    )
    # aiohttp silently resends an idempotent request once when a connection
    # breaks, possibly on another stale pooled connection; the forwarder owns
    # that policy instead (once, on a fresh connection).  No public switch exists.
    session._retry_connection = False
    return session


async def warm(session: aiohttp.ClientSession, api_url: str, egress: Egress) -> None:
    """Open one pooled connection to api_url's origin; never raises."""
    if egress.proxy is not None:
        return
    origin = URL(api_url).origin()
    try:
        async with asyncio.timeout(WARM_TIMEOUT):
            async with session.head(origin, allow_redirects=False) as response:
                await response.read()
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        log.info("upstream_warm_up_failed", origin=str(origin), reason=type(exc).__name__)
