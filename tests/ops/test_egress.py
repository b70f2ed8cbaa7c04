"""Egress through a corporate proxy: HTTPS_PROXY/NO_PROXY, CONNECT tunnels only."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import pytest

from proxy.egress import egress_for
from proxy.errors import ConfigError

from ..conftest import LOG_DIR
from .conftest import tls_config, tls_login

PROXY_PASSWORD = "egress-pass-7f3k2"


def _proxy_env(monkeypatch, connect_proxy, *, no_proxy: str = "") -> None:
    for name in ("https_proxy", "HTTPS_PROXY", "no_proxy", "NO_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(
        "HTTPS_PROXY", f"http://corp:{PROXY_PASSWORD}@127.0.0.1:{connect_proxy.port}"
    )
    if no_proxy:
        monkeypatch.setenv("NO_PROXY", no_proxy)


async def test_upstream_and_token_endpoint_go_through_connect_tunnels(
    monkeypatch, connect_proxy, tls_sandbox, make_proxy, tmp_path
):
    """Requests, a refresh and a login all tunnel; the proxy never sees a secret in clear."""
    _proxy_env(monkeypatch, connect_proxy)
    config = tls_config(tls_sandbox, tmp_path)
    await tls_login(config, tls_sandbox)
    proxy = await make_proxy(config)
    assert (await proxy.get("/api/v1/user")).status == 200
    await tls_sandbox.handle.revoke()
    assert (await proxy.get("/api/v1/teams")).status == 200
    assert await tls_sandbox.handle.refreshes() == 1
    port = tls_sandbox.port
    assert set(connect_proxy.connects) == {f"localhost:{port}", f"127.0.0.1:{port}"}
    assert connect_proxy.refused == []
    secrets = await tls_sandbox.handle.control("GET", "/_sandbox/secrets")
    secrets = [s for s in [*secrets, config.tower.client_secret] if len(s) >= 8]
    assert secrets
    seen = bytes(connect_proxy.received)
    assert [s[:4] for s in secrets if s.encode() in seen] == []
    assert b"authorization: bearer" not in seen.lower()


async def test_no_proxy_goes_direct(monkeypatch, connect_proxy, tls_sandbox, make_proxy, tmp_path):
    """Hosts in NO_PROXY are reached directly: the egress proxy gets no connection."""
    _proxy_env(monkeypatch, connect_proxy, no_proxy="localhost,127.0.0.1")
    config = tls_config(tls_sandbox, tmp_path)
    await tls_login(config, tls_sandbox)
    proxy = await make_proxy(config)
    assert (await proxy.get("/api/v1/user")).status == 200
    assert connect_proxy.connects == [] and connect_proxy.received == b""


async def test_use_env_proxy_false_ignores_the_environment(
    monkeypatch, connect_proxy, tls_sandbox, make_proxy, tmp_path
):
    """tower.use_env_proxy = false: HTTPS_PROXY is set but never used."""
    _proxy_env(monkeypatch, connect_proxy)
    config = tls_config(tls_sandbox, tmp_path)
    config = dataclasses.replace(
        config, tower=dataclasses.replace(config.tower, use_env_proxy=False)
    )
    await tls_login(config, tls_sandbox)
    proxy = await make_proxy(config)
    assert (await proxy.get("/api/v1/user")).status == 200
    assert connect_proxy.connects == [] and connect_proxy.received == b""


async def test_wrong_proxy_credentials_fail_as_unreachable(
    monkeypatch, connect_proxy, tls_sandbox, make_proxy, tmp_path
):
    """The egress proxy refusing us (407) is a 502 upstream_unreachable, not a hang."""
    await tls_login(tls_config(tls_sandbox, tmp_path), tls_sandbox)
    monkeypatch.setenv("HTTPS_PROXY", f"http://corp:wrong-pass@127.0.0.1:{connect_proxy.port}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("https_proxy", raising=False)
    proxy = await make_proxy(tls_config(tls_sandbox, tmp_path))
    response = await proxy.get("/api/v1/user")
    assert response.status == 502
    assert response.headers["X-Tower-Proxy-Error"] == "upstream_unreachable"
    assert connect_proxy.connects == [] and len(connect_proxy.refused) == 1


def test_plain_http_upstream_is_never_proxied():
    """An http:// (loopback sandbox) upstream would expose the bearer header: always direct."""
    env = {"HTTPS_PROXY": "http://127.0.0.1:3128", "HTTP_PROXY": "http://127.0.0.1:3128"}
    assert egress_for("http://127.0.0.1:9/api/v1", enabled=True, env=env).proxy is None
    assert egress_for("https://tower.im/api/v1", enabled=True, env=env).proxy is not None


def test_no_proxy_forms():
    """NO_PROXY entries: suffixes, leading dots, CIDRs, ports and `*`, as curl reads them."""
    env = {"https_proxy": "http://proxy:3128", "no_proxy": ".corp, 10.0.0.0/8, tower.im:8443"}

    def direct(url: str) -> bool:
        return egress_for(url, enabled=True, env=env).proxy is None

    assert direct("https://api.corp/x") and direct("https://10.2.3.4/x")
    assert direct("https://tower.im:8443/x") and not direct("https://tower.im/x")
    assert direct("https://x/") is False
    assert egress_for("https://tower.im/", enabled=True, env={**env, "no_proxy": "*"}).proxy is None


def test_proxy_credentials_leave_the_url():
    """Credentials in HTTPS_PROXY become Proxy-Authorization, never part of a logged URL."""
    egress = egress_for(
        "https://tower.im/api/v1", enabled=True, env={"HTTPS_PROXY": "http://u:pa55word@p:3128"}
    )
    assert str(egress.proxy) == "http://p:3128" and egress.describe() == "via http://p:3128"
    assert egress.proxy_headers == {"Proxy-Authorization": "Basic dTpwYTU1d29yZA=="}


def test_a_colon_in_the_proxy_user_is_a_config_error_naming_https_proxy():
    """Basic credentials cannot carry a ":" in the user name: the setting is named, the
    password is not echoed."""
    env = {"HTTPS_PROXY": f"http://corp%3Aeu:{PROXY_PASSWORD}@p:3128"}
    with pytest.raises(ConfigError, match=r"^HTTPS_PROXY: ") as raised:
        egress_for("https://tower.im/api/v1", enabled=True, env=env)
    assert PROXY_PASSWORD not in str(raised.value) and "corp" not in str(raised.value)


def test_a_colon_in_the_proxy_user_fails_the_command_in_one_line(tmp_path):
    """`tower-proxy token` exits 2 with `config error: HTTPS_PROXY ...`, no traceback."""
    config = tmp_path / "proxy.toml"
    config.write_text(
        '[tower]\nclient_id = "c"\nclient_secret = "client-secret-1"\n'
        'api_url = "https://tower.im/api/v1"\n'
        f"[tokens]\npath = {json.dumps(str(tmp_path / 'token.json'))}\n"
    )
    env = {**os.environ, "HTTPS_PROXY": f"http://corp%3Aeu:{PROXY_PASSWORD}@127.0.0.1:9"}
    done = subprocess.run(
        [sys.executable, "-m", "proxy", "token", "--config", str(config)],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.startswith("tower-proxy: config error: HTTPS_PROXY: ")
    assert done.stderr.count("\n") == 1 and PROXY_PASSWORD not in done.stderr + done.stdout


async def test_no_warm_up_through_an_egress_proxy(
    monkeypatch, connect_proxy, tls_sandbox, make_proxy, tmp_path
):
    """Start-up opens no tunnel and logs no failed warm-up: tunnels open on real need."""
    _proxy_env(monkeypatch, connect_proxy)
    config = tls_config(tls_sandbox, tmp_path)
    await tls_login(config, tls_sandbox)
    connect_proxy.connects.clear()
    log = LOG_DIR / "in-process.log"
    logged_before = log.read_text().count("upstream_warm_up_failed")
    await make_proxy(config)
    assert connect_proxy.connects == []
    assert log.read_text().count("upstream_warm_up_failed") == logged_before
