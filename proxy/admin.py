"""Admin endpoints under `/-/` (never forwarded): probes and the token state.

Readiness never calls Tower: it reports what the process already knows.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from .tokens.manager import TokenManager


@dataclass(slots=True)
class Lifecycle:
    """Process-wide serving state, flipped by signal handlers."""

    draining: bool = False


def healthz(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def readyz(lifecycle: Lifecycle, tokens: TokenManager) -> web.Response:
    reason = "draining" if lifecycle.draining else tokens.problem()
    if reason is None:
        return web.json_response({"status": "ready"})
    return web.json_response({"status": "not ready", "reason": reason}, status=503)


def token_state(tokens: TokenManager) -> web.Response:
    current = tokens.current
    now = tokens.now()
    state: dict[str, object] = {"store": tokens.store.description, "problem": tokens.problem()}
    if current is not None:
        state.update(current.describe(now))
    if tokens.last_refresh is not None:
        at, outcome = tokens.last_refresh
        state["last_refresh"] = {"at": round(at), "outcome": outcome}
    state["refresh_outcomes"] = dict(tokens.outcomes)
    return web.json_response(state, headers={"Cache-Control": "no-store"})
