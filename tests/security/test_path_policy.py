"""Least privilege for sidecars: `allow_paths`, `deny_paths`, `read_only`.

The patterns match the whole path under the prefix after percent-decoding,
so an encoded spelling cannot dodge a rule.
"""

from __future__ import annotations

import pytest

from ..conftest import raw_request
from .conftest import RigFactory


@pytest.mark.parametrize(
    ("target", "status"),
    [
        ("/api/v1/teams/T1/todos", 200),
        ("/api/v1/teams/T1/members", 403),
        ("/api/v1/teams/T1/%6Dembers", 403),
        ("/api/v1/teams/T1/%256Dembers", 403),
        ("/api/v1/user", 403),
    ],
)
async def test_allow_and_deny_patterns_apply_to_the_decoded_path(
    make_rig: RigFactory, target, status
):
    """Only allowed paths pass; a denied one stays denied in any encoding."""
    rig = await make_rig(allow_paths=(r"/teams/[^/]+/.*",), deny_paths=(r".*/members",))
    head = f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()
    response = await raw_request("127.0.0.1", rig.port, head)
    if status == 403:
        assert response.status == 403
        assert response.headers["x-tower-proxy-error"] == "forbidden_path"
        assert rig.tap.seen == []
    else:
        assert response.status != 403
        assert [seen.raw_path for seen in rig.tap.seen] == [target]
    rig.assert_contained()


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
async def test_read_only_refuses_writes_before_upstream(make_rig: RigFactory, method):
    """`read_only = true`: writes get 405 and never reach Tower."""
    rig = await make_rig(read_only=True)
    response = await rig.proxy.request(method, "/api/v1/_test/echo", data=b"{}")
    assert response.status == 405
    assert response.headers["X-Tower-Proxy-Error"] == "method_not_allowed"
    assert rig.tap.seen == []
    rig.assert_contained()


@pytest.mark.parametrize("method", ["GET", "HEAD"])
async def test_read_only_lets_reads_through(make_rig: RigFactory, method):
    """Reads pass a read-only proxy as usual."""
    rig = await make_rig(read_only=True)
    response = await rig.proxy.request(method, "/api/v1/_test/echo")
    assert response.status == 200
    assert [seen.method for seen in rig.tap.seen] == [method]
    rig.assert_contained()
