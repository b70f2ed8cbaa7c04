"""The `file` token store: one JSON file, atomic writes, a flock for refreshes.

Invariants:
- the token file is replaced only by rename of a fully written, fsynced temp
  file in the same directory, and the directory is fsynced after, so after a
  crash at any point the file holds either the old or the new set, whole;
- the file is 0600 inside a 0700 directory; a file found readable by group or
  others is repaired (with a warning) before it is read;
- `save` is compare-and-set on the generation and runs under the lock file's
  exclusive flock, which is also the cross-process refresh lock.  The kernel
  drops a flock when its holder dies, so a SIGKILLed refresher frees the lock.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import os
import secrets
import stat
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path

import structlog

from ..errors import StoreError, StoreUnavailable
from .model import TokenSet

log = structlog.get_logger("proxy.tokens")

LOCK_TIMEOUT = 60.0
_POLL_START, _POLL_MAX = 0.005, 0.1


class FileStore:
    def __init__(self, path: Path, *, lock_timeout: float = LOCK_TIMEOUT) -> None:
        self.path = path
        self.lock_path = path.with_name(path.name + ".lock")
        self.description = f"file {path}"
        self._lock_timeout = lock_timeout
        self._local = asyncio.Lock()
        self._owner: asyncio.Task[object] | None = None
        self._seen: tuple[int, int, int] | None = None

    async def load(self) -> TokenSet | None:
        return await asyncio.to_thread(self._load_sync)

    async def save(self, new: TokenSet, *, expected_generation: int) -> bool:
        if self._owner is not None and self._owner is asyncio.current_task():
            return await asyncio.to_thread(self._save_sync, new, expected_generation)
        async with self.refresh_lock():
            return await asyncio.to_thread(self._save_sync, new, expected_generation)

    async def delete(self) -> bool:
        async with self.refresh_lock():
            try:
                self.path.unlink()
            except FileNotFoundError:
                return False
            except OSError as exc:  # a directory, say: not something to remove for the user
                raise StoreError(f"cannot remove {self.path}: {exc.strerror}") from None
            self._seen = None
            return True

    def changed(self) -> bool:
        return self._signature() != self._seen

    def problem(self) -> str | None:
        return None  # a local file has no outage to report; errors surface on use

    async def close(self) -> None:
        return None

    @asynccontextmanager
    async def refresh_lock(self) -> AsyncIterator[None]:
        async with self._local:
            fd = await asyncio.to_thread(self._open_lock_file)
            try:
                await self._acquire(fd)
                self._owner = asyncio.current_task()
                yield
            finally:
                self._owner = None
                os.close(fd)  # closing the descriptor releases the flock

    async def _acquire(self, fd: int) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._lock_timeout
        delay = _POLL_START
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if loop.time() >= deadline:
                    raise StoreUnavailable(
                        f"token lock {self.lock_path} is held by "
                        f"another process for over "
                        f"{self._lock_timeout:.0f}s"
                    ) from None
                await asyncio.sleep(delay)
                delay = min(delay * 2, _POLL_MAX)

    def _open_lock_file(self) -> int:
        self._ensure_dir()
        try:
            return os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise StoreError(f"cannot open {self.lock_path}: {exc.strerror}") from None

    def _ensure_dir(self) -> None:
        directory = self.path.parent
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create {directory}: {exc.strerror}") from None

    def _signature(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StoreError(f"cannot stat {self.path}: {exc.strerror}") from None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def _load_sync(self) -> TokenSet | None:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            self._seen = None
            return None
        except OSError as exc:
            raise StoreError(f"cannot read {self.path}: {exc.strerror}") from None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):  # a directory opens, then refuses to be read
            os.close(fd)
            raise StoreError(f"cannot read {self.path}: not a regular file")
        with os.fdopen(fd, "rb") as fh:
            self._repair_mode(fh.fileno(), st.st_mode)
            data = fh.read()
        self._seen = (st.st_ino, st.st_mtime_ns, st.st_size)
        try:
            return TokenSet.from_json(data)
        except StoreError as exc:  # the file is ours to remove: `logout` does that
            raise StoreError(f"{self.path}: {exc}; `tower-proxy logout` removes it") from None

    def _repair_mode(self, fd: int, mode: int) -> None:
        if stat.S_IMODE(mode) & 0o077:
            log.warning(
                "token_file_permissions_repaired",
                path=str(self.path),
                mode=oct(stat.S_IMODE(mode)),
                new_mode="0o600",
            )
            os.fchmod(fd, 0o600)

    def _save_sync(self, new: TokenSet, expected_generation: int) -> bool:
        current = self._load_sync()
        current_generation = current.generation if current else 0
        if current_generation != expected_generation or new.generation <= current_generation:
            return False
        self._ensure_dir()
        self._write_atomically(new.to_json().encode())
        self._seen = self._signature()
        return True

    def _write_atomically(self, data: bytes) -> None:
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
            self._fsync_dir()
        except OSError as exc:
            _unlink_quietly(tmp)
            raise StoreError(f"cannot write {self.path}: {exc.strerror}") from None

    def _fsync_dir(self) -> None:
        fd = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        except OSError as exc:  # some filesystems refuse fsync on directories
            if exc.errno not in (errno.EINVAL, errno.EBADF):
                raise
        finally:
            os.close(fd)


def _unlink_quietly(path: Path) -> None:
    with suppress(OSError):
        path.unlink()
