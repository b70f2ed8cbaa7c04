"""The redis store on its own, against a real redis-server: CAS, lock, pub/sub, faults."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import pytest

from proxy.errors import StoreUnavailable
from proxy.tokens import TokenSet
from proxy.tokens.redis_store import CLOSE_TIMEOUT, RedisStore, redis_keys

from ..conftest import free_port, wait_until
from .conftest import RedisServer


def token_set(generation: int) -> TokenSet:
    return TokenSet(
        access_token=f"access-token-of-generation-{generation}",
        refresh_token=f"refresh-token-of-generation-{generation}",
        expires_at=time.time() + 3600,
        email="fleet@example.com",
        generation=generation,
    )


@pytest.fixture
def prefix(request: pytest.FixtureRequest) -> str:
    return f"unit-{request.node.name}:"


@pytest.fixture
def keys(prefix: str) -> tuple[str, str, str]:
    """(token hash, lock, channel) of the test's identity."""
    return redis_keys(prefix, "fleet")


@pytest.fixture
async def replicas(
    shared_redis: RedisServer, prefix: str
) -> AsyncIterator[Callable[..., RedisStore]]:
    """Store instances sharing one identity, as separate replicas would hold them."""
    made: list[RedisStore] = []

    def make(**kwargs: object) -> RedisStore:
        options: dict[str, object] = {"key_prefix": prefix, "lock_ttl": 2.0, **kwargs}
        made.append(RedisStore(shared_redis.url, client_id="fleet", **options))  # type: ignore[arg-type]
        return made[-1]

    yield make
    for store in made:
        await store.close()


async def test_a_stale_replicas_write_is_rejected_by_the_generation_check(replicas):
    """A replica that read generation 1 cannot overwrite the generation 2 another wrote."""
    a, b = replicas(), replicas()
    assert await a.save(token_set(1), expected_generation=0)
    stale = await b.load()
    assert stale is not None and stale.generation == 1
    assert await a.save(token_set(2), expected_generation=1)
    assert not await b.save(token_set(2), expected_generation=stale.generation)
    assert not await b.save(token_set(1), expected_generation=2)  # never backwards
    stored = await b.load()
    assert stored is not None and stored.access_token == token_set(2).access_token


async def test_the_token_set_lives_in_one_hash_with_its_generation(replicas, shared_redis, keys):
    """One key per identity holds the generation next to the set's JSON."""
    store = replicas()
    await store.save(token_set(3), expected_generation=0)
    key, _, _ = keys
    client = shared_redis.client()
    try:
        assert client.hget(key, "generation") == b"3"
        assert TokenSet.from_json(client.hget(key, "token_set") or b"").generation == 3
    finally:
        client.close()


async def test_another_replicas_write_is_announced_by_pub_sub(replicas):
    """`changed()` turns True from the notification alone, then False after a load."""
    a, b = replicas(), replicas()
    await a.save(token_set(1), expected_generation=0)
    await _listening(b)  # before its first load: nothing it loads can go unannounced
    await b.load()
    assert not b.changed()
    await a.save(token_set(2), expected_generation=1)

    async def noticed() -> bool:
        return b.changed()

    await wait_until(noticed)
    loaded = await b.load()
    assert loaded is not None and loaded.generation == 2
    assert not b.changed()


async def test_a_write_between_the_first_load_and_the_subscription_is_not_missed(replicas):
    """A replica loads (its subscription still under way) while another writes: whichever
    came first, `changed()` turns True — announced, or the resync after subscribing."""
    a, b = replicas(), replicas()
    await a.save(token_set(1), expected_generation=0)
    await b.load()
    await a.save(token_set(2), expected_generation=1)
    await _listening(b)

    async def noticed() -> bool:
        return b.changed()

    await wait_until(noticed)
    loaded = await b.load()
    assert loaded is not None and loaded.generation == 2


async def _listening(store: RedisStore) -> None:
    """Until `store` is subscribed (asking for its problem starts its monitor)."""

    async def subscribed() -> bool:
        return store.problem() is None and store.listening

    await wait_until(subscribed)


async def test_only_one_replica_holds_the_refresh_lock(replicas):
    """A second replica waits for the lock and gets it when the first lets go."""
    a, b = replicas(), replicas()
    order: list[str] = []
    entered = asyncio.Event()

    async def holder() -> None:
        async with a.refresh_lock():
            order.append("a in")
            entered.set()
            await asyncio.sleep(0.3)  # holding the lock for a while, not asserting time
            order.append("a out")

    async def waiter() -> None:
        await entered.wait()
        async with b.refresh_lock():
            order.append("b in")

    await asyncio.gather(holder(), waiter())
    assert order == ["a in", "a out", "b in"]


async def test_the_lock_is_released_only_by_its_owner(replicas, shared_redis, keys):
    """Releasing after the lock expired and was taken by another leaves the new owner's lock."""
    a = replicas(lock_ttl=1.0)
    _, lock_key, _ = keys
    client = shared_redis.client()
    try:
        async with a.refresh_lock():
            client.set(lock_key, b"someone-else", px=10_000)  # as if ours had expired
        assert client.get(lock_key) == b"someone-else"
    finally:
        client.delete(lock_key)
        client.close()


async def test_a_dead_holders_lock_expires(replicas, shared_redis, keys):
    """A lock left by a holder that died is free again after its ttl."""
    store = replicas(lock_wait=10.0)
    _, lock_key, _ = keys
    client = shared_redis.client()
    try:
        client.set(lock_key, b"dead-replica", px=1000)
        async with store.refresh_lock():
            assert client.get(lock_key) not in (None, b"dead-replica")
    finally:
        client.close()


async def test_a_holder_keeps_its_lock_past_the_ttl(replicas, shared_redis, keys):
    """The watchdog extends a live holder's lock, so a slow refresh cannot lose it."""
    store = replicas(lock_ttl=1.0)
    _, lock_key, _ = keys
    client = shared_redis.client()
    try:
        async with store.refresh_lock():
            owner = client.get(lock_key)
            await asyncio.sleep(2.5)  # longer than the ttl: the lock must still be ours
            assert client.get(lock_key) == owner
        assert client.get(lock_key) is None
    finally:
        client.close()


async def test_unreachable_redis_is_a_transient_store_error(replicas):
    """No server on the port: load raises StoreUnavailable and problem() says why."""
    store = RedisStore(f"redis://127.0.0.1:{free_port()}/0", client_id="fleet")
    try:
        with pytest.raises(StoreUnavailable, match="unreachable"):
            await store.load()
        assert "unreachable" in (store.problem() or "")
        with pytest.raises(StoreUnavailable):
            async with store.refresh_lock():
                raise AssertionError("the lock must not be granted without Redis")
    finally:
        await store.close()


async def test_password_from_config_is_used_and_never_described(make_redis):
    """A password-protected Redis works with redis_password; the description omits it."""
    server = make_redis(password="fleet-redis-password-1")
    store = RedisStore(server.url, client_id="fleet", password=server.password)
    url_store = RedisStore(
        f"redis://:{server.password}@127.0.0.1:{server.port}/0", client_id="fleet"
    )
    try:
        assert await store.save(token_set(1), expected_generation=0)
        loaded = await url_store.load()
        assert loaded is not None and loaded.generation == 1
        assert server.password not in store.description + url_store.description
    finally:
        await store.close()
        await url_store.close()


async def test_close_returns_even_when_a_cancel_is_lost_in_redis_py(shared_redis, prefix):
    """Closed right after start-up, again and again: close() always ends, no task survives.

    redis-py's wait_for around socket writes (Python 3.11) can swallow a cancel
    that lands as a write completes; before the fix that left the monitor
    looping and a test run hung in fixture teardown.  Closing at once after the
    first load hits that window within a few dozen rounds.
    """
    for round_ in range(40):
        store = RedisStore(shared_redis.url, client_id="fleet", key_prefix=f"{prefix}{round_}:")
        await store.load()
        monitor = store._monitor
        async with asyncio.timeout(CLOSE_TIMEOUT + 2):
            await store.close()
        assert monitor is not None and monitor.done()
        assert store.problem() is None and store._monitor is None  # not restarted after close


async def test_rediss_verifies_the_server_certificate(make_redis):
    """rediss:// with the CA in the URL works; without it the certificate is refused."""
    server = make_redis(tls=True)
    store = RedisStore(server.url, client_id="fleet")
    untrusting = RedisStore(f"rediss://127.0.0.1:{server.port}/0", client_id="fleet")
    try:
        assert await store.save(token_set(1), expected_generation=0)
        loaded = await store.load()
        assert loaded is not None and loaded.generation == 1
        assert store.description.startswith(f"redis rediss://127.0.0.1:{server.port}/0 ")
        with pytest.raises(StoreUnavailable, match=r"(?i)certificate"):
            await untrusting.load()
    finally:
        await store.close()
        await untrusting.close()
