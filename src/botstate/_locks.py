"""Advisory locks that tell the botstate tools whether a bot has a local store open.

A persistence on an SQLite database, or on pickle or JSON files, holds a shared ``flock`` lock
on the store's files from the moment it reads them until it is closed. The repairs and
migrations of the command line take an exclusive lock instead, without waiting: they are
refused at once while any bot has the store open. A bot that starts meanwhile waits for the
tool to finish (SQLite's ``lock_timeout``, 5 seconds for files), then raises
:class:`~botstate.errors.StoreLockedError`.

The locks are on the data files themselves, so botstate adds no file of its own beside them. A
file store replaces a file by renaming a new one over it; the new file is locked before the
rename makes it visible, so a store's file is never unlocked while the store is open.

The system releases flock locks when a process ends, however it ends: a killed bot leaves no
stale lock. On Linux and macOS they do not interact with the locks SQLite takes itself. They
are advisory: python-telegram-bot's own PicklePersistence and other programs take none, and
where the system has no flock (Windows) or a file system refuses it, botstate takes none
either; the tools then cannot tell.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
import time
from pathlib import Path

from botstate.errors import StoreLockedError

try:
    import fcntl
except ImportError:  # pragma: no cover (Windows)
    fcntl = None  # type: ignore[assignment]

__all__ = ["FileLocks", "in_use", "lock_writing", "read_all", "try_remove_unused"]

_log = logging.getLogger(__name__)

# How often a store waiting for a tool to finish tries again, in seconds.
_POLL = 0.05


class FileLocks:
    """The locks one store holds on its files.

    Args:
        wait: Seconds a shared lock waits for a tool's exclusive lock before
            :class:`~botstate.errors.StoreLockedError`.

    Attributes:
        exclusive: False for a persistence (shared locks); the tools set it to True before the
            store touches its files, and are then refused at once while another process holds
            any of them.
    """

    __slots__ = ("_held", "exclusive", "wait")

    def __init__(self, wait: float = 5.0) -> None:
        self.wait = wait
        self.exclusive = False
        self._held: dict[Path, int] = {}

    def hold(self, path: Path) -> int | None:
        """Lock the file at *path* and return a descriptor open on the locked file.

        The descriptor stays open, and the file locked, until :meth:`release`; read it with
        :func:`read_all`. Returns None when there is no file at *path*.

        Raises:
            StoreLockedError: When another process holds a lock that excludes this one.
            OSError: When the file exists but cannot be opened.
        """
        held = self._held.get(path)
        if held is not None and _same_file(held, path):
            return held
        deadline = time.monotonic() + self.wait
        while True:
            try:
                descriptor = os.open(path, _READ_FLAGS)
            except FileNotFoundError:
                return None
            _refuse_unless_regular(descriptor)
            if _try_lock(descriptor, self.exclusive, path):
                # The file may have been replaced between opening and locking: lock the new one.
                if _same_file(descriptor, path):
                    self._keep(path, descriptor)
                    return descriptor
                os.close(descriptor)
                continue
            os.close(descriptor)
            if self.exclusive:
                raise StoreLockedError(
                    f"{path} is in use by another process (a bot or another botstate command "
                    "has it open); stop it, then run this again"
                )
            if time.monotonic() >= deadline:
                raise StoreLockedError(
                    f"{path} is being changed by a botstate command (migrate, set or delete); "
                    f"waited {self.wait:g} s. Try again once it has finished."
                )
            time.sleep(_POLL)

    def lock_new(self, descriptor: int) -> int:
        """Lock a file nobody else can see yet (a temporary file about to replace another) and
        return a new descriptor holding that lock; :meth:`adopt` it once the file is in place."""
        duplicate = os.dup(descriptor)
        _try_lock(duplicate, self.exclusive, None)
        return duplicate

    def adopt(self, path: Path, descriptor: int) -> None:
        """Keep *descriptor* (from :meth:`lock_new`) as the lock of *path*, now that the file it
        is open on has replaced the file at *path*."""
        self._keep(path, descriptor)

    def release(self) -> None:
        """Release every lock."""
        for descriptor in self._held.values():
            with contextlib.suppress(OSError):
                os.close(descriptor)
        self._held.clear()

    def _keep(self, path: Path, descriptor: int) -> None:
        old = self._held.get(path)
        self._held[path] = descriptor
        if old is not None and old != descriptor:
            os.close(old)


def in_use(paths: list[Path]) -> bool | None:
    """Whether another process holds a lock on any of *paths* (files that do not exist are
    skipped); None when it cannot be told. Takes and drops an exclusive lock on each."""
    if fcntl is None:
        return None
    for path in paths:
        try:
            descriptor = os.open(path, _READ_FLAGS)
        except FileNotFoundError:
            continue
        except OSError:
            return None
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        except OSError:
            return None
        finally:
            os.close(descriptor)
    return False


#: Opening to read or lock never blocks: a pipe put in a file's place would wait for a writer.
_READ_FLAGS = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)


def _refuse_unless_regular(descriptor: int) -> None:
    """Close *descriptor* and raise ``OSError`` unless it is open on a regular file: reading a
    device (``/dev/zero``) would never end, and a folder or pipe holds no store."""
    mode = os.fstat(descriptor).st_mode
    if stat.S_ISREG(mode):
        return
    os.close(descriptor)
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(errno.EISDIR, "it is a folder, not a file")
    raise OSError(errno.EINVAL, "it is not a regular file (a device, pipe or socket)")


def read_all(descriptor: int) -> bytes:
    """The whole content of the file *descriptor* is open on, whatever its position."""
    os.lseek(descriptor, 0, os.SEEK_SET)
    chunks = []
    while chunk := os.read(descriptor, 1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


def _try_lock(descriptor: int, exclusive: bool, path: Path | None) -> bool:
    """Take the lock without waiting; False when another process holds a conflicting one.

    Where locks are not available the store goes on without one.
    """
    if fcntl is None:
        return True
    try:
        fcntl.flock(descriptor, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as exc:
        _log.debug("cannot lock %s (%s); going on without a lock", path or "a new file", exc)
    return True


def _same_file(descriptor: int, path: Path) -> bool:
    try:
        found = os.stat(path)
    except OSError:
        return False
    mine = os.fstat(descriptor)
    return (mine.st_dev, mine.st_ino) == (found.st_dev, found.st_ino)


def lock_writing(descriptor: int) -> None:
    """Lock a temporary file while it is written, so that no other process takes it for the
    leftover of a killed writer (see :func:`try_remove_unused`)."""
    _try_lock(descriptor, True, None)


def try_remove_unused(path: Path) -> bool:
    """Delete *path* unless a live process holds a lock on it; True when it was deleted.

    A process killed while writing a temporary file no longer holds its lock.
    """
    try:
        descriptor = os.open(path, _READ_FLAGS)
    except FileNotFoundError:
        return False
    try:
        if not _try_lock(descriptor, True, path):
            return False
        path.unlink()
        return True
    finally:
        os.close(descriptor)
