"""Link rewriting (proxy/rewrite.py): Tower's absolute URLs become the proxy's."""

from __future__ import annotations

import gzip

import pytest

from proxy.rewrite import MAX_REWRITE, LinkRewriter, is_rewritable

TOWER = "https://tower.im/api/v1"


@pytest.fixture
def rewriter() -> LinkRewriter:
    return LinkRewriter(TOWER, proxy_prefix="/tower/")


def test_plain_and_escaped_links_point_at_the_host_and_prefix(rewriter: LinkRewriter) -> None:
    body = (
        b'{"links":{"next":"https://tower.im/api/v1/todos?page=2",'
        b'"self":"https:\\/\\/tower.im\\/api\\/v1\\/todos"}}'
    )
    new, decoded = rewriter.body(body, "", "127.0.0.1:8730")
    assert new == (
        b'{"links":{"next":"http://127.0.0.1:8730/tower/todos?page=2",'
        b'"self":"http:\\/\\/127.0.0.1:8730\\/tower\\/todos"}}'
    )
    assert decoded is False


def test_a_body_naming_the_host_but_not_the_api_is_passed_as_it_is(
    rewriter: LinkRewriter,
) -> None:
    body = b'{"avatar":"https://tower.im/assets/a.png","home":"https://tower.im"}'
    assert rewriter.body(body, "", "127.0.0.1:8730") == (body, False)


def test_a_compressed_body_with_links_is_decoded_and_rewritten(rewriter: LinkRewriter) -> None:
    body = gzip.compress(b'{"next":"https://tower.im/api/v1/todos?page=2"}')
    new, decoded = rewriter.body(body, " GZIP ", "localhost:8730")
    assert (new, decoded) == (b'{"next":"http://localhost:8730/tower/todos?page=2"}', True)


def test_a_compressed_body_without_links_stays_compressed(rewriter: LinkRewriter) -> None:
    body = gzip.compress(b'{"data":{"id":"p1"}}')
    assert rewriter.body(body, "gzip", "localhost:8730") == (body, False)


def test_location_is_rewritten_only_under_the_api_base(rewriter: LinkRewriter) -> None:
    assert rewriter.location(f"{TOWER}/todos/1", "h:1") == "http://h:1/tower/todos/1"
    assert rewriter.location(f"{TOWER}?x=1", "h:1") == "http://h:1/tower?x=1"
    assert rewriter.location(f"{TOWER}x/todos", "h:1") == f"{TOWER}x/todos"
    assert rewriter.location("https://tower.im/login", "h:1") == "https://tower.im/login"


def test_without_a_prefix_the_base_is_the_host_alone() -> None:
    new, _ = LinkRewriter(TOWER).body(b'"https://tower.im/api/v1/me"', "", "h:1")
    assert new == b'"http://h:1/me"'


@pytest.mark.parametrize(
    ("content_type", "encoding", "length", "expected"),
    [
        ("application/json; charset=utf-8", "", 10, True),
        ("Application/VND.API+JSON", "gzip", None, True),
        ("application/json", "br", 10, False),  # a coding the proxy cannot decode
        ("text/html", "", 10, False),
        ("application/json", "", MAX_REWRITE, True),
        ("application/json", "", MAX_REWRITE + 1, False),
    ],
)
def test_which_bodies_are_rewritable(
    content_type: str, encoding: str, length: int | None, expected: bool
) -> None:
    assert is_rewritable(content_type, encoding, length) is expected
