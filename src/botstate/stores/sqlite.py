"""SQLite: the embedded default store, one row per record.

The database holds two tables: ``botstate_meta`` (format version, codec, version clock) and
``botstate_records`` with one row per record ``(kind, key, value, version, updated)``. A batch
of changes is one ``BEGIN IMMEDIATE ... COMMIT`` transaction, so a cycle costs one commit whose
size follows the number of changed records, whatever the number stored.

Each write of a record gives it a new version, drawn from a clock kept in ``botstate_meta``,
so versions never repeat, not even for a record deleted and created again. A strict change
(the ``version=`` of :meth:`~botstate.persistence.Persistence.update_record`) is a
compare-and-set: the version is checked inside the write transaction, which holds the
database's write lock, so it is atomic across processes too.

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
import zlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, Literal, cast

from botstate._locks import FileLocks
from botstate.base import BD, CD, UD, PersistenceInput
from botstate.codecs import Codec, get_codec
from botstate.errors import CorruptDataError, StoreLockedError, WriteError
from botstate.kinds import KINDS, Kind
from botstate.persistence import Persistence
from botstate.stores.base import (
    DAMAGED_KIND,
    Delete,
    OnCorrupt,
    RecordStore,
    Row,
    Written,
    stale_version,
)

__all__ = ["FORMAT_VERSION", "SQLitePersistence", "SQLiteStore"]

_log = logging.getLogger(__name__)

#: The version of the table layout this release writes and reads. Format 2 added the ``crc``
#: column; format 3 keeps records in a table with rowids (formats 1 and 2 used one ``WITHOUT
#: ROWID``, which stores records of a kilobyte and more several times over in size and
#: write cost). An older database is upgraded when it is opened.
FORMAT_VERSION: Final = 3

Synchronous = Literal["NORMAL", "FULL"]

_ROWS_PER_FETCH: Final = 1000

# Records are often a kilobyte or more: a rowid table keeps them beside a small key index
# (a WITHOUT ROWID table fits such rows badly in its pages).
_RECORDS_TABLE = """CREATE TABLE IF NOT EXISTS botstate_records (
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    version INTEGER NOT NULL,
    updated REAL NOT NULL,
    crc INTEGER,
    PRIMARY KEY (kind, key)
)"""

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS botstate_meta (
        name TEXT PRIMARY KEY,
        value TEXT NOT NULL
    ) WITHOUT ROWID""",
    _RECORDS_TABLE,
)

_UPSERT = """
INSERT INTO botstate_records (kind, key, value, version, updated, crc) VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (kind, key) DO UPDATE
SET value = excluded.value, version = excluded.version, updated = excluded.updated,
    crc = excluded.crc
"""

# The clock holds the last version handed out. A database written before it existed starts it
# from its highest version, once.
_READ_CLOCK = """
SELECT coalesce(
    (SELECT CAST(value AS INTEGER) FROM botstate_meta WHERE name = 'clock'),
    (SELECT max(version) FROM botstate_records),
    0
)
"""

_SET_CLOCK = """
INSERT INTO botstate_meta (name, value) VALUES ('clock', ?)
ON CONFLICT (name) DO UPDATE SET value = excluded.value
"""


class SQLiteStore(RecordStore):
    """A record store in one SQLite database file.

    Several processes may share the file: writes take turns, and a strict change is a
    compare-and-set (:attr:`~botstate.stores.base.Store.checks_versions`).

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

    checks_versions = True

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
        if str(path) == ":memory:" or str(path).startswith("file:"):
            raise ValueError(
                f"SQLitePersistence takes the path of a database file, not {str(path)!r}; "
                "for a store in memory use MemoryPersistence"
            )
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
        try:
            self.locks.hold(self.path)
        except StoreLockedError:
            raise
        except OSError as exc:
            raise self._open_error(exc) from exc
        try:
            connection = sqlite3.connect(
                self.path,
                timeout=self.lock_timeout,
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error as exc:
            self.locks.release()
            raise self._open_error(exc) from exc
        try:
            meta = self._prepare(connection)
            self.check_stamp(meta, FORMAT_VERSION)
        except BaseException:
            connection.close()
            self.locks.release()
            raise
        self._connection = connection
        _log.info("opened %s (format %d, codec %s)", self.path, FORMAT_VERSION, self.codec.name)

    def _prepare(self, connection: sqlite3.Connection) -> dict[str, str]:
        """Check the file, set the journal mode, check or create the tables; return the stamp."""
        # Several processes opening a new database at once race for the first write; switching
        # to WAL does not always wait for the lock, so the open is retried until lock_timeout.
        deadline = time.monotonic() + self.lock_timeout
        while True:
            try:
                return self._prepare_once(connection)
            except sqlite3.OperationalError as exc:
                if _locked(exc) and time.monotonic() < deadline:
                    time.sleep(0.02)
                    continue
                raise self._open_error(exc) from exc
            except (sqlite3.DatabaseError, UnicodeDecodeError) as exc:
                # A damaged byte in a table or column name reads as text that is not UTF-8.
                raise self._open_error(exc) from exc

    def _prepare_once(self, connection: sqlite3.Connection) -> dict[str, str]:
        # Look before changing anything: switching to WAL rewrites the file's header.
        tables = self._check_tables(connection)
        self._check_integrity(connection)
        if "botstate_meta" in tables:
            self._check_codec_stamp(connection)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute(f"PRAGMA synchronous={self.synchronous}")
        connection.execute("BEGIN IMMEDIATE")
        try:
            # Again inside the transaction, which no other process can change under us.
            self._check_tables(connection)
            for statement in _SCHEMA:
                connection.execute(statement)
            meta: dict[str, str] = dict(
                connection.execute("SELECT name, value FROM botstate_meta")
            )
            self._check_kinds(connection)
            if not meta:
                (stored,) = connection.execute("SELECT count(*) FROM botstate_records").fetchone()
                if stored:
                    raise CorruptDataError(
                        f"{self.path}: the botstate_meta table lost its format stamp but "
                        f"{stored} records are stored; botstate leaves the file as it is",
                        location=str(self.path),
                    )
                meta = {"format_version": str(FORMAT_VERSION), "codec": self.codec.name}
                connection.executemany(
                    "INSERT INTO botstate_meta (name, value) VALUES (?, ?)",
                    [*meta.items(), ("created", f"{time.time():.3f}")],
                )
            upgraded = meta.get("format_version") in ("1", "2")
            if upgraded:
                meta = self._upgrade(connection, meta)
            connection.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                connection.execute("ROLLBACK")
            raise
        if upgraded:
            # The old table's pages are free now: give them back, so the file does not stay
            # twice its size. Another process reading at this moment only defers that.
            try:
                connection.execute("VACUUM")
            except sqlite3.OperationalError as exc:
                _log.info("%s: not compacted after the upgrade (%s)", self.path, exc)
        return meta

    def _upgrade(self, connection: sqlite3.Connection, meta: dict[str, str]) -> dict[str, str]:
        """Bring a format 1 or 2 database to the current format, in the opening transaction:
        a killed upgrade leaves the old format whole, and the next opening upgrades it.

        Format 1 lacks the ``crc`` column (it is computed from the stored bytes); both keep
        their records in a ``WITHOUT ROWID`` table, copied here into a table with rowids.
        """
        old = meta["format_version"]
        crc = "crc"
        if old == "1":
            connection.create_function("botstate_crc", 3, _crc, deterministic=True)
            crc = "botstate_crc(kind, key, value)"
        connection.execute("ALTER TABLE botstate_records RENAME TO botstate_records_old")
        connection.execute(_RECORDS_TABLE)
        connection.execute(
            "INSERT INTO botstate_records (kind, key, value, version, updated, crc) "
            f"SELECT kind, key, value, version, updated, {crc} FROM botstate_records_old"
        )
        connection.execute("DROP TABLE botstate_records_old")
        connection.execute(
            "UPDATE botstate_meta SET value = ? WHERE name = 'format_version'",
            (str(FORMAT_VERSION),),
        )
        _log.info("%s: upgraded from botstate format %s to %d", self.path, old, FORMAT_VERSION)
        return {**meta, "format_version": str(FORMAT_VERSION)}

    def _check_codec_stamp(self, connection: sqlite3.Connection) -> None:
        """Refuse, before anything is written (an upgrade, the journal mode), a stamp that
        lost its codec: its records could not be read with certainty."""
        names = {name for (name,) in connection.execute("SELECT name FROM botstate_meta")}
        if names and "codec" not in names:
            raise CorruptDataError(
                f"{self.path}: the botstate_meta table has no codec stamp, so its records "
                "cannot be read with certainty; botstate leaves the file as it is",
                location=str(self.path),
            )

    def _check_kinds(self, connection: sqlite3.Connection) -> None:
        """Refuse rows of a kind botstate does not know.

        Loads ask for one kind at a time, so a row whose kind was damaged would silently go
        missing from its own kind rather than fail its checksum.
        """
        known = (*KINDS, DAMAGED_KIND)
        marks = ", ".join("?" * len(known))
        strange = connection.execute(
            f"SELECT kind, key FROM botstate_records WHERE kind NOT IN ({marks}) LIMIT 3",
            known,
        ).fetchall()
        if strange:
            found = ", ".join(f"{kind!r}/{key!r}" for kind, key in strange)
            raise CorruptDataError(
                f"{self.path} holds records of a kind botstate does not know ({found}): the "
                "file is damaged or was written by a newer botstate; botstate writes nothing "
                "into it",
                location=str(self.path),
            )

    def _check_tables(self, connection: sqlite3.Connection) -> set[str]:
        """Refuse a database that is not botstate's, or a botstate database missing a table.

        Adding fresh tables to such a file would start empty beside data botstate cannot see.
        """
        tables = {
            name
            for (name,) in connection.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'"
            )
            if not name.startswith("sqlite_")
        }
        if not tables:
            return tables  # A new (or empty) database.
        ours = {"botstate_meta", "botstate_records"}
        if not tables & ours:
            raise CorruptDataError(
                f"{self.path} is an SQLite database of another application (tables "
                f"{', '.join(sorted(tables)[:5])}); botstate keeps its state in a database of "
                "its own, so give it a new file",
                location=str(self.path),
            )
        for missing in sorted(ours - tables):
            raise CorruptDataError(
                f"{self.path} is a botstate database without its {missing} table; "
                "botstate leaves the file as it is",
                location=str(self.path),
            )
        return tables

    def _check_integrity(self, connection: sqlite3.Connection) -> None:
        """Raise if the file is damaged.

        A damaged page can read as empty or as other records rather than fail, so SQLite's own
        check runs once on open. It reads the database once more at start-up, in about the time
        loading every record takes.
        """
        problems = [row[0] for row in connection.execute("PRAGMA quick_check(3)")]

        # SQLite writes whole pages. A file cut short inside its last page passes the check
        # when the lost bytes held record contents, which then read as zeros: other records.
        # While a write-ahead log has content, SQLite itself rebuilds the file from it.
        (page_size,) = connection.execute("PRAGMA page_size").fetchone()
        size = os.path.getsize(self.path)
        if size % page_size and not _has_content(Path(f"{self.path}-wal")):
            problems.append(f"its size ({size} bytes) is not a whole number of pages: cut short")

        if problems != ["ok"]:
            found = "; ".join(problem for problem in problems if problem != "ok")
            raise CorruptDataError(
                f"{self.path} is damaged ({found}); botstate writes nothing into it. Restore a "
                "backup, or recover what is left with the sqlite3 shell's '.recover' into a new "
                "file.",
                location=str(self.path),
            )

    def _open_error(self, exc: BaseException) -> Exception:
        """Translate an error met while opening into botstate's, naming the file and reason."""
        text = str(exc)
        if isinstance(exc, sqlite3.Error) and _locked(exc):
            return StoreLockedError(
                f"{self.path} stayed locked by another process for {self.lock_timeout:g} s "
                "while opening; nothing was changed. Raise lock_timeout or stop the other writer."
            )
        if self.path.is_dir():
            reason = " (it is a folder)"
        elif self.path.exists() and not os.access(self.path, os.R_OK | os.W_OK):
            reason = " (this user may not read and write it)"
        elif "readonly" in text or "unable to open" in text:
            return WriteError(
                f"cannot open {self.path} for writing: {text}; SQLite needs write access to the "
                "file and to its folder, for its journal files"
            )
        else:
            reason = ""
        return CorruptDataError(
            f"{self.path} is not a usable SQLite database{reason}: {text}; botstate leaves it "
            "as it is",
            location=str(self.path),
        )

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
                    "SELECT key, value, version, crc FROM botstate_records "
                    "WHERE kind = ? AND substr(key, 1, ?) = ?",
                    (kind, len(key_prefix), key_prefix),
                )
            else:
                cursor = connection.execute(
                    "SELECT key, value, version, crc FROM botstate_records WHERE kind = ?",
                    (kind,),
                )
            # A thousand rows per call into sqlite3, and no more than a thousand undecoded
            # values in memory at a time.
            while chunk := cursor.fetchmany(_ROWS_PER_FETCH):
                yield from [_checked_row(kind, *found) for found in chunk]
        except (sqlite3.DatabaseError, UnicodeDecodeError) as exc:
            raise CorruptDataError(
                f"{self.path}: cannot read {kind}: {exc}", location=str(self.path), kind=kind
            ) from exc

    def row(self, kind: Kind, key: str) -> Row | None:
        connection = self._connected()
        try:
            found = connection.execute(
                "SELECT key, value, version, crc FROM botstate_records WHERE kind = ? AND key = ?",
                (kind, key),
            ).fetchone()
        except (sqlite3.DatabaseError, UnicodeDecodeError) as exc:
            raise CorruptDataError(
                f"{self.path}: cannot read {kind}: {exc}", location=str(self.path), kind=kind
            ) from exc
        return None if found is None else _checked_row(kind, *found)

    def write_rows(self, upserts: Sequence[Row], deletes: Sequence[Delete]) -> Written[str]:
        connection = self._connected()
        now = time.time()
        conflicts: dict[tuple[Kind, str], int] = {}
        refused: set[tuple[Kind, str]] = set()
        with self._transaction(connection, "write"):
            # The transaction holds the write lock: no other process can change a version
            # between this check and the writes below.
            changes: list[Row | Delete] = [*upserts, *deletes]
            for change in changes:
                if change.base is None:
                    continue
                data = change.data if isinstance(change, Row) else None
                found = stale_version(change.base, self.row(change.kind, change.key), data)
                if found is not None:
                    conflicts[(change.kind, change.key)] = found
                    if change.strict:
                        refused.add((change.kind, change.key))
            deletes = [delete for delete in deletes if (delete.kind, delete.key) not in refused]
            upserts = [row for row in upserts if (row.kind, row.key) not in refused]

            if deletes:
                connection.executemany(
                    "DELETE FROM botstate_records WHERE kind = ? AND key = ?",
                    [(delete.kind, delete.key) for delete in deletes],
                )
            versions: dict[tuple[Kind, str], int] = {}
            if upserts:
                (last,) = connection.execute(_READ_CLOCK).fetchone()
                versions = {(row.kind, row.key): last + n for n, row in enumerate(upserts, 1)}
                connection.executemany(
                    _UPSERT,
                    [
                        (
                            r.kind,
                            r.key,
                            r.data,
                            versions[(r.kind, r.key)],
                            now,
                            _crc(r.kind, r.key, r.data),
                        )
                        for r in upserts
                    ],
                )
                connection.execute(_SET_CLOCK, (str(last + len(upserts)),))
        versions.update(((delete.kind, delete.key), 0) for delete in deletes)
        return Written(versions, conflicts, frozenset(refused))

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
        if _locked(exc):
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


def _crc(kind: str, key: str, data: bytes) -> int:
    """The checksum of one record as stored: its kind, key and value."""
    return zlib.crc32(data, zlib.crc32(f"{kind}\0{key}\0".encode()))


def _checked_row(kind: Kind, key: object, data: object, version: int, crc: int | None) -> Row:
    """A row as read, marked damaged when its checksum does not match.

    SQLite checks the structure of its pages, not the bytes of stored values: a damaged byte
    inside a value can read as another valid value. The checksum tells.
    """
    if not isinstance(key, str) or not isinstance(data, bytes):
        return Row(kind, cast("str", key), cast("bytes", data), version)  # Decoding says why.
    if crc is not None and crc != _crc(kind, key, data):
        return Row(kind, key, data, version, damage="its checksum does not match: it was damaged")
    return Row(kind, key, data, version)


def _locked(exc: sqlite3.Error) -> bool:
    return "locked" in str(exc) or "busy" in str(exc)


def _has_content(path: Path) -> bool:
    try:
        return path.stat().st_size > 0
    except FileNotFoundError:
        return False


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
