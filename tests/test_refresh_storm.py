"""A refresh storm: requests that start while a rejected token is being
refreshed wait for the new one instead of sending the dead one (issue 7)."""

from __future__ import annotations

import asyncio

from .conftest import wait_until


async def _in_flight(proxy) -> float:
    text = await (await proxy.get("/-/metrics")).text()
    line = next(x for x in text.splitlines() if x.startswith("tower_proxy_in_flight_requests "))
    return float(line.split()[1])


async def test_requests_during_a_refresh_wait_for_it(proxy, sandbox):
    """1 request meets the 401; 20 more start during its refresh: 1 refresh, 1 401 in all."""
    await sandbox.knobs(token_delay_ms=3000)  # keeps the refresh open while the others start
    await sandbox.revoke()
    before = await sandbox.stats()
    first = asyncio.create_task(proxy.get("/api/v1/user"))

    async def refresh_started() -> bool:
        return (await sandbox.refreshes()) == before["token_requests"]["refresh_token"] + 1

    await wait_until(refresh_started)
    later = [asyncio.create_task(proxy.get("/api/v1/user")) for _ in range(20)]

    async def all_waiting() -> bool:
        return await _in_flight(proxy) == 21

    await wait_until(all_waiting)
    during = await sandbox.stats()
    assert during["token_responses"] == before["token_responses"]  # the refresh is still open
    responses = await asyncio.gather(first, *later)

    assert [r.status for r in responses] == [200] * 21
    after = await sandbox.stats()
    assert after["token_requests"]["refresh_token"] - before["token_requests"]["refresh_token"] == 1
    assert after["api_unauthorized"] - before["api_unauthorized"] == 1  # only the first request's
    assert after["api_requests"] - before["api_requests"] == 22  # its replay and 20 new ones
