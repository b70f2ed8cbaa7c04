"""The file store: atomic compare-and-set writes, modes, the cross-process lock."""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys
import textwrap

import pytest

from proxy.errors import StoreError, StoreUnavailable
from proxy.tokens import FileStore, TokenSet


def _token(generation: int) -> TokenSet:
    return TokenSet(
        access_token=f"access-{generation:04d}-xxxxxxxx",
        refresh_token=f"refresh-{generation:04d}-xxxxxxxx",
        expires_at=2_000_000_000,
        email="a@example.com",
        generation=generation,
    )


async def test_save_is_compare_and_set_on_generation(tmp_path):
    """A stale writer (wrong expected generation) never overwrites a newer set."""
    store = FileStore(tmp_path / "d" / "token.json")
    assert await store.save(_token(1), expected_generation=0)
    assert await store.save(_token(2), expected_generation=1)
    assert not await store.save(_token(2), expected_generation=1)  # stale: stored is 2
    assert not await store.save(_token(3), expected_generation=1)
    assert not await store.save(_token(2), expected_generation=2)  # not newer
    loaded = await store.load()
    assert loaded is not None and loaded.generation == 2


async def test_a_corrupt_file_or_a_directory_is_a_store_error_naming_the_path(tmp_path):
    """Neither leaves the store as a bare OSError; the message names the path and, for a
    file of ours gone bad, the way out; `delete` removes the file but not a directory."""
    corrupt = tmp_path / "corrupt.json"
    corrupt.write_text("{not json")
    store = FileStore(corrupt)
    with pytest.raises(StoreError) as raised:
        await store.load()
    assert str(raised.value) == (
        f"{corrupt}: stored token set is unreadable (JSONDecodeError); "
        "`tower-proxy logout` removes it"
    )
    assert await store.delete() and not corrupt.exists()
    directory = tmp_path / "token.json"
    directory.mkdir()
    store = FileStore(directory)
    with pytest.raises(StoreError, match=r"^cannot read .*: not a regular file$"):
        await store.load()
    with pytest.raises(StoreError, match=r"^cannot remove .*: Is a directory$"):
        await store.delete()
    assert directory.is_dir()


async def test_file_and_directory_modes(tmp_path):
    """The token file is 0600 in a 0700 directory."""
    store = FileStore(tmp_path / "state" / "token.json")
    await store.save(_token(1), expected_generation=0)
    assert stat.S_IMODE(os.stat(tmp_path / "state").st_mode) == 0o700
    assert stat.S_IMODE(os.stat(tmp_path / "state" / "token.json").st_mode) == 0o600


async def test_group_readable_file_is_repaired(tmp_path):
    """A token file readable by others is chmod-ed back to 0600 on load."""
    store = FileStore(tmp_path / "token.json")
    await store.save(_token(1), expected_generation=0)
    os.chmod(tmp_path / "token.json", 0o644)
    assert (await FileStore(tmp_path / "token.json").load()) is not None
    assert stat.S_IMODE(os.stat(tmp_path / "token.json").st_mode) == 0o600


async def test_no_temp_files_are_left_behind(tmp_path):
    """Writes go through a temp file that is renamed, never left over."""
    store = FileStore(tmp_path / "token.json")
    for generation in range(1, 6):
        await store.save(_token(generation), expected_generation=generation - 1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["token.json", "token.json.lock"]


async def test_changed_notices_another_writer(tmp_path):
    """`changed()` is true after another store instance writes."""
    ours, theirs = FileStore(tmp_path / "t.json"), FileStore(tmp_path / "t.json")
    await ours.save(_token(1), expected_generation=0)
    assert not ours.changed()
    await theirs.save(_token(2), expected_generation=1)
    assert ours.changed()
    await ours.load()
    assert not ours.changed()


async def test_refresh_lock_excludes_another_process(tmp_path):
    """While one process holds the lock, another cannot take it."""
    path = tmp_path / "t.json"
    with subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
        import fcntl, os, sys, time
        fd = os.open({str(path) + ".lock"!r}, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        print("locked", flush=True)
        sys.stdin.readline()
    """),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as holder:
        assert holder.stdout.readline().strip() == "locked"
        store = FileStore(path, lock_timeout=0.3)
        try:
            async with store.refresh_lock():
                raise AssertionError("lock taken while another process held it")
        except StoreUnavailable:
            pass
        holder.stdin.write("\n")
        holder.stdin.flush()
        holder.wait(timeout=10)
        async with store.refresh_lock():
            pass  # free again once the holder exited


async def test_lock_is_single_flight_within_a_process(tmp_path):
    """Two tasks taking the lock run one after the other."""
    store = FileStore(tmp_path / "t.json")
    inside = []

    async def worker(name):
        async with store.refresh_lock():
            inside.append(name)
            assert len(inside) == 1
            await asyncio.sleep(0)
            inside.remove(name)

    await asyncio.gather(*(worker(i) for i in range(10)))
