"""SQLitePersistence: rows, transactions, format stamps, other processes and locks."""

from __future__ import annotations

import asyncio
import pickle
import sqlite3
import stat
import subprocess
import sys
import threading
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


async def test_each_record_is_one_row_with_a_version(tmp_path: Path) -> None:
    persistence = SQLitePersistence(tmp_path / "bot.db")
    await asyncio.gather(
        persistence.update_user_data(2**40, {"a": 1}),
        persistence.update_chat_data(-1001234567890, {"c": 1}),
        persistence.update_bot_data({"b": 1}),
        persistence.update_conversation("signup", (-5, "x"), 1),
    )
    await persistence.update_user_data(2**40, {"a": 2})
    assert rows(tmp_path / "bot.db") == [
        ("bot_data", "", 1),
        ("chat_data", "-1001234567890", 1),
        ("conversations", '["signup",[-5,"x"]]', 1),
        ("user_data", str(2**40), 2),
    ]
    await persistence.close()


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
