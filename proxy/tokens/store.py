"""What a token store is: the contract the manager relies on.

A store holds one token set per identity and offers:
- `load()`: the current set, or None;
- `save(new, expected_generation)`: compare-and-set — it stores `new` only if
  the stored generation still equals `expected_generation` (0 = nothing
  stored) and returns whether it did; a stale writer can never overwrite a
  newer set;
- `refresh_lock()`: an async context manager held around a refresh so that
  one refresh at a time happens per identity across every process sharing
  the store;
- `changed()`: a cheap check whether another process may have written since
  the last `load()` (used to pick up a login or refresh done elsewhere);
- `delete()`;
- `problem()`: why the store cannot be used right now (e.g. Redis
  unreachable), or None — answered from what the store already knows, without
  I/O, for readiness.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Protocol

from .model import TokenSet


class TokenStore(Protocol):
    description: str

    async def load(self) -> TokenSet | None: ...

    async def save(self, new: TokenSet, *, expected_generation: int) -> bool: ...

    def refresh_lock(self) -> AbstractAsyncContextManager[None]: ...

    def changed(self) -> bool: ...

    def problem(self) -> str | None: ...

    async def delete(self) -> bool: ...

    async def close(self) -> None: ...
