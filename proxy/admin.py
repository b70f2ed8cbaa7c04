"""Admin endpoints under `/-/` (never forwarded): probes, metrics, token state, quit.

- `healthz`: the process serves (liveness).  Never depends on Tower or the store.
- `startupz`: the first token load has finished (a Kubernetes startupProbe).
- `readyz`: a usable token is held and the proxy is not draining.  It reports
  what the process already knows and never calls Tower.
- `metrics`: Prometheus text from the app's own registry.
- `token`: the redacted token state (never the token).
- `quit`: `POST` from a loopback peer starts the same drain as SIGTERM, for
  pods whose main container has finished (Kubernetes Jobs).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import structlog
from multidict import CIMultiDict
from prometheus_client import CONTENT_TYPE_LATEST

from .config import is_loopback_host
from .messages import Request, Response
from .metrics import Metrics
from .responses import error_response
from .tokens.manager import TokenManager

log = structlog.get_logger("proxy.admin")


@dataclass(slots=True)
class Lifecycle:
    """Process-wide serving state: flipped by signal handlers, `/-/quit` and `serve`.

    `draining`: a stop was asked for.  Readiness fails at once, but requests
    are still served (each answer closes its connection) for `shutdown_delay`,
    while load balancers and clients move away.  `refusing`: that delay is
    over and the listener closes; a request still arriving on an open
    connection gets 503 `shutting_down`.
    """

    refusing: bool = False
    # Set once a stop was asked for (signal or quit); `serve` waits on it.
    stop_requested: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def draining(self) -> bool:
        return self.stop_requested.is_set()

    def request_stop(self) -> bool:
        """Ask `serve` to drain and stop; False when a stop was already asked for."""
        if self.stop_requested.is_set():
            return False
        self.stop_requested.set()
        return True


def healthz(_request: Request) -> Response:
    return Response.json({"status": "ok"})


def startupz(tokens: TokenManager | None) -> Response:
    if tokens is not None and tokens.loaded:
        return Response.json({"status": "started"})
    return Response.json({"status": "starting", "reason": "token store not loaded yet"}, status=503)


def readyz(lifecycle: Lifecycle, tokens: TokenManager | None) -> Response:
    reason = not_ready_reason(lifecycle, tokens)
    if reason is None:
        return Response.json({"status": "ready"})
    return Response.json({"status": "not ready", "reason": reason}, status=503)


def not_ready_reason(lifecycle: Lifecycle, tokens: TokenManager | None) -> str | None:
    """Why `/-/readyz` answers 503 (also the `ready` gauge), or None."""
    if lifecycle.draining:
        return "draining"
    if tokens is None:
        return "starting"
    return tokens.problem()


def metrics(registry: Metrics) -> Response:
    headers = CIMultiDict({"Content-Type": CONTENT_TYPE_LATEST, "Cache-Control": "no-store"})
    return Response(status=200, headers=headers, body=registry.render())


def token_state(tokens: TokenManager | None) -> Response:
    if tokens is None:
        return error_response("token_unavailable", "the proxy is still starting", retry_after=1)
    current = tokens.current
    now = tokens.now()
    state: dict[str, object] = {"store": tokens.store.description, "problem": tokens.problem()}
    if current is not None:
        state.update(current.describe(now))
    if tokens.last_refresh is not None:
        at, outcome = tokens.last_refresh
        state["last_refresh"] = {"at": round(at), "outcome": outcome}
    state["refresh_outcomes"] = dict(tokens.outcomes)
    return Response.json(state, headers={"Cache-Control": "no-store"})


def quit_(request: Request, lifecycle: Lifecycle) -> Response:
    if not from_loopback(request):
        return error_response("forbidden_host", "/-/quit answers only to loopback callers")
    first = lifecycle.request_stop()
    if first:
        log.info("quit_requested", via="POST /-/quit")
    return Response.json({"status": "quitting" if first else "already quitting"})


def from_loopback(request: Request) -> bool:
    """True for a loopback TCP peer or a unix-socket peer (the socket is 0600)."""
    transport = request.transport
    if transport is None:
        return False
    peer = transport.get_extra_info("peername")
    if isinstance(peer, tuple) and peer:
        return is_loopback_host(str(peer[0]))
    return True  # a unix socket: only this user (or root) can connect to it
