"""Upstream TLS and secrets in configuration: https only, verification always on.

`api_url`/`oauth_url` must be https except on a loopback host (the sandbox);
`ca_file` adds a CA and is checked at load; the client secret comes from a
file or the environment and is masked wherever config is shown.
"""

from __future__ import annotations

import dataclasses
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import trustme
from aiohttp.test_utils import TestServer

from proxy.config import Config, load_config, masked
from proxy.errors import ConfigError
from proxy.login import store_login
from proxy.oauth import OAuthClient
from proxy.sandbox import SANDBOX, SandboxSettings
from proxy.sandbox import create_app as create_sandbox_app
from proxy.tokens import FileStore

from ..conftest import SandboxHandle, make_config, run_cli, write_config
from ..secret_scan import SESSION_SECRETS


def _load(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> Config:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return load_config(str(path), env=env or {})


@pytest.mark.parametrize(
    "url",
    [
        "http://tower.im/api/v1",
        "http://10.0.0.5:8080/api/v1",
        "http://127.0.0.1.nip.io/api/v1",
        "ftp://tower.im/api/v1",
        "https://user:pw@tower.im/api/v1",
        "https://tower.im/api/v1?access_token=x",
        "tower.im/api/v1",
    ],
)
@pytest.mark.parametrize("key", ["api_url", "oauth_url"])
def test_upstream_must_be_https_off_loopback(tmp_path, key, url):
    """Plain http to a real host (or any other oddity) is a config error naming the key."""
    with pytest.raises(ConfigError, match=f"tower.{key}"):
        _load(tmp_path, f'[tower]\n{key} = "{url}"\n')


@pytest.mark.parametrize(
    "url",
    ["https://tower.im/api/v1", "http://127.0.0.1:9/api/v1", "http://localhost:9/api/v1",
     "http://[::1]:9/api/v1"],
)  # fmt: skip
def test_https_and_loopback_http_are_accepted(tmp_path, url):
    """https anywhere, plain http only on loopback (the sandbox)."""
    assert _load(tmp_path, f'[tower]\napi_url = "{url}"\n').tower.api_url == url


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "cannot read"), ("not a certificate\n", "no PEM certificate")],
)
def test_unusable_ca_file_is_a_config_error(tmp_path, content, message):
    """A missing or non-PEM ca_file fails at load, not at the first request."""
    ca = tmp_path / "ca.pem"
    if content is not None:
        ca.write_text(content)
    with pytest.raises(ConfigError, match=f"tower.ca_file: .*{message}"):
        _load(tmp_path, f'[tower]\nca_file = "{ca}"\n')


def test_client_secret_file_is_read_and_masked(tmp_path):
    """The secret comes from its file; `masked` (check-config) never shows it."""
    secret = tmp_path / "secret"
    secret.write_text("s3cret-from-file-0123456789\n")
    config = _load(tmp_path, f'[tower]\nclient_secret_file = "{secret}"\n')
    assert config.tower.client_secret == "s3cret-from-file-0123456789"
    assert "s3cret-from-file" not in repr(masked(config))


def test_secret_in_both_file_and_value_is_refused(tmp_path):
    """Two sources for one secret is ambiguous: an error, not a guess."""
    secret = tmp_path / "secret"
    secret.write_text("a-secret-value-000\n")
    with pytest.raises(ConfigError, match="client_secret_file"):
        _load(
            tmp_path,
            f'[tower]\nclient_secret_file = "{secret}"\n',
            env={"TOWER_CLIENT_SECRET": "another-secret-111"},
        )


async def test_check_config_masks_secrets_from_the_environment(tmp_path):
    """`check-config` with TOWER_CLIENT_SECRET set prints a mask, never the value."""
    secret = "env-secret-9f8e7d6c5b4a"
    SESSION_SECRETS.add(secret)
    path = tmp_path / "config.toml"
    path.write_text('[tower]\nclient_id = "x"\n')
    code, out, err = await run_cli(
        "check-config",
        "--config",
        str(path),
        env={"TOWER_CLIENT_SECRET": secret},
        log_name="security-cfg",
    )
    assert code == 0
    assert secret not in out + err
    assert 'client_secret = "********"' in out


@pytest.fixture
async def tls_sandbox(tmp_path: Path) -> AsyncIterator[tuple[SandboxHandle, Path]]:
    """The simulator over TLS with a certificate from a private test CA."""
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    ca_file = tmp_path / "private-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    app = create_sandbox_app(SandboxSettings(test_routes=True, random_seed=7))
    server = TestServer(app, host="127.0.0.1")
    await server.start_server(ssl=server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    connector = aiohttp.TCPConnector(ssl=client_context)
    async with aiohttp.ClientSession(connector=connector) as session:
        handle = SandboxHandle(server=server, state=app[SANDBOX], session=session)
        yield handle, ca_file
        SESSION_SECRETS.update(await handle.control("GET", "/_sandbox/secrets"))
    await server.close()


@pytest.mark.parametrize("trusted", [True, False])
async def test_upstream_certificate_is_always_verified(tls_sandbox, tmp_path, make_proxy, trusted):
    """With the private CA in ca_file: proxied. Without it: 502, and Tower got no request."""
    sandbox, ca_file = tls_sandbox
    base = f"https://127.0.0.1:{sandbox.server.port}"
    config = make_config(sandbox, tmp_path)
    tower = dataclasses.replace(
        config.tower, api_url=f"{base}/api/v1", oauth_url=f"{base}/oauth", ca_file=str(ca_file)
    )
    config = dataclasses.replace(config, tower=tower)
    async with OAuthClient(config.tower) as oauth:
        grant = await oauth.exchange_code(sandbox.state.issue_code())
    await store_login(FileStore(config.token_path), grant)
    if not trusted:
        tower = dataclasses.replace(config.tower, ca_file="")
        config = dataclasses.replace(config, tower=tower)
    proxy = await make_proxy(config)
    before = (await sandbox.stats())["api_requests"]
    response = await proxy.get("/api/v1/user")
    after = (await sandbox.stats())["api_requests"]
    if trusted:
        assert (response.status, after - before) == (200, 1)
    else:
        assert response.status == 502
        assert response.headers["X-Tower-Proxy-Error"] == "upstream_unreachable"
        assert after == before


async def test_serve_with_a_bad_ca_file_exits_2(sandbox, tmp_path):
    """One line on stderr naming tower.ca_file, exit 2, no traceback."""
    config = make_config(sandbox, tmp_path)
    config = dataclasses.replace(
        config, tower=dataclasses.replace(config.tower, ca_file=str(tmp_path / "missing.pem"))
    )
    toml = write_config(config, tmp_path / "bad-ca.toml")
    code, _, err = await run_cli("serve", "--config", str(toml), log_name="security-cfg")
    assert code == 2
    assert "tower.ca_file" in err and "Traceback" not in err
