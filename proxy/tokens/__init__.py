"""Tokens: the token set, the stores that keep it, the manager that refreshes it."""

from __future__ import annotations

from ..config import Config
from ..errors import ConfigError
from .file_store import FileStore
from .manager import TokenManager
from .model import TokenSet, fingerprint
from .store import TokenStore

__all__ = ["FileStore", "TokenManager", "TokenSet", "TokenStore", "fingerprint", "make_store"]


def make_store(config: Config) -> TokenStore:
    """The store named by `tokens.store`."""
    if config.tokens.store == "redis":
        raise ConfigError('tokens.store: the redis store is not built yet; use "file"')
    return FileStore(config.token_path)
