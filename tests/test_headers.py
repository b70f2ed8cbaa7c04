"""Header rules (proxy/headers.py), including names met again under another rule."""

from __future__ import annotations

from multidict import CIMultiDict, CIMultiDictProxy

from proxy.headers import client_response_headers, upstream_request_headers


def _headers(*pairs: tuple[str, str]) -> CIMultiDictProxy[str]:
    return CIMultiDictProxy(CIMultiDict(pairs))


def test_a_name_listed_in_connection_is_dropped_only_where_it_is_listed() -> None:
    listed = _headers(("Connection", "X-Hop"), ("X-Hop", "1"), ("Accept", "*/*"))
    plain = _headers(("X-Hop", "2"), ("Accept", "*/*"))
    for _ in range(2):  # the second round is judged from what the first one learned
        assert upstream_request_headers(listed) == [("Accept", "*/*")]
        assert upstream_request_headers(plain) == [("X-Hop", "2"), ("Accept", "*/*")]


def test_a_name_forwarded_to_tower_may_still_be_kept_from_the_client() -> None:
    cors = ("Access-Control-Allow-Origin", "*")
    assert upstream_request_headers(_headers(cors)) == [cors]
    assert list(client_response_headers(_headers(cors, ("ETag", '"1"'))).items()) == [
        ("ETag", '"1"')
    ]
    assert upstream_request_headers(_headers(cors)) == [cors]


def test_every_spelling_of_a_dropped_name_is_dropped() -> None:
    for name in ("Authorization", "authorization", "AUTHORIZATION", "aUtHoRiZaTiOn"):
        assert upstream_request_headers(_headers((name, "Bearer x"), ("Accept", "*/*"))) == [
            ("Accept", "*/*")
        ]
        assert not client_response_headers(_headers(("Set-Cookie".swapcase(), "a=b")))


def test_past_the_remembered_names_each_is_still_judged() -> None:
    many = [(f"X-Name-{n}", "v") for n in range(600)]
    assert upstream_request_headers(_headers(*many, ("Cookie", "c=1"))) == many
    assert upstream_request_headers(_headers(("X-Name-599", "v"), ("Cookie", "c=1"))) == [
        ("X-Name-599", "v")
    ]
