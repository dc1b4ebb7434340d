"""A save on a full disk: it raises, what was stored stays, and the next save after space
returns stores everything.

Two ways to fill a disk are used: a small tmpfs mounted for the test (needs root) and, in a child
process, a file size limit (``RLIMIT_FSIZE``), which any user may set.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import resource
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from botstate import WriteError
from tests.stores import STORES

from . import Unavailable
from .crash import ROOT

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


@contextlib.contextmanager
def small_disk() -> Iterator[Path]:
    """A folder on a 4 MiB tmpfs mounted for the trial; raises Unavailable where mounting is
    not allowed (it needs root)."""
    folder = Path(tempfile.mkdtemp(prefix="botstate-full-"))
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m,mode=700", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        folder.rmdir()
        raise Unavailable(f"cannot mount a small tmpfs here: {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        # Lazily, so that a store a failed trial left open cannot keep the mount.
        subprocess.run(["umount", "--lazy", str(folder)], check=True)
        folder.rmdir()


async def on_small_disk(store: str, folder: Path) -> None:
    """The scenario on a small disk (*folder*, from :func:`small_disk`) filled to the last
    byte, then given room again."""
    filler: list[Path] = []

    def make_room() -> None:
        with contextlib.suppress(IndexError):
            filler.pop().unlink()

    await full_disk_scenario(store, folder, lambda: filler.append(fill(folder)), make_room)


def over_file_size_limit(store: str, folder: Path) -> str | None:
    """The scenario in a child process whose file size limit stands for the full disk; return
    what went wrong, or None."""
    result = subprocess.run(
        [sys.executable, "-m", "tests.reliability.diskfull", store, str(folder)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    return None if result.returncode == 0 else result.stderr[-2000:]


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
