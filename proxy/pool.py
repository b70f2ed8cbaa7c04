"""The connection pool towards Tower: kept alive, warmed at start-up.

- Keep-alive outlives idle gaps: a script calling once a minute must not pay
  a new TCP and TLS handshake (three round trips to a distant Tower) on
  every call.  Idle connections are kept `KEEPALIVE` seconds; when Tower
  closes one first and a request races the close, the forwarder retries it
  once on a fresh connection (forward.py).
- Warm-up: before the proxy listens, one connection to `api_url`'s origin is
  opened (TCP and TLS, no request, no credentials), so the first proxied call
  finds it ready.  It is bounded by `WARM_TIMEOUT` and its failure is only
  logged: a Tower that is down at start must not stop the proxy from
  starting.  Through an egress proxy there is no warm-up: the tunnel's life
  is the corporate proxy's to decide, and it sees one CONNECT per real need.
"""

from __future__ import annotations

import ssl

import structlog

from .config import Config
from .egress import egress_for
from .upstream import Origin, UpstreamPool

log = structlog.get_logger("proxy.pool")

KEEPALIVE = 300.0  # seconds an idle upstream connection is kept
WARM_TIMEOUT = 2.0  # at most this long before listening


def open_pool(config: Config, context: ssl.SSLContext) -> UpstreamPool:
    """The pool towards `tower.api_url`, through the egress proxy when one applies."""
    api_url = config.tower.api_url
    egress = egress_for(api_url, enabled=config.tower.use_env_proxy)
    log.info("upstream", api_url=api_url, egress=egress.describe())
    return UpstreamPool(
        Origin.from_url(api_url),
        ssl=context,  # used for https only
        connect_timeout=config.server.connect_timeout,
        read_timeout=config.server.read_timeout,
        keepalive=KEEPALIVE,
        tunnel=egress.tunnel(),
        max_connections=config.tower.max_connections,
    )


async def warm(upstream_pool: UpstreamPool) -> None:
    """Open one idle connection to api_url's origin, unless tunnelled; never raises."""
    if upstream_pool.tunnelled:
        return
    if not await upstream_pool.warm(WARM_TIMEOUT):
        log.info("upstream_warm_up_failed", origin=upstream_pool.name)
