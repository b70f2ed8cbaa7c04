"""The `[tokens]` keys of the redis store: password sources, validation naming the key."""

from __future__ import annotations

import re

import pytest

from proxy.config import ConfigError, load_config, masked
from proxy.tokens import make_store
from proxy.tokens.redis_store import RedisStore

BASE = {"TOWER_PROXY_CONFIG": "/dev/null", "TOWER_PROXY_TOKENS_STORE": "redis"}


def test_password_from_the_environment_is_used_and_masked():
    """TOWER_PROXY_TOKENS_REDIS_PASSWORD sets the password; check-config masks it."""
    env = {**BASE, "TOWER_PROXY_TOKENS_REDIS_PASSWORD": "env-redis-password"}
    config = load_config(None, env=env)
    assert config.tokens.redis_password == "env-redis-password"
    assert "env-redis-password" not in repr(masked(config))


def test_password_from_a_file_is_read_and_stripped(tmp_path):
    """redis_password_file is read once at load, without its trailing newline."""
    secret = tmp_path / "redis-password"
    secret.write_text("file-redis-password\n")
    env = {**BASE, "TOWER_PROXY_TOKENS_REDIS_PASSWORD_FILE": str(secret)}
    assert load_config(None, env=env).tokens.redis_password == "file-redis-password"


def test_password_and_password_file_together_are_refused(tmp_path):
    """Setting both is an error naming redis_password_file."""
    secret = tmp_path / "redis-password"
    secret.write_text("x\n")
    env = {
        **BASE,
        "TOWER_PROXY_TOKENS_REDIS_PASSWORD": "y",
        "TOWER_PROXY_TOKENS_REDIS_PASSWORD_FILE": str(secret),
    }
    with pytest.raises(ConfigError, match=re.escape("tokens.redis_password_file")):
        load_config(None, env=env)


@pytest.mark.parametrize(
    ("key", "value", "named"),
    [
        ("REDIS_URL", "http://127.0.0.1:6379/0", "tokens.redis_url"),
        ("REDIS_LOCK_TTL", "0.5", "tokens.redis_lock_ttl"),
        ("STORE", "memcached", "tokens.store"),
    ],
)
def test_bad_values_name_the_key(key, value, named):
    """A bad scheme, a lock ttl under a second or an unknown store name the key."""
    with pytest.raises(ConfigError, match=re.escape(named)):
        load_config(None, env={**BASE, f"TOWER_PROXY_TOKENS_{key}": value})


def test_the_store_is_built_from_the_config():
    """store = "redis" builds a RedisStore whose description has no password."""
    env = {
        **BASE,
        "TOWER_CLIENT_ID": "fleet-app",
        "TOWER_PROXY_TOKENS_REDIS_URL": "redis://:url-redis-password@10.0.0.5:6380/2",
        "TOWER_PROXY_TOKENS_REDIS_KEY_PREFIX": "team-a:",
    }
    store = make_store(load_config(None, env=env))
    assert isinstance(store, RedisStore)
    assert store.description == "redis redis://10.0.0.5:6380/2 key team-a:fleet-app:token"
