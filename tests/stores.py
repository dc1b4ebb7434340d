"""Every store botstate is tested on, described once.

The contract suite (``conftest.StoreFactory``), the crash harness, the corruption, fuzz and
bad-value tests and the model-based test all take their stores from :data:`STORES`, so a new
store joins every one of them with one :class:`StoreKind` entry here. This module imports no
pytest: the crash harness opens stores from it in child processes.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botstate import JSONCodec, JSONPersistence, PicklePersistence, SQLitePersistence
from botstate.kinds import KINDS
from botstate.persistence import Persistence
from botstate.stores.base import RecordStore, Row
from botstate.stores.memory import MemoryStore

from . import servers

Opener = Callable[..., Persistence[Any, Any, Any]]

# The JSON codec stores plain objects of allowed modules only; the bad-value trials wrap their
# values in a class of their own, which the JSON stores are allowed to store.
_JSON = JSONCodec(allow=["tests.reliability.badvalues"])


def _available() -> str | None:
    return None


@dataclass(frozen=True)
class StoreKind:
    """How to open one store and what the reliability tests may expect of it.

    Attributes:
        name: The name tests are parametrized with.
        open: ``open(folder, **options)`` returns a new persistence on the store kept for
            *folder*; opening again with the same folder is a restart of the bot.
        files: For stores kept in files, returns the files holding the data under *folder*,
            once written (the disk-full, damaged-file and unreadable-file trials run on them).
        durable: What it stores outlives the process (the crash trial runs).
        atomic: A batch of changes of several kinds is all or nothing. When False, each
            record is still old or new, never mixed.
        every_damaged_byte_found: Each single damaged byte of its files is found (an error)
            or harmless (the data loads unchanged); never silently different data.
        empty_file_is_new: An empty file where the store's file belongs opens as a new, empty
            store (a process killed while creating the store leaves one).
        tells_files_apart: A file of another kind or store put in place of one of its files is
            an error. JSON files carry no mark of their kind: another JSON file of the right
            shape loads as what it holds.
        record_bytes: For record stores, ``record_bytes(folder, kind, key text)`` returns the
            stored bytes of one record, or None.
        set_record_bytes: For record stores, writes raw bytes as one record's stored value,
            as damage would.
        unavailable: Returns why the store cannot run here (a missing server), or None.
        cleanup: Removes what the store kept for *folder* outside it (a server's prefix or
            table); None for stores kept in the folder or in memory.
    """

    name: str
    open: Opener
    files: Callable[[Path], list[Path]] | None = None
    durable: bool = True
    atomic: bool = True
    every_damaged_byte_found: bool = True
    empty_file_is_new: bool = False
    tells_files_apart: bool = True
    record_bytes: Callable[[Path, str, str], bytes | None] | None = None
    set_record_bytes: Callable[[Path, str, str, bytes], None] | None = None
    unavailable: Callable[[], str | None] = _available
    cleanup: Callable[[Path], None] | None = None


# -- memory ------------------------------------------------------------------------------------

# One store per folder, so that "opening again" finds what the last persistence wrote.
_memory_stores: dict[Path, MemoryStore] = {}


def _memory_store(folder: Path, on_corrupt: str = "raise") -> MemoryStore:
    store = _memory_stores.setdefault(folder, MemoryStore())
    store.on_corrupt = on_corrupt  # type: ignore[assignment]
    return store


def _open_memory(
    folder: Path, on_corrupt: str = "raise", **options: Any
) -> Persistence[Any, Any, Any]:
    return Persistence(_memory_store(folder, on_corrupt), **options)


def _memory_record(folder: Path, kind: str, key: str) -> bytes | None:
    row = _memory_store(folder).records.get((kind, key))  # type: ignore[call-overload]
    return None if row is None else row.data


def _set_memory_record(folder: Path, kind: str, key: str, data: bytes) -> None:
    _memory_store(folder).records[(kind, key)] = Row(kind, key, data)  # type: ignore[arg-type]


# -- pickle files ------------------------------------------------------------------------------


def _open_pickle(folder: Path, **options: Any) -> Persistence[Any, Any, Any]:
    return PicklePersistence(folder / "state.pickle", **options)


def _open_pickle_multi(folder: Path, **options: Any) -> Persistence[Any, Any, Any]:
    return PicklePersistence(folder / "state", single_file=False, **options)


def _open_pickle_restricted(folder: Path, **options: Any) -> Persistence[Any, Any, Any]:
    return PicklePersistence(folder / "state.pickle", codec="pickle-restricted", **options)


def _pickle_files(folder: Path) -> list[Path]:
    return [path for path in [folder / "state.pickle"] if path.exists()]


def _pickle_multi_files(folder: Path) -> list[Path]:
    return [path for kind in KINDS if (path := folder / f"state_{kind}").exists()]


# -- JSON files --------------------------------------------------------------------------------


def _open_json(folder: Path, **options: Any) -> Persistence[Any, Any, Any]:
    return JSONPersistence(folder / "state.json", codec=_JSON, **options)


def _open_json_multi(folder: Path, **options: Any) -> Persistence[Any, Any, Any]:
    return JSONPersistence(folder / "state", single_file=False, codec=_JSON, **options)


def _json_files(folder: Path) -> list[Path]:
    return [path for path in [folder / "state.json"] if path.exists()]


# -- SQLite ------------------------------------------------------------------------------------


def _open_sqlite(folder: Path, **options: Any) -> Persistence[Any, Any, Any]:
    return SQLitePersistence(folder / "state.db", **options)


def _open_sqlite_json(folder: Path, **options: Any) -> Persistence[Any, Any, Any]:
    return SQLitePersistence(folder / "state.db", codec=_JSON, **options)


def _sqlite_files(folder: Path) -> list[Path]:
    return [path for path in [folder / "state.db"] if path.exists()]


def _sqlite_record(folder: Path, kind: str, key: str) -> bytes | None:
    with sqlite3.connect(folder / "state.db") as connection:
        found = connection.execute(
            "SELECT value FROM botstate_records WHERE kind = ? AND key = ?", (kind, key)
        ).fetchone()
    connection.close()
    return None if found is None else bytes(found[0])


def _set_sqlite_record(folder: Path, kind: str, key: str, data: bytes) -> None:
    with sqlite3.connect(folder / "state.db") as connection:
        connection.execute(
            "UPDATE botstate_records SET value = ? WHERE kind = ? AND key = ?", (data, kind, key)
        )
    connection.close()


# -- Redis and PostgreSQL ----------------------------------------------------------------------


def _server(server: str, codec: str | None) -> dict[str, Any]:
    """The entry fields of a store on a local server, under a prefix or table per folder."""
    extra = {} if codec is None else {"codec": _JSON}

    def open_store(folder: Path, **options: Any) -> Persistence[Any, Any, Any]:
        persistence: Persistence[Any, Any, Any] = servers.open_persistence(
            server, servers.name_for(server, folder), **extra, **options
        )
        return persistence

    def record_bytes(folder: Path, kind: str, key: str) -> bytes | None:
        with _raw(open_store(folder)) as store:
            row = store.row(kind, key)  # type: ignore[arg-type]
        return None if row is None else row.data

    def set_record_bytes(folder: Path, kind: str, key: str, data: bytes) -> None:
        with _raw(open_store(folder)) as store:
            store.write_rows([Row(kind, key, data)], [])  # type: ignore[arg-type]

    return {
        "open": open_store,
        "record_bytes": record_bytes,
        "set_record_bytes": set_record_bytes,
        "unavailable": lambda: servers.unavailable(server),
        "cleanup": lambda folder: servers.remove(server, servers.name_for(server, folder)),
    }


class _raw:
    """The record store of a persistence, opened for raw access and closed afterwards."""

    def __init__(self, persistence: Persistence[Any, Any, Any]) -> None:
        assert isinstance(persistence.store, RecordStore)
        self.store = persistence.store

    def __enter__(self) -> RecordStore:
        self.store.open()
        return self.store

    def __exit__(self, *exc_info: object) -> None:
        self.store.close()


#: Every store, by name. Later stores add their entry here.
STORES: dict[str, StoreKind] = {
    store.name: store
    for store in [
        StoreKind(
            "memory",
            _open_memory,
            durable=False,
            record_bytes=_memory_record,
            set_record_bytes=_set_memory_record,
        ),
        StoreKind("pickle", _open_pickle, files=_pickle_files),
        StoreKind("pickle-multi", _open_pickle_multi, files=_pickle_multi_files, atomic=False),
        StoreKind("pickle-restricted", _open_pickle_restricted, files=_pickle_files),
        # JSON has no room for a checksum: a changed digit is a different, valid value.
        StoreKind(
            "json",
            _open_json,
            files=_json_files,
            every_damaged_byte_found=False,
            tells_files_apart=False,
        ),
        StoreKind(
            "json-multi",
            _open_json_multi,
            files=_pickle_multi_files,
            atomic=False,
            every_damaged_byte_found=False,
            tells_files_apart=False,
        ),
        StoreKind(
            "sqlite",
            _open_sqlite,
            files=_sqlite_files,
            # Each record's checksum finds a damaged value, key or kind. A damaged key of a
            # conversation can still hide it: conversations load by handler, by key prefix.
            every_damaged_byte_found=False,
            empty_file_is_new=True,
            record_bytes=_sqlite_record,
            set_record_bytes=_set_sqlite_record,
        ),
        StoreKind(
            "sqlite-json",
            _open_sqlite_json,
            files=_sqlite_files,
            # Each record's checksum finds a damaged value, key or kind. A damaged key of a
            # conversation can still hide it: conversations load by handler, by key prefix.
            every_damaged_byte_found=False,
            empty_file_is_new=True,
            record_bytes=_sqlite_record,
            set_record_bytes=_set_sqlite_record,
        ),
        StoreKind("redis", **_server("redis", None)),
        StoreKind("redis-json", **_server("redis", "json")),
        StoreKind("postgres", **_server("postgres", None)),
        StoreKind("postgres-json", **_server("postgres", "json")),
    ]
}

#: The stores whose data outlives the process.
DURABLE = [name for name, store in STORES.items() if store.durable]

#: The stores kept in files.
FILE_STORES = [name for name, store in STORES.items() if store.files is not None]

#: The stores that keep one row per record.
RECORD_STORES = [name for name, store in STORES.items() if store.record_bytes is not None]
