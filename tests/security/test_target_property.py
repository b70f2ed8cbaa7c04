"""Property: whatever target and headers arrive, the token can only go to api_url, under its path.

Hypothesis builds request targets from the pieces attacks are made of (dot
segments and separators in every encoding, hosts, userinfo, control
characters, random text and random percent-encoded bytes) and header sets
(Host values, credentials, hop-by-hop names listed in Connection).  For every
example the URL builder (proxy/target.py) either refuses, or returns a URL
with api_url's exact origin whose path stays under api_url's path however
many times a server along the way decodes it; the outgoing headers never
carry the caller's credentials.  Examples per run: TARGET_EXAMPLES x 2 bases
+ HEADER_EXAMPLES.
"""

from __future__ import annotations

import posixpath
from urllib.parse import quote, unquote

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy

from proxy.errors import Refused
from proxy.guard import Guard
from proxy.headers import HOP_BY_HOP, upstream_request_headers
from proxy.target import PathPolicy, Upstream

TARGET_EXAMPLES = 1500
HEADER_EXAMPLES = 1000

NASTY = [
    ".", "..", "%2e", "%2E", ".%2e", "%2e%2e", "%2E%2e", "%252e", "%252E%252e", "%25252e",
    "%2f", "%2F", "%252f", "%5c", "%5C", "%255c", "\\", "/", "//", "%00", "%0d%0a", "%0a",
    "%09", "%7f", "%23", "#", "%3f", "?", "@", "%40", ":", "evil.example", "127.0.0.1:1",
    "http:", "https:", "%", "%2", "%zz", "~", ";", "..;", "%c0%ae", "%e2%80%ae", "\x00", "\t",
    " ", "\r\n", "access_token", "=", "&", "+",
]  # fmt: skip

words = st.from_regex(r"[A-Za-z0-9_\-]{1,8}", fullmatch=True)
pieces = st.one_of(
    words,
    words,
    st.sampled_from(NASTY),
    st.text(min_size=1, max_size=8),
    st.binary(min_size=1, max_size=6).map(lambda b: quote(b, safe="")),
    st.binary(min_size=1, max_size=4).map(lambda b: quote(quote(b, safe=""), safe="")),
)
segments = st.one_of(words, words, words, st.lists(pieces, min_size=1, max_size=3).map("".join))
starts = st.one_of(
    st.just("/api/v1/"),
    st.just("/tower/"),
    st.sampled_from(
        ["/api/v1", "/tower", "/", "//", "", "http://evil.example/", "/api/v1/../", "/api/v10/",
         "/API/v1/", "\\", "/api/v1\\", "/api/v1%2f", "http://127.0.0.1:1/api/v1/"]
    ),
)  # fmt: skip
targets = st.builds(
    lambda start, parts, query: start + "/".join(parts) + query,
    starts,
    st.lists(segments, max_size=6),
    st.one_of(st.just(""), st.lists(pieces, max_size=4).map(lambda q: "?" + "".join(q))),
)

BASES = [
    ("https://tower.im/api/v1", "/api/v1"),
    ("http://127.0.0.1:8080/api/v1/", "/tower"),
]


def _resolved(raw_path: str) -> str:
    """The path as the most decoding-happy server along the way could read it."""
    path = raw_path
    for _ in range(5):
        path = unquote(path)
    return posixpath.normpath(path.replace("\\", "/"))


def _query_names(query: str) -> set[str]:
    return {unquote(part.partition("=")[0].replace("+", " ")).strip() for part in query.split("&")}


@pytest.mark.parametrize(("api_url", "prefix"), BASES)
@settings(max_examples=TARGET_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(target=targets, method=st.sampled_from(["GET", "POST", "DELETE"]))
def test_url_builder_never_leaves_the_api(api_url, prefix, target, method):
    """Refused, or a URL with api_url's origin and a path that resolves under api_url's path."""
    upstream = Upstream.from_config(
        api_url, prefix, policy=PathPolicy.build(allow_paths=(), deny_paths=(), read_only=False)
    )
    base = upstream.base
    try:
        url = upstream.url_for(target, method=method)
    except Refused as refused:
        assert refused.code in {"bad_request", "not_found"}
        event(f"refused: {refused.code}")
        return
    event("forwarded")
    assert (url.scheme, url.host, url.port) == (base.scheme, base.host, base.port)
    assert not (url.user or url.password or url.fragment)
    assert str(url).startswith(str(base) + "/") or str(url).partition("?")[0] == str(base)
    assert _resolved(url.raw_path).startswith(base.raw_path.rstrip("/"))
    assert ".." not in _resolved(url.raw_path).split("/")
    assert "access_token" not in _query_names(url.raw_query_string)
    # Byte-exact: what follows the prefix is what the client sent, not a re-encoding.
    assert url.raw_path.endswith(target.partition("?")[0][len(prefix.rstrip("/")) :])


header_values = st.one_of(
    st.sampled_from(["Bearer stolen", "evil.example", "127.0.0.1.evil", "localhost:80@evil",
                     "x-proxy-key, authorization", "keep-alive, cookie", "127.0.0.1 evil"]),
    st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=24),
)  # fmt: skip
hosts = st.one_of(
    st.sampled_from(["localhost", "LOCALHOST:8730", "127.0.0.1", "127.0.0.1:1", "[::1]",
                     "[::1]:8730", "tower-proxy", "Tower-Proxy:80", " localhost ", "[::1"]),
    st.builds(
        lambda name, tail: name + tail,
        st.sampled_from(["localhost", "127.0.0.1", "[::1]", "tower-proxy"]),
        st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=8),
    ),
    header_values,
)  # fmt: skip
header_names = st.sampled_from(
    ["Authorization", "X-Proxy-Key", "Cookie", "Connection", "Keep-Alive", "TE",
     "Proxy-Authorization", "Upgrade", "X-Forwarded-Host", "Accept", "X-Custom",
     "authorization", "HOST", "Transfer-Encoding"]
)  # fmt: skip
header_sets = st.builds(
    lambda host_values, others: [("Host", h) for h in host_values] + others,
    st.lists(hosts, min_size=1, max_size=2),
    st.lists(st.tuples(header_names, header_values), max_size=8),
)


@settings(max_examples=HEADER_EXAMPLES, deadline=None)
@given(headers=header_sets)
def test_headers_never_carry_caller_credentials_or_a_foreign_host(headers):
    """A Host the guard accepts names this proxy; Tower never gets the caller's credentials."""
    incoming = CIMultiDictProxy(CIMultiDict(headers))
    guard = Guard.build(allowed_hosts=("tower-proxy",), allowed_origins=())
    try:
        guard.check(incoming)
        accepted = True
    except Refused:
        accepted = False
    event("host accepted" if accepted else "refused")
    if accepted:
        (host,) = incoming.getall("Host")
        name = host.strip().lower().rsplit(":", 1)[0] if "]" not in host else host.split("]")[0]
        assert name.strip().lstrip("[") in {"localhost", "127.0.0.1", "::1", "tower-proxy"}
    outgoing = upstream_request_headers(incoming)
    listed = {
        token.strip().lower()
        for value in incoming.getall("Connection", ())
        for token in value.split(",")
    }
    for name, _value in outgoing:
        lowered = name.lower()
        assert lowered not in {"authorization", "x-proxy-key", "host", "cookie"}
        assert lowered not in HOP_BY_HOP and lowered not in listed
