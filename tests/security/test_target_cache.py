"""`Upstream.target_for`: the target string `url_for` is made of, and the cache behind both.

The cache keeps what a raw target validates to; these tests check that a
warm cache answers exactly as a fresh validation does (for every method,
refusals included), that the method is checked on every call, and that the
cache stays bounded.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy import target as target_module
from proxy.errors import Refused
from proxy.target import PathPolicy, Upstream

from .test_target_property import BASES, targets

POLICIES = [
    PathPolicy(),
    PathPolicy.build(allow_paths=(), deny_paths=(), read_only=True),
    PathPolicy.build(
        allow_paths=(r"/projects(/.*)?", r"/"), deny_paths=(r".*/members",), read_only=False
    ),
    PathPolicy.build(allow_paths=(r"/projects/.*",), deny_paths=(), read_only=True),
]
METHODS = ["GET", "POST", "HEAD", "DELETE", "OPTIONS"]
# One warm Upstream per (base, policy) for the whole run, as in a server.
WARM = {
    (base, index): Upstream.from_config(api_url, prefix, policy=policy)
    for base, (api_url, prefix) in enumerate(BASES)
    for index, policy in enumerate(POLICIES)
}


def _outcome(call, raw: str, method: str) -> tuple[str, str]:
    try:
        return ("forwarded", str(call(raw, method=method)))
    except Refused as refused:
        return (refused.code, refused.description)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    target=targets,
    methods=st.lists(st.sampled_from(METHODS), min_size=1, max_size=3),
    base=st.sampled_from(range(len(BASES))),
    policy=st.sampled_from(range(len(POLICIES))),
)
def test_warm_cache_answers_as_fresh_validation_for_every_method(target, methods, base, policy):
    """target_for and url_for agree with a cold Upstream's, whatever was asked before."""
    warm = WARM[base, policy]
    api_url, prefix = BASES[base]
    for method in methods:
        cold = Upstream.from_config(api_url, prefix, policy=POLICIES[policy])
        expected = _outcome(cold.target_for, target, method)
        assert _outcome(warm.target_for, target, method) == expected
        url = _outcome(warm.url_for, target, method)
        if expected[0] == "forwarded":
            assert url == ("forwarded", cold._origin + expected[1])
        else:
            assert url == expected


@pytest.mark.parametrize(
    ("api_url", "prefix", "raw", "target"),
    [
        ("https://tower.im/api/v1", "/api/v1", "/api/v1/projects/x?a=1", "/api/v1/projects/x?a=1"),
        ("https://tower.im/api/v1", "/api/v1", "/api/v1", "/api/v1"),
        ("https://tower.im/api/v1", "/api/v1", "/api/v1/x?", "/api/v1/x"),
        ("https://tower.im/api/v1", "/api/v1", "/api/v1/x?access_token=t&b=%41", "/api/v1/x?b=%41"),
        ("https://tower.im/api/v1", "/api/v1", "/api/v1/x?access_token=t", "/api/v1/x"),
        ("https://tower.im/api/v1", "/api/v1", "/api/v1/a%20b/%7Ec", "/api/v1/a%20b/%7Ec"),
        ("http://127.0.0.1:8080/api/v1/", "/tower", "/tower/todos/1", "/api/v1/todos/1"),
        ("http://127.0.0.1:8080", "/", "/", "/"),
        ("http://127.0.0.1:8080", "/", "/x?y=z", "/x?y=z"),
    ],
)
def test_target_is_origin_form_and_byte_exact(api_url, prefix, raw, target):
    """Base path, the client's bytes after the prefix, the query without access_token."""
    upstream = Upstream.from_config(api_url, prefix)
    assert upstream.target_for(raw, method="GET") == target
    assert upstream.target_for(raw, method="GET") == target  # from the cache
    assert str(upstream.url_for(raw)) == str(upstream.base.origin()) + target


def test_method_is_checked_on_every_call_of_a_cached_target():
    """Read-only: a cached GET does not let the same target through for POST, and back."""
    upstream = Upstream.from_config(
        "https://tower.im/api/v1",
        "/api/v1",
        policy=PathPolicy.build(allow_paths=(r"/projects/.*",), deny_paths=(), read_only=True),
    )
    assert upstream.target_for("/api/v1/projects/1", method="GET") == "/api/v1/projects/1"
    with pytest.raises(Refused) as refused:
        upstream.target_for("/api/v1/projects/1", method="POST")
    assert refused.value.code == "method_not_allowed"
    assert upstream.target_for("/api/v1/projects/1", method="HEAD") == "/api/v1/projects/1"
    # The method is refused before the path, as PathPolicy.check does.
    for method, code in (("DELETE", "method_not_allowed"), ("GET", "forbidden_path")):
        with pytest.raises(Refused) as refused:
            upstream.target_for("/api/v1/members", method=method)
        assert refused.value.code == code


def test_cached_refusal_is_raised_anew_each_time():
    """The same refusal every time, as a new exception (no traceback piling up)."""
    upstream = Upstream.from_config("https://tower.im/api/v1", "/api/v1")
    raised = []
    for _ in range(3):
        with pytest.raises(Refused) as refused:
            upstream.target_for("/api/v1/%2e%2e/oauth/token", method="GET")
        raised.append(refused.value)
    assert {(r.code, r.description) for r in raised} == {(raised[0].code, raised[0].description)}
    assert raised[0].code == "bad_request"
    assert len({id(r) for r in raised}) == 3
    assert upstream._verdicts.cache_info().hits == 2  # type: ignore[attr-defined]


def test_cache_is_bounded_and_skips_long_targets():
    """At most _CACHE_SIZE outcomes are kept; a target over _CACHED_LENGTH is never kept."""
    upstream = Upstream.from_config("https://tower.im/api/v1", "/api/v1")
    size = target_module._CACHE_SIZE
    for n in range(2 * size):
        assert upstream.target_for(f"/api/v1/todos/{n}", method="GET") == f"/api/v1/todos/{n}"
    info = upstream._verdicts.cache_info()  # type: ignore[attr-defined]
    assert info.currsize == info.maxsize == size
    upstream._verdicts.cache_clear()  # type: ignore[attr-defined]
    long = "/api/v1/" + "a" * target_module._CACHED_LENGTH
    assert upstream.target_for(long, method="GET") == long
    with pytest.raises(Refused):
        upstream.target_for(long + "/..", method="GET")
    assert upstream._verdicts.cache_info().currsize == 0  # type: ignore[attr-defined]


def test_each_upstream_has_its_own_cache():
    """A target allowed by one Upstream's policy is not let through another's by the cache."""
    open_upstream = Upstream.from_config("https://tower.im/api/v1", "/api/v1")
    strict = Upstream.from_config(
        "https://tower.im/api/v1",
        "/api/v1",
        policy=PathPolicy.build(allow_paths=(), deny_paths=(r"/members",), read_only=False),
    )
    assert open_upstream.target_for("/api/v1/members", method="GET") == "/api/v1/members"
    with pytest.raises(Refused) as refused:
        strict.target_for("/api/v1/members", method="GET")
    assert refused.value.code == "forbidden_path"
    assert open_upstream == Upstream.from_config("https://tower.im/api/v1", "/api/v1")
