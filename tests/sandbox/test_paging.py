"""Page-number paging with absolute links, and the events cursor."""

from __future__ import annotations

from yarl import URL

from .conftest import ALICE, MOBILE, TEAM


async def test_members_links_are_absolute_and_null_at_the_ends(harness, token):
    """page[size]=2 of 3 members: page 1 has next, no prev; links use the request's host."""
    document = await harness.json("GET", f"/teams/{TEAM}/members?page%5Bsize%5D=2", token)
    base = f"{str(harness.client.make_url('')).rstrip('/')}/api/v1/teams/{TEAM}/members"
    assert document["links"] == {
        "self": f"{base}?page%5Bnumber%5D=1&page%5Bsize%5D=2",
        "first": f"{base}?page%5Bnumber%5D=1&page%5Bsize%5D=2",
        "prev": None,
        "next": f"{base}?page%5Bnumber%5D=2&page%5Bsize%5D=2",
        "last": f"{base}?page%5Bnumber%5D=2&page%5Bsize%5D=2",
    }
    assert len(document["data"]) == 2


async def test_last_page_has_prev_and_no_next(harness, token):
    """Following `next` gives the rest and a null `next`."""
    first = await harness.json("GET", f"/teams/{TEAM}/members?page%5Bsize%5D=2", token)
    next_url = URL(first["links"]["next"])
    assert (next_url.host, next_url.port) == (harness.client.host, harness.client.port)
    second = await harness.json("GET", next_url.raw_path_qs.removeprefix("/api/v1"), token)
    assert len(second["data"]) == 1
    assert second["links"]["next"] is None
    assert second["links"]["prev"] == first["links"]["self"]


async def test_default_member_page_is_200_and_a_page_past_the_end_is_empty(harness, token):
    """Members page 200 at a time; a page past the last is empty, not an error."""
    document = await harness.json("GET", f"/teams/{TEAM}/members?page[number]=5", token)
    assert document["data"] == []
    assert document["links"]["last"].endswith("page%5Bnumber%5D=1&page%5Bsize%5D=200")


async def test_links_keep_other_parameters_but_never_access_token(harness, token):
    """Filters stay in the links; an access_token parameter is dropped from them."""
    path = f"/members/{ALICE}/created_completed_todos?x=1&access_token={token}&page[size]=1"
    document = await harness.json("GET", path, token)
    assert document["links"]["next"].endswith("?x=1&page%5Bnumber%5D=2&page%5Bsize%5D=1")
    assert token not in str(document["links"])


async def test_events_page_by_last_item_id_and_limit(harness, token):
    """Events go newest first; last_item_id continues after that event."""
    path = f"/teams/{TEAM}/events"
    everything = [e["id"] for e in (await harness.json("GET", f"{path}?limit=100", token))["data"]]
    assert len(everything) == 17
    first = await harness.json("GET", f"{path}?limit=5", token)
    assert [e["id"] for e in first["data"]] == everything[:5]
    after = await harness.json("GET", f"{path}?limit=5&last_item_id={everything[4]}", token)
    assert [e["id"] for e in after["data"]] == everything[5:10]
    tail = await harness.json("GET", f"{path}?last_item_id={everything[-1]}", token)
    assert tail["data"] == []
    assert "links" not in tail


async def test_events_filter_by_project(harness, token):
    """by_project keeps only that project's events."""
    document = await harness.json("GET", f"/teams/{TEAM}/events?by_project={MOBILE}", token)
    projects = {e["relationships"]["project"]["data"]["id"] for e in document["data"]}
    assert (len(document["data"]), projects) == (4, {MOBILE})
