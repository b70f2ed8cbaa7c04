"""The `redis` token store: one identity shared by a fleet of replicas.

Keys, all under `redis_key_prefix` + the client id, so one Redis can hold
several identities without them meeting:
- `<p>:token`  a hash {generation, token_set (JSON)}; written only by the
  compare-and-set script, so a stale replica can never replace a newer set;
- `<p>:lock`   the refresh lock: `SET NX PX` with a random owner value,
  released and extended only by its owner (scripts), expiring after
  `lock_ttl` so a replica that dies mid-refresh frees the fleet; while the
  owner lives a watchdog extends it, so a slow token call cannot lose it;
- `<p>:events` a pub/sub channel: the new generation after every write, and
  "released" when the lock is let go, which wakes replicas waiting for it.

Invariants:
- `load()` always reads Redis (inside the lock the manager must see the
  truth); the per-request path never does: the manager keeps the current set
  in memory and asks `changed()`, which is answered from pub/sub alone;
- a monitor task keeps the subscription and is the judge of health: Redis
  unreachable makes `problem()` non-None until it has reconnected (with
  backoff) and resubscribed; after a reconnect `changed()` is True once,
  since notifications may have been missed while away, and so it is after
  the first subscription when a `load()` came before it (a write between
  the two was announced to nobody);
- every Redis failure leaves this module as StoreUnavailable (transient);
  messages name the host, never the password;
- `close()` is bounded: background tasks stop on a flag as well as on
  cancellation, because a cancel can be lost inside redis-py (its
  `asyncio.wait_for` around socket writes swallows a cancel that lands as the
  write completes: CPython gh-86296, fixed in 3.12), and a task that ignores
  one cancel would otherwise loop forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import structlog
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from yarl import URL

from ..errors import StoreError, StoreUnavailable
from ..log import SECRETS
from .model import TokenSet

log = structlog.get_logger("proxy.tokens")

LOCK_WAIT = 60.0  # how long a refresh waits for another replica's lock
SOCKET_TIMEOUT = 3.0
_POLL_START, _POLL_MAX = 0.02, 0.25
_RECONNECT_START, _RECONNECT_MAX = 0.2, 5.0
_PING_EVERY = 5.0
_LISTEN_TICK = 1.0  # how often the listener looks at the closing flag
CLOSE_TIMEOUT = 5.0
_RELEASED = b"released"

# KEYS[1] token hash, KEYS[2] channel; ARGV[1] set JSON, ARGV[2] expected, ARGV[3] new
_SAVE = """
local current = tonumber(redis.call('HGET', KEYS[1], 'generation') or '0')
local new = tonumber(ARGV[3])
if current ~= tonumber(ARGV[2]) or new <= current then return 0 end
redis.call('HSET', KEYS[1], 'generation', ARGV[3], 'token_set', ARGV[1])
redis.call('PUBLISH', KEYS[2], ARGV[3])
return 1
"""
# KEYS[1] token hash, KEYS[2] channel
_DELETE = """
local removed = redis.call('DEL', KEYS[1])
if removed == 1 then redis.call('PUBLISH', KEYS[2], '0') end
return removed
"""
# KEYS[1] lock, KEYS[2] channel; ARGV[1] owner
_RELEASE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', KEYS[2], 'released')
return 1
"""
# KEYS[1] lock; ARGV[1] owner, ARGV[2] ttl ms
_EXTEND = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
return redis.call('PEXPIRE', KEYS[1], ARGV[2])
"""


def redis_keys(prefix: str, client_id: str) -> tuple[str, str, str]:
    """(token hash, lock, channel) for one identity."""
    base = f"{prefix}{client_id or 'default'}"
    return f"{base}:token", f"{base}:lock", f"{base}:events"


def describe_url(url: str) -> str:
    """The URL as it may be shown: scheme, host, port and db — no credentials."""
    parsed = URL(url)
    if parsed.scheme == "unix":
        return f"unix:{parsed.path}"
    return f"{parsed.scheme}://{parsed.host}:{parsed.port or 6379}{parsed.path or '/0'}"


class RedisStore:
    def __init__(
        self,
        url: str,
        *,
        client_id: str,
        key_prefix: str = "tower-proxy:",
        password: str = "",
        lock_ttl: float = 10.0,
        lock_wait: float = LOCK_WAIT,
    ) -> None:
        self._url = url
        self._password = password
        self._key, self._lock_key, self._channel = redis_keys(key_prefix, client_id)
        self._lock_ttl_ms = max(1, int(lock_ttl * 1000))
        self._lock_wait = lock_wait
        self.description = f"redis {describe_url(url)} key {self._key}"
        self._client: Redis | None = None
        self._monitor: asyncio.Task[None] | None = None
        self._problem: str | None = None  # set while Redis is known unreachable
        self._seen_generation = -1  # generation at the last load(); -1 = never loaded
        self._announced_generation = -1
        self._resync = False
        self._listening = False
        self._wake = asyncio.Event()
        self._local = asyncio.Lock()
        self._closing = False
        SECRETS.add(password, URL(url).password or "")

    # -- the TokenStore protocol -------------------------------------------

    async def load(self) -> TokenSet | None:
        self._start_monitor()
        raw = await self._call(self._redis().hget(self._key, "token_set"))
        if raw is None:
            self._seen_generation = 0
            return None
        stored = TokenSet.from_json(raw)
        self._seen_generation = stored.generation
        return stored

    async def save(self, new: TokenSet, *, expected_generation: int) -> bool:
        script = self._redis().register_script(_SAVE)
        keys = [self._key, self._channel]
        args: list[str | int] = [new.to_json(), expected_generation, new.generation]
        saved = bool(await self._call(script(keys=keys, args=args)))
        if saved:
            self._seen_generation = new.generation
        return saved

    async def delete(self) -> bool:
        script = self._redis().register_script(_DELETE)
        removed = bool(await self._call(script(keys=[self._key, self._channel])))
        self._seen_generation = 0
        return removed

    def changed(self) -> bool:
        """Whether another replica wrote since our last load (no Redis call)."""
        self._start_monitor()
        if self._resync:
            self._resync = False
            return True
        return self._announced_generation != -1 and (
            self._announced_generation != self._seen_generation
        )

    def problem(self) -> str | None:
        self._start_monitor()
        return self._problem

    @property
    def listening(self) -> bool:
        """Subscribed: another replica's writes are announced to this one from now on."""
        return self._listening

    async def close(self) -> None:
        """Stop the monitor and disconnect, in at most about CLOSE_TIMEOUT seconds."""
        self._closing = True
        if self._monitor is not None:
            await stop_task(self._monitor)
            self._monitor = None
        if self._client is not None:
            client, self._client = self._client, None
            with contextlib.suppress(RedisError, OSError, TimeoutError):
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await client.aclose()

    @asynccontextmanager
    async def refresh_lock(self) -> AsyncIterator[None]:
        self._start_monitor()
        async with self._local:  # one waiter per process; the rest queue here
            owner = secrets.token_hex(16)
            await self._acquire(owner)
            done = asyncio.Event()
            watchdog = asyncio.create_task(self._keep_lock(owner, done))
            try:
                yield
            finally:
                done.set()
                await stop_task(watchdog)
                await self._release(owner)

    # -- the lock ----------------------------------------------------------

    async def _acquire(self, owner: str) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._lock_wait
        delay = _POLL_START
        while True:
            self._wake.clear()
            taken = await self._call(
                self._redis().set(self._lock_key, owner, nx=True, px=self._lock_ttl_ms)
            )
            if taken:
                return
            if loop.time() >= deadline:
                raise StoreUnavailable(
                    f"the refresh lock in {self.description} stayed held by another "
                    f"replica for over {self._lock_wait:.0f}s"
                )
            # Woken by the holder's "released" notice; polling covers a holder
            # that died (its lock expires silently) or a lost notification.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()
            delay = min(delay * 2, _POLL_MAX)

    async def _keep_lock(self, owner: str, done: asyncio.Event) -> None:
        """Extend our lock until `done`, so a slow token call keeps it."""
        script = self._redis().register_script(_EXTEND)
        while not done.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._lock_ttl_ms / 3000):
                    await done.wait()
                return  # released: no more extending
            try:
                kept = await script(keys=[self._lock_key], args=[owner, self._lock_ttl_ms])
            except (RedisError, OSError) as exc:
                self._mark_down(exc)
                continue
            if not kept:
                log.error("token_lock_lost", store=self.description)
                return

    async def _release(self, owner: str) -> None:
        script = self._redis().register_script(_RELEASE)
        try:
            await script(keys=[self._lock_key, self._channel], args=[owner])
        except (RedisError, OSError) as exc:
            # It expires by itself after lock_ttl; nothing else to do.
            self._mark_down(exc)

    # -- connection, health and notifications ------------------------------

    def _redis(self) -> Redis:
        if self._client is None:
            kwargs: dict[str, Any] = {
                "socket_timeout": SOCKET_TIMEOUT,
                "socket_connect_timeout": SOCKET_TIMEOUT,
                # Failing fast is the point: the manager backs off, the monitor reconnects.
                "retry": Retry(NoBackoff(), 0),
            }
            if self._password:
                kwargs["password"] = self._password
            self._client = Redis.from_url(self._url, **kwargs)
        return self._client

    async def _call(self, command: Any) -> Any:
        try:
            return await command
        except (RedisError, OSError) as exc:
            self._mark_down(exc)
            raise StoreUnavailable(f"{self.description} is unreachable: {_reason(exc)}") from None
        except ValueError as exc:  # a corrupt hash, not a transient fault
            raise StoreError(f"{self.description} holds unreadable data") from exc

    def _start_monitor(self) -> None:
        if self._closing:
            return
        if self._monitor is None or self._monitor.done():
            with contextlib.suppress(RuntimeError):  # no running loop: nothing to watch
                self._monitor = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        delay = _RECONNECT_START
        while not self._closing:
            try:
                pubsub = self._redis().pubsub()
                try:
                    await pubsub.subscribe(self._channel)
                    await self._redis().ping()
                    self._mark_up()
                    self._subscribed()
                    delay = _RECONNECT_START
                    await self._listen(pubsub)
                finally:
                    self._listening = False
                    with contextlib.suppress(RedisError, OSError):
                        await pubsub.aclose()
            except (RedisError, OSError) as exc:
                self._mark_down(exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, _RECONNECT_MAX)

    async def _listen(self, pubsub: PubSub) -> None:
        loop = asyncio.get_running_loop()
        next_ping = loop.time() + _PING_EVERY
        while not self._closing:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=_LISTEN_TICK)
            if message is not None:
                self._on_message(message.get("data"))
            if self._problem is not None or loop.time() >= next_ping:
                # A command failed elsewhere, or a quiet connection may be half-open.
                await pubsub.ping()
                await self._redis().ping()
                self._mark_up()
                next_ping = loop.time() + _PING_EVERY

    def _on_message(self, data: object) -> None:
        if data == _RELEASED:
            self._wake.set()
            return
        with contextlib.suppress(TypeError, ValueError):
            self._announced_generation = int(data)  # type: ignore[call-overload]
            self._wake.set()

    def _mark_down(self, exc: BaseException) -> None:
        reason = f"{self.description} is unreachable: {_reason(exc)}"
        if self._problem is None:
            log.warning(
                "token_store_unavailable",
                store=self.description,
                reason=_reason(exc),
                hint="not ready and no refresh until it answers; reconnecting with backoff",
            )
        self._problem = reason

    def _subscribed(self) -> None:
        self._listening = True
        if self._seen_generation != -1:  # loaded before: a write since went unannounced
            self._resync = True

    def _mark_up(self) -> None:
        if self._problem is not None:
            log.info("token_store_available", store=self.description)
            self._problem = None
            self._resync = True  # notifications may have been missed meanwhile


async def stop_task(task: asyncio.Task[None]) -> None:
    """Cancel `task` and wait for it, cancelling again if a cancel was lost; bounded.

    The task's own loop must also watch a flag: a lost cancel is retried every
    tick, and after CLOSE_TIMEOUT the task is left to end on its flag.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + CLOSE_TIMEOUT
    while not task.done() and loop.time() < deadline:
        task.cancel()
        await asyncio.wait({task}, timeout=0.1)
    if not task.done():
        log.warning("redis_task_not_stopped", task=task.get_name())
        return
    error = None if task.cancelled() else task.exception()
    if error is not None:
        log.warning("redis_task_failed", task=task.get_name(), error=_reason(error))


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return SECRETS.scrub(text)[:200]
