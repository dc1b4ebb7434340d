"""Crash-safe file replacement.

A file is replaced by writing a temporary file in the same folder, flushing it to disk,
renaming it over the old one and flushing the folder: a reader (or a restart after a crash)
sees the old file or the new one, never a mixture.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import stat
import tempfile
from pathlib import Path

from botstate._locks import FileLocks, lock_writing, try_remove_unused
from botstate.errors import WriteError

__all__ = ["TEMP_MARK", "remove_stale_temporaries", "replace_file"]

_log = logging.getLogger(__name__)

#: Temporary files are named ``<file name><TEMP_MARK><random>``.
TEMP_MARK = ".botstate-tmp-"


def replace_file(path: Path, data: bytes, locks: FileLocks | None = None) -> None:
    """Atomically and durably replace *path* with *data*.

    A new file is readable and writable by its owner only; a replaced file keeps its mode.
    With *locks*, the new file is locked before it takes the place of the old one, and *locks*
    keeps that lock in place of the old file's.

    Raises:
        WriteError: When any step fails; *path* then still holds its previous content.
    """
    # A symlinked store (state kept in a shared folder, say) is written through the link.
    path = Path(os.path.realpath(path))
    folder = path.parent
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        mode = 0o600
    except OSError as exc:
        raise WriteError(f"cannot write {path}: {exc}") from exc

    try:
        descriptor, temporary = tempfile.mkstemp(dir=folder, prefix=path.name + TEMP_MARK)
    except OSError as exc:
        raise WriteError(f"cannot write {path}: {exc}") from exc
    held = None
    try:
        with os.fdopen(descriptor, "wb") as file:
            lock_writing(file.fileno())
            os.fchmod(file.fileno(), mode)
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
            if locks is not None:
                held = locks.lock_new(file.fileno())
        os.replace(temporary, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        if held is not None:
            os.close(held)
        raise WriteError(f"cannot write {path}: {exc}; its previous content is kept") from exc
    if locks is not None and held is not None:
        locks.adopt(path, held)
    _fsync_folder(folder)


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (POSIX needs the folder flushed too)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return  # Not possible on this platform (Windows); the rename is still atomic.
    try:
        os.fsync(descriptor)
    except OSError as exc:
        _log.debug("fsync of folder %s failed: %s", folder, exc)
    finally:
        os.close(descriptor)


def remove_stale_temporaries(path: Path) -> None:
    """Delete temporary files a killed process left beside *path*.

    A live writer holds a lock on its temporary file until the file takes its place, so only
    the leftovers of killed writers go. Only the process that writes *path* calls this, before
    its own first write.
    """
    path = Path(os.path.realpath(path))
    try:
        leftovers = list(path.parent.glob(glob.escape(path.name) + TEMP_MARK + "*"))
    except OSError:
        return
    for leftover in leftovers:
        try:
            removed = try_remove_unused(leftover)
        except OSError as exc:
            _log.warning("cannot remove leftover temporary file %s: %s", leftover, exc)
        else:
            if removed:
                _log.warning("removed %s, left by an interrupted write", leftover)
