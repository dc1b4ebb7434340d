"""A save on a full disk: it raises, what was stored stays, and the next save after space
returns stores everything.

Two ways to fill a disk are used: a small tmpfs mounted for the test (needs root) and, in a child
process, a file size limit (``RLIMIT_FSIZE``), which any user may set.
"""

from __future__ import annotations

import asyncio
import errno
import os
import resource
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from botstate import WriteError
from tests.stores import STORES

#: A value too big for the space left, random so that nothing compresses it.
BIG = 1024 * 1024


async def full_disk_scenario(
    store: str, folder: Path, make_full: Callable[[], None], make_room: Callable[[], None]
) -> None:
    """Run the scenario on *store*; raise AssertionError saying what went wrong."""
    kind = STORES[store]
    persistence = kind.open(folder)
    await persistence.update_user_data(1, {"v": 1})
    await persistence.update_bot_data({"b": 1})
    big = {"blob": os.urandom(BIG)}

    make_full()
    try:
        error: WriteError | None = None
        try:
            await persistence.update_user_data(2, big)
        except WriteError as exc:
            error = exc
        assert error is not None, "a save that did not fit on the disk did not raise"
        assert str(folder) in str(error), f"the error does not name the store: {error}"
        reader = kind.open(folder)
        assert await reader.get_user_data() == {1: {"v": 1}}, "the stored data changed"
        assert await reader.get_bot_data() == {"b": 1}, "the stored data changed"
        await reader.close()
    finally:
        make_room()

    # The next save writes the record that failed too.
    await persistence.update_user_data(3, {"v": 3})
    await persistence.close()
    reader = kind.open(folder)
    stored = await reader.get_user_data()
    await reader.close()
    assert stored == {1: {"v": 1}, 2: big, 3: {"v": 3}}, (
        f"after the disk had room: {sorted(stored)}"
    )


def fill(folder: Path) -> Path:
    """Fill the file system of *folder* with one file, to the last byte; return that file."""
    filler = folder / "filler"
    # Unbuffered: a buffer left over would only fail again on close.
    with filler.open("wb", buffering=0) as file:
        for size in (1 << 20, 1 << 16, 1 << 12, 1 << 8, 1):
            try:
                while True:
                    file.write(b"\0" * size)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
    return filler


def with_file_size_limit(store: str, folder: Path) -> None:
    """Run the scenario with the file size limit as the full disk (call in a child process:
    the limit holds for the whole process)."""
    # Past the limit a write fails with EFBIG instead of the process being killed.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)

    def make_full() -> None:
        largest = max((path.stat().st_size for path in folder.iterdir()), default=0)
        resource.setrlimit(resource.RLIMIT_FSIZE, (largest + BIG // 4, hard))

    def make_room() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))

    asyncio.run(full_disk_scenario(store, folder, make_full, make_room))


if __name__ == "__main__":
    with_file_size_limit(sys.argv[1], Path(sys.argv[2]))
