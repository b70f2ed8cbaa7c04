"""The token manager: the one place that decides which token a request uses
and when to refresh.

Invariants (SPEC section 3):
- a refresh is keyed on the generation that failed: `refresh(G)` returns the
  stored set at once if the store already holds a newer generation than G;
- one refresh at a time: in-process through one shared task per generation,
  across processes through the store's refresh lock, inside which the store
  is re-read before Tower is called;
- the new set is saved (compare-and-set) before any request uses it;
- a request starting while a generation that Tower rejected is being
  refreshed waits for that refresh rather than spend a round trip on a
  certain 401 (in a refresh storm, most requests are never sent twice);
- a refresh, once started, is never cancelled by a client going away
  (a token obtained but not saved would break the rotation chain);
- `invalid_grant` marks the generation dead ("reauthorization required")
  until the store holds a newer one; transient failures back off with jitter
  and never cause a token-endpoint call per request; a backoff caused by an
  unreachable store ends as soon as the store reports itself reachable again
  (Redis back: the fleet recovers without waiting out the backoff).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, Protocol

import structlog

from ..errors import (
    InvalidGrant,
    NoToken,
    OAuthError,
    ReauthorizationRequired,
    StoreError,
    StoreUnavailable,
    TokenEndpointUnavailable,
    TokenUnavailable,
)
from .model import TokenSet
from .store import TokenStore

log = structlog.get_logger("proxy.tokens")

BACKOFF_BASE, BACKOFF_CAP = 1.0, 60.0
RECHECK_INTERVAL = 1.0
PROACTIVE_TICK = 15.0


class Refresher(Protocol):
    async def refresh(self, current: TokenSet) -> dict[str, Any]: ...


class TokenManager:
    def __init__(
        self,
        store: TokenStore,
        refresher: Refresher,
        *,
        refresh_margin: float = 300.0,
        clock: Callable[[], float] = time.time,
        rng: Callable[[], float] = random.random,
        recheck_interval: float = RECHECK_INTERVAL,
    ) -> None:
        self.store = store
        self._refresher = refresher
        self._margin = refresh_margin
        self._clock = clock
        self._rng = rng
        self._recheck_interval = recheck_interval
        self._current: TokenSet | None = None
        self._loaded = False
        self._dead_generation: int | None = None
        self._failures = 0
        self._backoff_until = 0.0
        self._backoff_until_store_back = False
        self._inflight: dict[int, asyncio.Task[TokenSet]] = {}
        self._rejected_generation: int | None = None
        self._next_recheck = 0.0
        self._refreshed_generation: int | None = None  # the last set this process got from Tower
        self._jitter = self._rng() * min(60.0, refresh_margin * 0.2)
        self.outcomes: Counter[str] = Counter()
        self.last_refresh: tuple[float, str] | None = None

    # -- state -------------------------------------------------------------

    @property
    def current(self) -> TokenSet | None:
        return self._current

    @property
    def loaded(self) -> bool:
        return self._loaded

    def still_current(self, token: TokenSet) -> bool:
        """`token` is the one held and Tower has not refused it: send with it as it is."""
        return token is self._current and token.generation != self._rejected_generation

    def refreshed_here(self, token: TokenSet) -> bool:
        """Whether `token` came from a refresh this process made (not from the store)."""
        return token.generation == self._refreshed_generation

    def now(self) -> float:
        return self._clock()

    def problem(self) -> str | None:
        """Why no usable token is held right now, or None (readiness)."""
        store_problem = self.store.problem()
        if not self._loaded:
            return store_problem or "token store not loaded yet"
        if store_problem is not None:
            # Requests still flow with the held token, but a refresh is impossible.
            return store_problem
        if self._current is None:
            return "no token stored: run `tower-proxy login`"
        if self._dead_generation == self._current.generation:
            return "reauthorization required: run `tower-proxy login`"
        if self._current.is_expired(self._clock()) and self._in_backoff():
            return "token expired and refresh is failing"
        return None

    async def load(self) -> TokenSet | None:
        """Read the store; an unreachable store leaves us not loaded (retried later)."""
        try:
            stored = await self.store.load()
        except StoreUnavailable as exc:
            # Debug only: the store itself logs the outage once (token_store_unavailable).
            log.debug(
                "token_store_not_loaded",
                store=self.store.description,
                reason=str(exc),
                hint="not ready; retrying in the background",
            )
            return None
        self._loaded = True
        if stored is not None:
            self._adopt(stored, source="store")
        return self._current

    # -- the request path --------------------------------------------------

    async def token(self) -> TokenSet:
        """The token set a request should be sent with now."""
        if not self._loaded:
            await self._load_or_fail()
        if time.monotonic() >= self._next_recheck:  # checked here: the hot path awaits nothing
            await self._pick_up_changes()
        current = self._require_current()
        if self._rejected_generation == current.generation:
            task = self._inflight.get(current.generation)
            if task is not None:  # its successor is on the way: no certain 401 meanwhile
                return await asyncio.shield(task)
        if current.is_expired(self._clock()):
            if self._in_backoff():
                raise TokenUnavailable(
                    "token expired; refresh is backing off", retry_after=self._retry_after()
                )
            return await self.refresh(current.generation)
        return current

    async def refresh(self, failed_generation: int, *, rejected: bool = True) -> TokenSet:
        """A set newer than `failed_generation`, refreshing at most once for it.

        `rejected`: Tower refused that generation (401, or it expired), so a
        request starting meanwhile waits for this refresh instead of using it.
        """
        current = self._require_current()
        if current.generation > failed_generation:
            return current
        if self._in_backoff():
            raise TokenUnavailable(
                "token refresh is backing off after a failure", retry_after=self._retry_after()
            )
        if rejected:
            self._rejected_generation = failed_generation
        task = self._inflight.get(failed_generation)
        if task is None:
            task = asyncio.create_task(self._refresh_once(failed_generation))
            self._inflight[failed_generation] = task
            task.add_done_callback(self._forget_inflight(failed_generation))
        return await asyncio.shield(task)

    def _forget_inflight(self, generation: int) -> Callable[[asyncio.Task[TokenSet]], None]:
        def done(task: asyncio.Task[TokenSet]) -> None:
            self._inflight.pop(generation, None)
            if not task.cancelled():
                task.exception()  # retrieved: every waiter may have gone away

        return done

    async def refresh_if_due(self) -> bool:
        """Refresh ahead of expiry (wall clock); True when a refresh ran."""
        current = self._current
        if current is None or self._dead_generation == current.generation:
            return False
        due = current.expires_at - self._margin - self._jitter
        if self._clock() < due or self._in_backoff():
            return False
        with contextlib.suppress(ReauthorizationRequired, TokenUnavailable, NoToken):
            await self.refresh(current.generation, rejected=False)  # still valid meanwhile
            return True
        return False

    async def run_proactive(self, tick: float = PROACTIVE_TICK) -> None:
        """Forever: wake every `tick` seconds and refresh when due.

        Waking often and comparing against the wall clock (not sleeping until
        expiry) means a machine that wakes from sleep refreshes at once.
        """
        while True:
            if not self._loaded and self.store.problem() is None:
                await self.load()
            await self._pick_up_changes()
            await self.refresh_if_due()
            # Not loaded yet (store unreachable at start-up): look again soon.
            await asyncio.sleep(tick if self._loaded else min(tick, self._recheck_interval))

    # -- internals ---------------------------------------------------------

    async def _load_or_fail(self) -> None:
        """Load now, or refuse at once while the store is known to be unreachable."""
        problem = self.store.problem()
        if problem is None:
            await self.load()
        if not self._loaded:
            raise TokenUnavailable(
                f"token store unavailable: {self.store.problem() or 'not loaded yet'}",
                retry_after=RECHECK_INTERVAL * 5,
            )

    def _require_current(self) -> TokenSet:
        current = self._current
        if current is None:
            raise NoToken("no token stored: run `tower-proxy login`")
        if self._dead_generation == current.generation:
            raise ReauthorizationRequired(
                "the refresh token was rejected (invalid_grant): run `tower-proxy login`"
            )
        return current

    async def _pick_up_changes(self) -> None:
        """Re-read the store when another process may have written to it."""
        mono = time.monotonic()
        if mono < self._next_recheck or not self._loaded:
            return
        self._next_recheck = mono + self._recheck_interval
        try:
            if self.store.changed():
                stored = await self.store.load()
                if stored is not None:
                    self._adopt(stored, source="store")
        except StoreError as exc:
            log.warning("token_store_unreadable", store=self.store.description, reason=str(exc))

    def _adopt(self, new: TokenSet, *, source: str) -> None:
        old = self._current
        if old is not None and new.generation <= old.generation:
            return
        self._current = new
        self._failures, self._backoff_until = 0, 0.0
        self._jitter = self._rng() * min(60.0, self._margin * 0.2)
        if self._dead_generation is not None and new.generation > self._dead_generation:
            self._dead_generation = None
        if old is not None and source == "store":
            log.info(
                "token_store_changed",
                generation=new.generation,
                fingerprint=new.fingerprint,
                email=new.email,
                expires_in=round(new.expires_in(self._clock())),
            )

    async def _refresh_once(self, failed_generation: int) -> TokenSet:
        try:
            return await self._refresh_locked(failed_generation)
        except StoreError as exc:
            self._back_off("store_unavailable", str(exc))
            raise TokenUnavailable(
                f"token store unavailable: {exc}", retry_after=self._retry_after()
            ) from None

    async def _refresh_locked(self, failed_generation: int) -> TokenSet:
        async with self.store.refresh_lock():
            stored = await self.store.load()
            if stored is None:
                raise NoToken("no token stored: run `tower-proxy login`")
            if stored.generation > failed_generation:
                self._adopt(stored, source="store")
                return stored
            new = await self._call_token_endpoint(stored)
            if not await self.store.save(new, expected_generation=stored.generation):
                raise TokenUnavailable("token store changed under the refresh lock", retry_after=1)
        self._adopt(new, source="refresh")
        self._refreshed_generation = new.generation
        self._record("ok")
        log.info(
            "token_refreshed",
            generation=new.generation,
            fingerprint=new.fingerprint,
            expires_in=round(new.expires_in(self._clock())),
        )
        return new

    async def _call_token_endpoint(self, stored: TokenSet) -> TokenSet:
        try:
            response = await self._refresher.refresh(stored)
        except InvalidGrant as exc:
            self._dead_generation = stored.generation
            self._record("invalid_grant")
            log.error(
                "token_reauthorization_required",
                generation=stored.generation,
                reason=exc.error,
                hint="run `tower-proxy login`",
            )
            raise ReauthorizationRequired(
                "the refresh token was rejected (invalid_grant): run `tower-proxy login`"
            ) from None
        except (TokenEndpointUnavailable, OAuthError) as exc:
            reason = exc.error if isinstance(exc, OAuthError) else "unavailable"
            self._back_off(reason, str(exc))
            raise TokenUnavailable(
                f"token refresh failed: {exc}", retry_after=self._retry_after()
            ) from None
        now = self._clock()
        return TokenSet.from_grant(
            response, generation=stored.generation + 1, now=now, obtained_by="refresh"
        )

    def _back_off(self, reason: str, detail: str) -> None:
        self._failures += 1
        delay = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (self._failures - 1))
        delay *= 0.5 + self._rng()
        self._backoff_until = self._clock() + delay
        self._backoff_until_store_back = self.store.problem() is not None
        self._record(reason)
        log.warning(
            "token_refresh_failed",
            reason=reason,
            detail=detail,
            failures=self._failures,
            retry_in=round(delay, 1),
        )

    def _record(self, outcome: str) -> None:
        self.outcomes[outcome] += 1
        self.last_refresh = (self._clock(), outcome)

    def _in_backoff(self) -> bool:
        if self._backoff_until_store_back and self.store.problem() is None:
            return False  # the outage that caused it is over
        return self._clock() < self._backoff_until

    def _retry_after(self) -> float:
        return max(1.0, self._backoff_until - self._clock())
