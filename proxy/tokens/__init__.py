"""Tokens: the token set, the stores that keep it, the manager that refreshes it."""

from __future__ import annotations

from ..config import Config
from ..errors import ConfigError
from .file_store import FileStore
from .manager import TokenManager
from .model import TokenSet, fingerprint
from .store import TokenStore

__all__ = ["FileStore", "TokenManager", "TokenSet", "TokenStore", "fingerprint", "make_store"]


def make_store(config: Config, kind: str | None = None) -> TokenStore:
    """The store named by `kind`, by default `tokens.store`."""
    if (kind or config.tokens.store) == "redis":
        return _redis_store(config)
    return FileStore(config.token_path)


def _redis_store(config: Config) -> TokenStore:
    try:  # redis-py is an optional extra: imported only when the store is used
        from .redis_store import RedisStore
    except ImportError:
        raise ConfigError(
            "tokens.store: the redis store needs the redis extra: pip install 'tower-proxy[redis]'"
        ) from None
    tokens = config.tokens
    return RedisStore(
        tokens.redis_url,
        client_id=config.tower.client_id,
        key_prefix=tokens.redis_key_prefix,
        password=tokens.redis_password,
        lock_ttl=tokens.redis_lock_ttl,
    )
