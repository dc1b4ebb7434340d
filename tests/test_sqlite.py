"""SQLitePersistence: rows, transactions, format stamps, other processes and locks."""

from __future__ import annotations

import asyncio
import logging
import pickle
import sqlite3
import stat
import subprocess
import sys
import threading
import zlib
from pathlib import Path

import pytest

from botstate import (
    CorruptDataError,
    FormatVersionError,
    SQLitePersistence,
    StoreLockedError,
)
from botstate.stores.sqlite import FORMAT_VERSION, SQLiteStore


def rows(path: Path) -> list[tuple[str, str, int]]:
    with sqlite3.connect(path) as connection:
        return list(
            connection.execute("SELECT kind, key, version FROM botstate_records ORDER BY 1, 2")
        )


async def test_each_record_is_one_row_with_a_version_that_never_repeats(tmp_path: Path) -> None:
    persistence = SQLitePersistence(tmp_path / "bot.db")
    await asyncio.gather(
        persistence.update_user_data(2**40, {"a": 1}),
        persistence.update_chat_data(-1001234567890, {"c": 1}),
        persistence.update_bot_data({"b": 1}),
        persistence.update_conversation("signup", (-5, "x"), 1),
    )
    await persistence.update_user_data(2**40, {"a": 2})
    assert rows(tmp_path / "bot.db") == [
        ("bot_data", "", 3),
        ("chat_data", "-1001234567890", 2),
        ("conversations", '["signup",[-5,"x"]]', 4),
        ("user_data", str(2**40), 5),
    ]
    # A record deleted and stored again does not start over at a version it had before.
    await persistence.drop_chat_data(-1001234567890)
    await persistence.update_chat_data(-1001234567890, {"c": 1})
    assert ("chat_data", "-1001234567890", 6) in rows(tmp_path / "bot.db")
    await persistence.close()


async def test_versions_continue_after_the_highest_of_a_database_without_a_clock(
    tmp_path: Path,
) -> None:
    path = tmp_path / "bot.db"
    persistence = SQLitePersistence(path)
    for n in range(3):
        await persistence.update_user_data(1, {"n": n})
    await persistence.close()
    # As written by a release that counted versions per record.
    with sqlite3.connect(path) as connection:
        connection.execute("DELETE FROM botstate_meta WHERE name = 'clock'")
        connection.execute("UPDATE botstate_records SET version = 7")
    connection.close()

    again = SQLitePersistence(path)
    await again.update_user_data(2, {"n": 0})
    assert rows(path) == [("user_data", "1", 7), ("user_data", "2", 8)]
    await again.close()


async def test_a_batch_is_one_transaction_off_the_event_loop(tmp_path: Path) -> None:
    persistence = SQLitePersistence(tmp_path / "bot.db")
    await persistence.get_user_data()
    store = persistence.store
    assert isinstance(store, SQLiteStore)
    statements: list[str] = []
    threads: set[str] = set()
    connection = store._connection
    assert connection is not None
    connection.set_trace_callback(
        lambda sql: (
            statements.append(sql.split()[0]),
            threads.add(threading.current_thread().name),
        )
    )
    await asyncio.gather(*(persistence.update_user_data(n, {"n": n}) for n in range(100)))
    assert statements.count("BEGIN") == 1
    assert statements.count("COMMIT") == 1
    assert threading.current_thread().name not in threads
    await persistence.close()


async def test_the_database_and_its_journal_are_private(tmp_path: Path) -> None:
    persistence = SQLitePersistence(tmp_path / "bot.db")
    await persistence.update_user_data(1, {"a": 1})
    for path in tmp_path.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    await persistence.close()


async def test_synchronous_full_is_applied(tmp_path: Path) -> None:
    persistence = SQLitePersistence(tmp_path / "bot.db", synchronous="FULL")
    await persistence.get_user_data()
    store = persistence.store
    assert isinstance(store, SQLiteStore)
    assert store._connection is not None
    (level,) = store._connection.execute("PRAGMA synchronous").fetchone()
    assert level == 2  # FULL
    await persistence.close()
    with pytest.raises(ValueError, match="synchronous must be"):
        SQLitePersistence(tmp_path / "x.db", synchronous="OFF")  # type: ignore[arg-type]


async def test_a_newer_format_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    await SQLitePersistence(path).close()
    await SQLitePersistence(path).get_user_data()
    with sqlite3.connect(path) as connection:
        connection.execute(
            "UPDATE botstate_meta SET value = ? WHERE name = 'format_version'",
            (str(FORMAT_VERSION + 1),),
        )
    with pytest.raises(
        FormatVersionError, match=rf"bot\.db was written in botstate format {FORMAT_VERSION + 1}"
    ):
        await SQLitePersistence(path).get_user_data()


async def test_a_database_of_another_codec_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    first = SQLitePersistence(path)
    await first.update_user_data(1, {})
    await first.close()
    with sqlite3.connect(path) as connection:
        connection.execute("UPDATE botstate_meta SET value = 'json' WHERE name = 'codec'")
    with pytest.raises(CorruptDataError, match=r"encoded with codec 'json'.*codec='json'"):
        await SQLitePersistence(path).get_user_data()


@pytest.mark.parametrize("content", [b"", b"garbage" * 100, pickle.dumps({"user_data": {}})])
async def test_a_file_that_is_not_a_database_is_refused_and_kept(
    tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "bot.db"
    path.write_bytes(content)
    if not content:
        # SQLite takes an empty file for a new database; that is not data loss.
        persistence = SQLitePersistence(path)
        assert await persistence.get_user_data() == {}
        await persistence.close()
        return
    with pytest.raises(CorruptDataError, match=r"bot\.db .*SQLite database"):
        await SQLitePersistence(path).get_user_data()
    assert path.read_bytes() == content


async def test_another_process_sees_every_committed_cycle(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    persistence = SQLitePersistence(path)
    reader = (
        "import asyncio, botstate\n"
        f"p = botstate.SQLitePersistence({str(path)!r})\n"
        "print(sorted(asyncio.run(p.get_user_data())))\n"
    )
    for cycle in range(3):
        await asyncio.gather(
            *(persistence.update_user_data(cycle * 10 + n, {"n": n}) for n in range(3))
        )
        result = subprocess.run(
            [sys.executable, "-c", reader], capture_output=True, text=True, check=True
        )
        expected = sorted(c * 10 + n for c in range(cycle + 1) for n in range(3))
        assert result.stdout.strip() == str(expected)
    await persistence.close()


async def test_a_flush_that_fails_as_a_whole_logs_its_error_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "bot.db"
    persistence = SQLitePersistence(path, lock_timeout=0.2, on_flush=True)
    await persistence.update_user_data(0, {"v": 0})
    await persistence.flush()
    for user in range(1, 200):
        await persistence.update_user_data(user, {"v": user})

    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    with caplog.at_level(logging.WARNING), pytest.raises(StoreLockedError):
        await persistence.flush()
    other.execute("ROLLBACK")
    other.close()
    # One error stopped all 199 records: it is raised, not logged 198 times more.
    assert "also not stored" not in caplog.text

    await persistence.flush()
    reopened = SQLitePersistence(path)
    assert len(await reopened.get_user_data()) == 200
    await reopened.close()
    await persistence.close()


async def test_a_locked_database_raises_after_the_timeout_and_retries_later(
    tmp_path: Path,
) -> None:
    path = tmp_path / "bot.db"
    persistence = SQLitePersistence(path, lock_timeout=0.2)
    await persistence.update_user_data(1, {"v": 1})

    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    with pytest.raises(StoreLockedError, match=r"bot\.db stayed locked .* 0\.2 s"):
        await persistence.update_user_data(1, {"v": 2})
    other.execute("ROLLBACK")
    other.close()

    # The record that could not be written goes with the next write.
    await persistence.update_user_data(2, {"v": 1})
    reopened = SQLitePersistence(path)
    assert await reopened.get_user_data() == {1: {"v": 2}, 2: {"v": 1}}
    await reopened.close()
    await persistence.close()


def test_a_memory_database_path_points_to_memory_persistence() -> None:
    with pytest.raises(ValueError, match="use MemoryPersistence"):
        SQLitePersistence(":memory:")


async def test_another_applications_database_is_refused_and_untouched(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE customers (name TEXT)")
        connection.execute("INSERT INTO customers VALUES ('Ada')")
    before = path.read_bytes()
    with pytest.raises(CorruptDataError, match=r"app\.db is an SQLite database of another"):
        await SQLitePersistence(path).get_user_data()
    assert path.read_bytes() == before


@pytest.mark.parametrize("dropped", ["botstate_records", "botstate_meta"])
async def test_a_botstate_database_missing_a_table_is_refused(
    tmp_path: Path, dropped: str
) -> None:
    path = tmp_path / "bot.db"
    persistence = SQLitePersistence(path)
    await persistence.update_user_data(1, {"a": 1})
    await persistence.close()
    with sqlite3.connect(path) as connection:
        connection.execute(f"DROP TABLE {dropped}")
    with pytest.raises(CorruptDataError, match=rf"without its {dropped} table"):
        await SQLitePersistence(path).get_user_data()


async def test_an_emptied_format_stamp_with_records_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    persistence = SQLitePersistence(path)
    await persistence.update_user_data(1, {"a": 1})
    await persistence.close()
    with sqlite3.connect(path) as connection:
        connection.execute("DELETE FROM botstate_meta")
    with pytest.raises(CorruptDataError, match="lost its format stamp but 1 records"):
        await SQLitePersistence(path).get_user_data()


async def test_flush_and_close_after_a_failed_open_raise_botstates_error(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    path.write_bytes(b"not a database at all" * 50)
    persistence = SQLitePersistence(path)
    with pytest.raises(CorruptDataError):
        await persistence.get_user_data()
    with pytest.raises(CorruptDataError):
        await persistence.update_user_data(7, {"x": 1})
    with pytest.raises(CorruptDataError, match=r"bot\.db is not a usable SQLite database"):
        await persistence.flush()
    with pytest.raises(CorruptDataError):
        await persistence.close()


def test_processes_opening_a_new_database_at_once_all_succeed(tmp_path: Path) -> None:
    writer = (
        "import asyncio, sys, botstate\n"
        "async def main():\n"
        "    p = botstate.SQLitePersistence(sys.argv[1], lock_timeout=10)\n"
        "    await asyncio.gather(*(p.update_user_data(int(sys.argv[2]) * 100 + n, {}) "
        "for n in range(50)))\n"
        "    await p.close()\n"
        "asyncio.run(main())\n"
    )
    for round_number in range(2):
        path = tmp_path / f"race{round_number}.db"
        children = [
            subprocess.Popen([sys.executable, "-c", writer, str(path), str(n)]) for n in range(6)
        ]
        assert [child.wait(timeout=120) for child in children] == [0] * 6
        assert len(rows(path)) == 300


async def test_a_damaged_value_is_found_by_its_checksum(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    persistence = SQLitePersistence(path)
    await persistence.update_user_data(7, {"balance": 100})
    await persistence.update_user_data(8, {"balance": 200})
    await persistence.close()
    with sqlite3.connect(path) as connection:
        (value,) = connection.execute(
            "SELECT value FROM botstate_records WHERE key = '7'"
        ).fetchone()
        # One digit of the pickled number changes: still a valid pickle, another balance.
        damaged = bytes(value).replace(pickle.dumps(100)[2:-1], pickle.dumps(900)[2:-1])
        assert damaged != value
        assert pickle.loads(damaged) != pickle.loads(value)
        connection.execute("UPDATE botstate_records SET value = ? WHERE key = '7'", (damaged,))
    connection.close()
    with pytest.raises(CorruptDataError, match=r"user_data\[7\]: its checksum does not match"):
        await SQLitePersistence(path).get_user_data()
    skipping = SQLitePersistence(path, on_corrupt="skip")
    assert await skipping.get_user_data() == {8: {"balance": 200}}
    await skipping.close()


def write_old_format(path: Path, version: int) -> None:
    """A database as botstate format 1 (no crc column) or 2 wrote it: WITHOUT ROWID tables."""
    crc_column = ", crc INTEGER" if version == 2 else ""
    with sqlite3.connect(path) as connection:
        connection.execute(
            "CREATE TABLE botstate_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID"
        )
        connection.execute(
            "CREATE TABLE botstate_records (kind TEXT NOT NULL, key TEXT NOT NULL, value BLOB "
            f"NOT NULL, version INTEGER NOT NULL, updated REAL NOT NULL{crc_column}, "
            "PRIMARY KEY (kind, key)) WITHOUT ROWID"
        )
        connection.executemany(
            "INSERT INTO botstate_meta VALUES (?, ?)",
            [("format_version", str(version)), ("codec", "pickle"), ("created", "0")],
        )
        value = pickle.dumps({"old": True})
        row = ("user_data", "1", value, 1, 0)
        if version == 2:
            row += (zlib.crc32(value, zlib.crc32(b"user_data\x001\x00")),)
        marks = ", ".join("?" * len(row))
        connection.execute(f"INSERT INTO botstate_records VALUES ({marks})", row)
    connection.close()


@pytest.mark.parametrize("version", [1, 2])
async def test_an_older_format_is_upgraded_on_open(tmp_path: Path, version: int) -> None:
    path = tmp_path / "old.db"
    write_old_format(path, version)

    persistence = SQLitePersistence(path)
    assert await persistence.get_user_data() == {1: {"old": True}}
    await persistence.update_user_data(2, {"new": True})
    await persistence.close()
    with sqlite3.connect(path) as connection:
        stamp = dict(connection.execute("SELECT name, value FROM botstate_meta"))
        crcs = [crc for (crc,) in connection.execute("SELECT crc FROM botstate_records")]
        (schema,) = connection.execute(
            "SELECT sql FROM sqlite_master WHERE name = 'botstate_records'"
        ).fetchone()
        tables = [name for (name,) in connection.execute("SELECT name FROM sqlite_master")]
        (free_pages,) = connection.execute("PRAGMA freelist_count").fetchone()
    connection.close()
    assert free_pages == 0  # the old table's pages were given back
    assert stamp["format_version"] == str(FORMAT_VERSION) == "3"
    assert len(crcs) == 2
    assert None not in crcs
    assert "WITHOUT ROWID" not in schema
    assert "botstate_records_old" not in tables
    # The stored checksums are the ones format 3 checks: a damaged value is still found.
    with sqlite3.connect(path) as connection:
        connection.execute("UPDATE botstate_records SET value = ? WHERE key = '1'", (b"x",))
    connection.close()
    with pytest.raises(CorruptDataError, match=r"user_data\[1\]"):
        await SQLitePersistence(path).get_user_data()


async def test_a_stamp_without_its_codec_is_refused_before_any_upgrade(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    write_old_format(path, 2)
    with sqlite3.connect(path) as connection:
        connection.execute("DELETE FROM botstate_meta WHERE name = 'codec'")
    connection.close()
    before = path.read_bytes()
    with pytest.raises(CorruptDataError, match=r"old\.db: the botstate_meta table has no codec"):
        await SQLitePersistence(path).get_user_data()
    assert path.read_bytes() == before
