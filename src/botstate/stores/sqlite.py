"""SQLite: the embedded default store, one row per record.

The database holds two tables: ``botstate_meta`` (format version, codec) and
``botstate_records`` with one row per record ``(kind, key, value, version, updated)``. A batch
of changes is one ``BEGIN IMMEDIATE ... COMMIT`` transaction, so a cycle costs one commit whose
size follows the number of changed records, whatever the number stored.

The journal is in WAL mode: a crash of the process never loses a committed cycle, readers in
other processes (``botstate inspect`` on a live bot, a second worker) see every committed cycle
and never block the writer. ``synchronous="FULL"`` adds durability against power loss at the
price of one more disk flush per commit.

While open, a store holds a shared lock on the database file (:mod:`botstate._locks`), by
which the command line's repairs tell that a bot is using it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, Literal

from botstate._locks import FileLocks
from botstate.base import BD, CD, UD, PersistenceInput
from botstate.codecs import Codec, get_codec
from botstate.errors import CorruptDataError, StoreLockedError, WriteError
from botstate.kinds import Kind
from botstate.persistence import Persistence
from botstate.stores.base import OnCorrupt, RecordStore, Row

__all__ = ["FORMAT_VERSION", "SQLitePersistence", "SQLiteStore"]

_log = logging.getLogger(__name__)

#: The version of the table layout this release writes and reads.
FORMAT_VERSION: Final = 1

Synchronous = Literal["NORMAL", "FULL"]

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS botstate_meta (
        name TEXT PRIMARY KEY,
        value TEXT NOT NULL
    ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS botstate_records (
        kind TEXT NOT NULL,
        key TEXT NOT NULL,
        value BLOB NOT NULL,
        version INTEGER NOT NULL,
        updated REAL NOT NULL,
        PRIMARY KEY (kind, key)
    ) WITHOUT ROWID""",
)

_UPSERT = """
INSERT INTO botstate_records (kind, key, value, version, updated) VALUES (?, ?, ?, 1, ?)
ON CONFLICT (kind, key) DO UPDATE
SET value = excluded.value, version = version + 1, updated = excluded.updated
"""


class SQLiteStore(RecordStore):
    """A record store in one SQLite database file.

    Args:
        path: The database file. Its folder must exist; the file is created on first use,
            readable and writable by its owner only.
        codec: ``"pickle"`` (default), ``"pickle-restricted"``, ``"json"`` or a codec instance.
            A database remembers the format it was created with and refuses to be opened with a
            codec of another format; trusted and restricted pickle are one format.
        synchronous: ``"NORMAL"`` (default): durable against a crash of the process.
            ``"FULL"``: durable against power loss too, one more disk flush per commit.
        lock_timeout: Seconds a write waits for another process's write lock before raising
            :class:`~botstate.errors.StoreLockedError`. Defaults to 5.
        on_corrupt: ``"raise"`` or ``"skip"`` for records that cannot be decoded.
    """

    def __init__(
        self,
        path: str | Path,
        codec: Codec | str | None = None,
        *,
        synchronous: Synchronous = "NORMAL",
        lock_timeout: float = 5.0,
        on_corrupt: OnCorrupt = "raise",
    ) -> None:
        super().__init__(get_codec(codec), on_corrupt)
        if synchronous not in ("NORMAL", "FULL"):
            raise ValueError(f"synchronous must be 'NORMAL' or 'FULL', got {synchronous!r}")
        self.path = Path(path)
        self.synchronous: Synchronous = synchronous
        self.lock_timeout = lock_timeout
        self.locks = FileLocks(lock_timeout)
        self._connection: sqlite3.Connection | None = None

    @property
    def location(self) -> str:
        return str(self.path)

    # -- opening --------------------------------------------------------------------------------

    def open(self) -> None:
        if self._connection is not None:
            return
        _create_private(self.path)
        self.locks.hold(self.path)
        try:
            connection = sqlite3.connect(
                self.path,
                timeout=self.lock_timeout,
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error as exc:
            self.locks.release()
            raise CorruptDataError(
                f"{self.path} cannot be opened as an SQLite database: {exc}",
                location=str(self.path),
            ) from exc
        try:
            self._prepare(connection)
        except BaseException:
            connection.close()
            self.locks.release()
            raise
        self._connection = connection
        _log.info("opened %s (format %d, codec %s)", self.path, FORMAT_VERSION, self.codec.name)

    def _prepare(self, connection: sqlite3.Connection) -> None:
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute(f"PRAGMA synchronous={self.synchronous}")
            with self._transaction(connection, "open"):
                for statement in _SCHEMA:
                    connection.execute(statement)
                meta = dict(connection.execute("SELECT name, value FROM botstate_meta"))
                if not meta:
                    connection.executemany(
                        "INSERT INTO botstate_meta (name, value) VALUES (?, ?)",
                        [
                            ("format_version", str(FORMAT_VERSION)),
                            ("codec", self.codec.name),
                            ("created", f"{time.time():.3f}"),
                        ],
                    )
                    meta = {"format_version": str(FORMAT_VERSION), "codec": self.codec.name}
        except sqlite3.DatabaseError as exc:
            raise CorruptDataError(
                f"{self.path} is not a usable SQLite database: {exc}", location=str(self.path)
            ) from exc
        self.check_stamp(meta, FORMAT_VERSION)

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        self.locks.release()

    # -- rows -----------------------------------------------------------------------------------

    def rows(self, kind: Kind, key_prefix: str = "") -> Iterator[Row]:
        connection = self._connected()
        try:
            if key_prefix:
                cursor = connection.execute(
                    "SELECT key, value, version FROM botstate_records "
                    "WHERE kind = ? AND substr(key, 1, ?) = ?",
                    (kind, len(key_prefix), key_prefix),
                )
            else:
                cursor = connection.execute(
                    "SELECT key, value, version FROM botstate_records WHERE kind = ?", (kind,)
                )
            for key, value, version in cursor:
                yield Row(kind, key, value, version)
        except sqlite3.DatabaseError as exc:
            raise CorruptDataError(
                f"{self.path}: cannot read {kind}: {exc}", location=str(self.path), kind=kind
            ) from exc

    def row(self, kind: Kind, key: str) -> Row | None:
        connection = self._connected()
        try:
            found = connection.execute(
                "SELECT value, version FROM botstate_records WHERE kind = ? AND key = ?",
                (kind, key),
            ).fetchone()
        except sqlite3.DatabaseError as exc:
            raise CorruptDataError(
                f"{self.path}: cannot read {kind}: {exc}", location=str(self.path), kind=kind
            ) from exc
        return None if found is None else Row(kind, key, found[0], found[1])

    def write_rows(self, upserts: Sequence[Row], deletes: Sequence[tuple[Kind, str]]) -> None:
        connection = self._connected()
        now = time.time()
        with self._transaction(connection, "write"):
            if deletes:
                connection.executemany(
                    "DELETE FROM botstate_records WHERE kind = ? AND key = ?", deletes
                )
            if upserts:
                connection.executemany(
                    _UPSERT, [(row.kind, row.key, row.data, now) for row in upserts]
                )

    @contextlib.contextmanager
    def _transaction(self, connection: sqlite3.Connection, what: str) -> Iterator[None]:
        """One ``BEGIN IMMEDIATE`` transaction; a lock held too long becomes StoreLockedError."""
        try:
            connection.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise self._translate(exc, what) from exc
        try:
            yield
            connection.execute("COMMIT")
        except BaseException as exc:
            with contextlib.suppress(sqlite3.Error):
                connection.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise self._translate(exc, what) from exc
            raise

    def _translate(self, exc: sqlite3.Error, what: str) -> Exception:
        if "locked" in str(exc) or "busy" in str(exc):
            return StoreLockedError(
                f"{self.path} stayed locked by another process for {self.lock_timeout:g} s "
                f"during {what}; nothing was changed. Raise lock_timeout or stop the other "
                "writer."
            )
        return WriteError(f"{self.path}: {what} failed: {exc}; nothing was changed")

    def _connected(self) -> sqlite3.Connection:
        if self._connection is None:
            self.open()
        assert self._connection is not None
        return self._connection

    # -- for tools ------------------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        """Return the stamped metadata and the time of the last write (Unix seconds)."""
        connection = self._connected()
        meta = dict(connection.execute("SELECT name, value FROM botstate_meta"))
        (last,) = connection.execute("SELECT max(updated) FROM botstate_records").fetchone()
        return {**meta, "last_write": last}

    def read_meta(self) -> dict[str, str] | None:
        if not self.path.exists():
            return None
        try:
            with contextlib.closing(sqlite3.connect(self.path, timeout=self.lock_timeout)) as db:
                found = db.execute(
                    "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'botstate_meta'"
                ).fetchone()
                if found is None:
                    return None
                return dict(db.execute("SELECT name, value FROM botstate_meta"))
        except sqlite3.DatabaseError as exc:
            raise CorruptDataError(
                f"{self.path} is not a usable SQLite database: {exc}", location=str(self.path)
            ) from exc

    def write_meta(self, entries: Mapping[str, str | None]) -> None:
        connection = self._connected()
        with self._transaction(connection, "stamping"):
            for name, value in entries.items():
                if value is None:
                    connection.execute("DELETE FROM botstate_meta WHERE name = ?", (name,))
                else:
                    connection.execute(
                        "INSERT INTO botstate_meta (name, value) VALUES (?, ?) "
                        "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                        (name, value),
                    )

    def count(self, kind: Kind) -> int:
        (found,) = (
            self._connected()
            .execute("SELECT count(*) FROM botstate_records WHERE kind = ?", (kind,))
            .fetchone()
        )
        return int(found)


def _create_private(path: Path) -> None:
    """Create *path* readable and writable by its owner only, unless it exists."""
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    except OSError as exc:
        raise WriteError(f"cannot create {path}: {exc.strerror or exc}") from exc
    os.close(descriptor)


class SQLitePersistence(Persistence[UD, CD, BD]):
    """Persistence in an SQLite database: the recommended default.

    Each user, chat and conversation is a row of its own. The changes of one cycle are one
    transaction whose cost follows the number of changed records; unchanged records are not
    written; nothing blocks the event loop; a crash never loses a committed cycle; other
    processes may read (and, one at a time, write) the same file.

    Args:
        path: The database file (its folder must exist).
        store_data: Which kinds to store. Defaults to all of them.
        update_interval: Seconds between two persistence updates of the application.
        context_types: python-telegram-bot's ``ContextTypes``, for the ``bot_data`` factory.
        codec: ``"pickle"`` (default), ``"pickle-restricted"``, ``"json"`` or a codec
            instance; see :mod:`botstate.codecs`.
        on_flush: When True, nothing is written until :meth:`flush`. Defaults to False.
        synchronous: ``"NORMAL"`` (default, crash-safe) or ``"FULL"`` (power-loss safe).
        lock_timeout: Seconds to wait for another writer's lock. Defaults to 5.
        on_corrupt: ``"raise"`` (default) or ``"skip"`` for records that cannot be decoded.
    """

    def __init__(
        self,
        path: str | Path,
        store_data: PersistenceInput | None = None,
        update_interval: float = 60,
        context_types: Any = None,
        *,
        codec: Codec | str | None = None,
        on_flush: bool = False,
        synchronous: Synchronous = "NORMAL",
        lock_timeout: float = 5.0,
        on_corrupt: OnCorrupt = "raise",
    ) -> None:
        store = SQLiteStore(
            path,
            codec,
            synchronous=synchronous,
            lock_timeout=lock_timeout,
            on_corrupt=on_corrupt,
        )
        super().__init__(
            store,
            store_data=store_data,
            update_interval=update_interval,
            context_types=context_types,
            on_flush=on_flush,
        )

    @property
    def path(self) -> Path:
        """The database file."""
        assert isinstance(self.store, SQLiteStore)
        return self.store.path
