"""from_url: every scheme, bare paths recognised by content, masked passwords."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from botstate import MemoryPersistence, PicklePersistence, SQLitePersistence, from_url
from botstate.stores.sqlite import SQLiteStore
from botstate.urls import mask_url


async def test_sqlite_url_with_options(tmp_path: Path) -> None:
    persistence = from_url(f"sqlite://{tmp_path}/bot.db?synchronous=FULL&lock_timeout=2.5")
    assert isinstance(persistence, SQLitePersistence)
    assert isinstance(persistence.store, SQLiteStore)
    assert persistence.path == tmp_path / "bot.db"
    assert persistence.store.synchronous == "FULL"
    assert persistence.store.lock_timeout == 2.5


async def test_keyword_options_override_the_query(tmp_path: Path) -> None:
    persistence = from_url(f"pickle://{tmp_path}/bot?single_file=false", single_file=True)
    assert isinstance(persistence, PicklePersistence)
    assert persistence.single_file is True
    assert isinstance(from_url("memory://"), MemoryPersistence)


async def test_a_bare_path_is_recognised_by_its_contents(tmp_path: Path) -> None:
    database = SQLitePersistence(tmp_path / "state")
    await database.update_user_data(1, {})
    await database.close()
    assert isinstance(from_url(tmp_path / "state"), SQLitePersistence)

    (tmp_path / "bot.pickle").write_bytes(pickle.dumps({"user_data": {}}))
    assert isinstance(from_url(str(tmp_path / "bot.pickle")), PicklePersistence)

    (tmp_path / "multi_user_data").write_bytes(pickle.dumps({}))
    multi = from_url(tmp_path / "multi")
    assert isinstance(multi, PicklePersistence)
    assert multi.single_file is False


def test_unknown_things_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown store URL 'ftp://u:\*\*\*@host/x'"):
        from_url("ftp://u:secret@host/x")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match=r"notes\.txt is not a store botstate recognises"):
        from_url(tmp_path / "notes.txt")
    with pytest.raises(ValueError, match=r"missing\.db does not exist"):
        from_url(tmp_path / "missing.db")


def test_passwords_are_masked() -> None:
    assert mask_url("redis://:pw@localhost:6379/0") == "redis://:***@localhost:6379/0"
    assert mask_url("postgresql://bot:s3cr3t@db/x") == "postgresql://bot:***@db/x"
    assert mask_url("sqlite:///a/b.db") == "sqlite:///a/b.db"
