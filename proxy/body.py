"""Request bodies kept so that the one 401 replay sends the same bytes.

Small bodies stay in memory; past `memory_limit` the body is spooled to an
anonymous temporary file (deleted by the OS when closed), so memory stays
bounded whatever the upload size.  A body larger than `max_size` is refused
with BodyTooLarge before anything is sent upstream.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator
from typing import IO

from .messages import RequestBody

MEMORY_LIMIT = 1024 * 1024
CHUNK = 256 * 1024


class BodyTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(f"request body is larger than {limit} bytes")


class ReplayableBody:
    def __init__(self) -> None:
        self.size = 0
        self._memory = bytearray()
        self._file: IO[bytes] | None = None

    @classmethod
    async def read(
        cls, stream: RequestBody, *, max_size: int, memory_limit: int = MEMORY_LIMIT
    ) -> ReplayableBody:
        body = cls()
        try:
            async for chunk in stream:
                body.size += len(chunk)
                if body.size > max_size:
                    raise BodyTooLarge(max_size)
                await body._append(chunk, memory_limit)
        except BaseException:
            body.close()
            raise
        return body

    async def _append(self, chunk: bytes, memory_limit: int) -> None:
        if self._file is None and self.size <= memory_limit:
            self._memory += chunk
            return
        if self._file is None:
            self._file = tempfile.TemporaryFile(prefix="tower-proxy-body-")  # noqa: SIM115 (closed by close())
            await asyncio.to_thread(self._file.write, self._memory)
            self._memory = bytearray()
        await asyncio.to_thread(self._file.write, chunk)

    @property
    def spooled(self) -> bool:
        return self._file is not None

    def payload(self) -> bytes | AsyncIterator[bytes] | None:
        """What to hand to the upstream pool for one send; call again for the replay."""
        if self._file is not None:
            return self._iter_file(self._file)
        if self.size == 0:
            return None
        return bytes(self._memory)

    async def _iter_file(self, fh: IO[bytes]) -> AsyncIterator[bytes]:
        await asyncio.to_thread(fh.seek, 0)
        while chunk := await asyncio.to_thread(fh.read, CHUNK):
            yield chunk

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
