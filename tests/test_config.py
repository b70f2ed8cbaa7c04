"""Config loading: precedence, environment, validation that names the key."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import pytest

from proxy.config import _SECTIONS, ConfigError, load_config, masked, parse_size

EXAMPLE = Path(__file__).parent.parent / "config.example.toml"


def _write(tmp_path, text):
    path = tmp_path / "config.toml"
    path.write_text(text)
    return str(path)


def test_defaults_match_the_spec():
    """With nothing set, the documented defaults apply."""
    config = load_config(None, env={"TOWER_PROXY_CONFIG": "/dev/null"})
    assert config.server.listen == "127.0.0.1:8730"
    assert config.server.prefix == "/api/v1"
    assert config.server.max_body_size == 64 * 1024 * 1024
    assert config.tokens.refresh_margin == 300
    assert config.tower.redirect_uri == "urn:ietf:wg:oauth:2.0:oob"


def test_the_example_file_names_every_key_with_its_default():
    """config.example.toml loads as it is and sets every key to the built-in default."""
    documented = tomllib.loads(EXAMPLE.read_text())
    for section, cls in _SECTIONS.items():
        assert set(documented[section]) == {field.name for field in dataclasses.fields(cls)}
    from_example = load_config(str(EXAMPLE), env={})
    default = load_config(None, env={"TOWER_PROXY_CONFIG": "/dev/null"})
    assert dataclasses.replace(from_example, source="") == dataclasses.replace(default, source="")


def test_flag_beats_environment_beats_file(tmp_path):
    """Precedence: command-line flag > environment > file > default."""
    path = _write(
        tmp_path,
        '[server]\nlisten = "127.0.0.1:1111"\nprefix = "/file"\n[log]\nlevel = "warning"\n',
    )
    env = {"TOWER_PROXY_SERVER_LISTEN": "127.0.0.1:2222", "TOWER_PROXY_SERVER_PREFIX": "/env"}
    config = load_config(path, env=env, overrides={"server": {"listen": "127.0.0.1:3333"}})
    assert config.server.listen == "127.0.0.1:3333"
    assert config.server.prefix == "/env"
    assert config.log.level == "warning"


def test_environment_aliases_and_types(tmp_path):
    """TOWER_CLIENT_ID/SECRET work; env strings become bools, numbers, lists, sizes."""
    env = {
        "TOWER_CLIENT_ID": "cid",
        "TOWER_CLIENT_SECRET": "csecret",
        "TOWER_PROXY_SERVER_REWRITE_LINKS": "false",
        "TOWER_PROXY_SERVER_ALLOWED_HOSTS": "proxy, proxy.local",
        "TOWER_PROXY_SERVER_MAX_BODY_SIZE": "2MiB",
        "TOWER_PROXY_TOKENS_REFRESH_MARGIN": "120",
    }
    config = load_config(_write(tmp_path, ""), env=env)
    assert (config.tower.client_id, config.tower.client_secret) == ("cid", "csecret")
    assert config.server.rewrite_links is False
    assert config.server.allowed_hosts == ("proxy", "proxy.local")
    assert config.server.max_body_size == 2 * 1024 * 1024
    assert config.tokens.refresh_margin == 120


@pytest.mark.parametrize(
    ("text", "env", "named"),
    [
        ('[server]\nlisten_on = "x"\n', {}, "server.listen_on"),
        ("[servers]\n", {}, "[servers]"),
        ('[server]\nrewrite_links = "yes"\n', {}, "server.rewrite_links"),
        ('[server]\nmax_body_size = "lots"\n', {}, "server.max_body_size"),
        ('[tokens]\nstore = "sql"\n', {}, "tokens.store"),
        ('[tower]\napi_url = "http://tower.im/api/v1"\n', {}, "tower.api_url"),
        ('[tower]\nredirect_uri = "http://localhost/cb"\n', {}, "tower.redirect_uri"),
        ('[server]\nlisten = "0.0.0.0:8730"\n', {}, "server.listen"),
        ("", {"TOWER_PROXY_SERVER_NOPE": "1"}, "server.nope"),
        ("", {"TOWER_PROXY_BOGUS": "1"}, "TOWER_PROXY_BOGUS"),
        ("", {"TOWER_PROXY_TOKENS_REFRESH_MARGIN": "soon"}, "tokens.refresh_margin"),
        ("[server\n", {}, "not valid TOML"),
    ],
)
def test_bad_input_is_an_error_naming_the_key(tmp_path, text, env, named):
    """Every unknown key or bad value raises ConfigError naming it."""
    with pytest.raises(ConfigError, match=named.replace("[", r"\[").replace("]", r"\]")):
        load_config(_write(tmp_path, text), env=env)


def test_loopback_http_upstream_is_allowed_for_the_sandbox(tmp_path):
    """http:// is accepted only on loopback hosts."""
    config = load_config(
        _write(tmp_path, '[tower]\napi_url = "http://127.0.0.1:9/api/v1"\n'), env={}
    )
    assert config.tower.api_url.startswith("http://127.0.0.1")


def test_client_secret_file_is_read_and_masked(tmp_path):
    """The secret comes from its file and check-config output masks it."""
    secret = tmp_path / "secret"
    secret.write_text("s3cr3t-value\n")
    config = load_config(_write(tmp_path, f'[tower]\nclient_secret_file = "{secret}"\n'), env={})
    assert config.tower.client_secret == "s3cr3t-value"
    assert "s3cr3t-value" not in repr(masked(config))


def test_sizes():
    """Sizes accept binary and decimal units."""
    assert parse_size("64MiB") == 64 * 2**20
    assert parse_size("1GiB") == 2**30
    assert parse_size("500kB") == 500_000
    assert parse_size("123") == 123
