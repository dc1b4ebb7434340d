"""One record at a time: Persistence.get_record / update_record / drop_record and fsm keys."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from botstate import ConflictError, PersistenceInput, SQLitePersistence, StoreLockedError
from botstate.kinds import KINDS, check_key, describe, key_from_text, key_to_text
from botstate.persistence import Persistence
from botstate.stores.base import Change
from botstate.stores.sqlite import SQLiteStore

from .conftest import STORE_NAMES, VERSIONED_STORE_NAMES, StoreFactory, store_factory

FSM_KEY = (700000001, -1001234567890, 2**40, 17, "biz-1", "default")


async def test_a_record_comes_back_after_a_restart(stores: StoreFactory) -> None:
    await stores.open().update_record("fsm", FSM_KEY, {"state": "S", "data": {"n": 1}})
    assert await stores.open().get_record("fsm", FSM_KEY) == {"state": "S", "data": {"n": 1}}


async def test_a_record_not_stored_is_none(stores: StoreFactory) -> None:
    persistence = stores.open()
    await persistence.update_record("fsm", FSM_KEY, {"x": 1})
    other = (*FSM_KEY[:-1], "other destiny")
    assert await persistence.get_record("fsm", other) is None


async def test_get_record_hands_out_copies(stores: StoreFactory) -> None:
    persistence = stores.open()
    await persistence.update_record("user_data", 5, {"items": [1]})
    record = await persistence.get_record("user_data", 5)
    assert isinstance(record, dict)
    record["items"].append(2)
    assert await persistence.get_record("user_data", 5) == {"items": [1]}


async def test_dropped_record_is_gone(stores: StoreFactory) -> None:
    persistence = stores.open()
    await persistence.update_record("fsm", FSM_KEY, {"a": 1})
    await persistence.drop_record("fsm", FSM_KEY)
    assert await persistence.get_record("fsm", FSM_KEY) is None
    assert await stores.open().get_record("fsm", FSM_KEY) is None


async def test_get_record_sees_changes_kept_for_flush(stores: StoreFactory) -> None:
    persistence = stores.open(on_flush=True)
    await persistence.update_record("fsm", FSM_KEY, {"a": 1})
    assert stores.writes == []
    assert await persistence.get_record("fsm", FSM_KEY) == {"a": 1}
    await persistence.drop_record("fsm", FSM_KEY)
    assert await persistence.get_record("fsm", FSM_KEY) is None


async def test_unchanged_record_is_not_written_again(stores: StoreFactory) -> None:
    persistence = stores.open()
    await persistence.update_record("fsm", FSM_KEY, {"a": 1})
    await persistence.update_record("fsm", FSM_KEY, {"a": 1})
    assert stores.writes == [[("fsm", FSM_KEY)]]


async def test_record_of_a_kind_switched_off_is_neither_read_nor_written(
    stores: StoreFactory,
) -> None:
    persistence = stores.open(store_data=PersistenceInput(user_data=False))
    await persistence.update_record("user_data", 5, {"a": 1})
    await persistence.drop_record("user_data", 5)
    assert stores.writes == []
    await stores.open().update_record("user_data", 5, {"a": 1})
    assert await persistence.get_record("user_data", 5) is None


async def test_fsm_records_stay_out_of_python_telegram_bot_kinds(stores: StoreFactory) -> None:
    persistence = stores.open()
    await persistence.update_record("fsm", FSM_KEY, {"state": "S", "data": {}})
    await persistence.update_user_data(FSM_KEY[2], {"u": 1})
    await persistence.update_conversation("c", (FSM_KEY[1], FSM_KEY[2]), "A")

    restarted = stores.open()
    assert await restarted.get_user_data() == {FSM_KEY[2]: {"u": 1}}
    assert await restarted.get_chat_data() == {}
    assert await restarted.get_conversations("c") == {(FSM_KEY[1], FSM_KEY[2]): "A"}
    assert await restarted.get_record("fsm", FSM_KEY) == {"state": "S", "data": {}}


async def test_record_key_is_checked(stores: StoreFactory) -> None:
    persistence = stores.open()
    with pytest.raises(TypeError, match=r"fsm records are keyed by \(bot id, chat id"):
        await persistence.update_record("fsm", (1, 2, 3), {})
    with pytest.raises(TypeError, match="user_data keys must be int ids"):
        await persistence.get_record("user_data", "5")  # type: ignore[arg-type]


async def test_walking_every_kind_copies_fsm_records_too(
    stores: StoreFactory, tmp_path: Path
) -> None:
    source = stores.open()
    await source.update_user_data(1, {"u": 1})
    await source.update_record("fsm", FSM_KEY, {"state": "S", "data": {"n": 1}})
    await source.close()

    # What a tool that moves a whole store does: load each kind, write it elsewhere.
    store = stores.open().store
    target = SQLiteStore(tmp_path / "copy.db")
    changes = [
        Change(kind, record.key, record.value, target.codec.encode(record.value))
        for kind in KINDS
        for record in store.load(kind, None)
    ]
    target.write(changes, None)
    target.close()
    store.close()

    copy = SQLitePersistence(tmp_path / "copy.db")
    assert await copy.get_user_data() == {1: {"u": 1}}
    assert await copy.get_record("fsm", FSM_KEY) == {"state": "S", "data": {"n": 1}}
    await copy.close()


# -- compare-and-set ----------------------------------------------------------------------------


async def test_stores_say_whether_they_check_versions(stores: StoreFactory) -> None:
    assert stores.open().store.checks_versions == (stores.name in VERSIONED_STORE_NAMES)


@pytest.fixture(params=[name for name in STORE_NAMES if name not in VERSIONED_STORE_NAMES])
async def unversioned_stores(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[StoreFactory]:
    async with store_factory(request.param, tmp_path) as factory:
        yield factory


async def test_stores_without_shared_versions_give_none_and_refuse_a_version(
    unversioned_stores: StoreFactory,
) -> None:
    persistence = unversioned_stores.open()
    await persistence.update_record("fsm", FSM_KEY, {"a": 1})
    assert await persistence.get_versioned_record("fsm", FSM_KEY) == ({"a": 1}, None)
    with pytest.raises(ValueError, match="keeps no record versions shared between processes"):
        await persistence.update_record("fsm", FSM_KEY, {"a": 2}, version=1)
    with pytest.raises(ValueError, match="cannot check version="):
        await persistence.drop_record("fsm", FSM_KEY, version=1)
    assert await persistence.get_record("fsm", FSM_KEY) == {"a": 1}


async def test_a_write_at_the_version_read_is_stored(versioned_stores: StoreFactory) -> None:
    persistence = versioned_stores.open()
    assert await persistence.get_versioned_record("fsm", FSM_KEY) == (None, 0)
    await persistence.update_record("fsm", FSM_KEY, {"a": 1}, version=0)
    value, version = await persistence.get_versioned_record("fsm", FSM_KEY)
    assert value == {"a": 1}
    assert isinstance(version, int)
    assert version > 0

    await persistence.update_record("fsm", FSM_KEY, {"a": 2}, version=version)
    value, newer = await persistence.get_versioned_record("fsm", FSM_KEY)
    assert value == {"a": 2}
    assert newer is not None
    assert newer > version
    await persistence.drop_record("fsm", FSM_KEY, version=newer)
    assert await versioned_stores.open().get_versioned_record("fsm", FSM_KEY) == (None, 0)


async def read_and_replaced(stores: StoreFactory) -> tuple[Persistence[Any, Any, Any], int]:
    """A process that read FSM_KEY's record at the version returned, which another replaced."""
    first, second = stores.open(), stores.open()
    await first.update_record("fsm", FSM_KEY, {"a": 1})
    _, version = await first.get_versioned_record("fsm", FSM_KEY)
    await second.update_record("fsm", FSM_KEY, {"b": 2})
    assert version is not None
    return first, version


async def test_a_write_at_a_version_another_process_replaced_stores_nothing(
    versioned_stores: StoreFactory,
) -> None:
    # The default on_conflict="keep" of the server stores does not apply to a compare-and-set.
    first, version = await read_and_replaced(versioned_stores)
    _, stored = await versioned_stores.open().get_versioned_record("fsm", FSM_KEY)

    with pytest.raises(
        ConflictError,
        match=rf"fsm\[.*\] was not stored: it was read at version {version}, and another "
        rf"process \(or task\) has changed it since \(stored version now {stored}, .*Read it "
        "again and repeat the change",
    ):
        await first.update_record("fsm", FSM_KEY, {"a": 1, "c": 3}, version=version)
    assert await versioned_stores.open().get_record("fsm", FSM_KEY) == {"b": 2}

    # Read again, the change goes through; the refused one is not tried again later.
    value, version = await first.get_versioned_record("fsm", FSM_KEY)
    assert isinstance(value, dict)
    await first.update_record("fsm", FSM_KEY, {**value, "c": 3}, version=version)
    await first.flush()
    assert await versioned_stores.open().get_record("fsm", FSM_KEY) == {"b": 2, "c": 3}


async def test_creating_a_record_another_process_created_meanwhile_is_refused(
    versioned_stores: StoreFactory,
) -> None:
    first, second = versioned_stores.open(), versioned_stores.open()
    assert await first.get_versioned_record("fsm", FSM_KEY) == (None, 0)
    await second.update_record("fsm", FSM_KEY, {"b": 2})
    with pytest.raises(ConflictError, match="it was read at version 0"):
        await first.update_record("fsm", FSM_KEY, {"a": 1}, version=0)
    assert await first.get_record("fsm", FSM_KEY) == {"b": 2}


async def test_a_record_deleted_and_created_again_is_not_taken_for_the_one_read(
    versioned_stores: StoreFactory,
) -> None:
    first, second = versioned_stores.open(), versioned_stores.open()
    await first.update_record("fsm", FSM_KEY, {"a": 1})
    _, version = await first.get_versioned_record("fsm", FSM_KEY)
    await second.drop_record("fsm", FSM_KEY)
    await second.update_record("fsm", FSM_KEY, {"b": 2})
    with pytest.raises(ConflictError, match=f"it was read at version {version}"):
        await first.update_record("fsm", FSM_KEY, {"a": 2}, version=version)
    assert await first.get_record("fsm", FSM_KEY) == {"b": 2}


async def test_a_drop_at_a_replaced_version_is_refused_and_one_already_gone_is_not(
    versioned_stores: StoreFactory,
) -> None:
    first, version = await read_and_replaced(versioned_stores)
    with pytest.raises(ConflictError, match="was not stored"):
        await first.drop_record("fsm", FSM_KEY, version=version)
    assert await first.get_record("fsm", FSM_KEY) == {"b": 2}

    _, version = await first.get_versioned_record("fsm", FSM_KEY)
    await versioned_stores.open().drop_record("fsm", FSM_KEY)
    await first.drop_record("fsm", FSM_KEY, version=version)
    assert await versioned_stores.open().get_versioned_record("fsm", FSM_KEY) == (None, 0)


async def test_a_write_at_the_version_read_finding_its_own_value_is_no_conflict(
    versioned_stores: StoreFactory,
) -> None:
    # As when a write is sent again after its answer was lost.
    first, second = versioned_stores.open(), versioned_stores.open()
    _, version = await first.get_versioned_record("fsm", FSM_KEY)
    await second.update_record("fsm", FSM_KEY, {"same": 1})
    await first.update_record("fsm", FSM_KEY, {"same": 1}, version=version)
    assert await versioned_stores.open().get_record("fsm", FSM_KEY) == {"same": 1}


async def test_with_on_flush_there_is_no_version_to_check(
    versioned_stores: StoreFactory,
) -> None:
    persistence = versioned_stores.open(on_flush=True)
    await versioned_stores.open().update_record("fsm", FSM_KEY, {"a": 1})
    assert await persistence.get_versioned_record("fsm", FSM_KEY) == ({"a": 1}, None)


async def test_a_compare_and_set_whose_write_failed_is_dropped_when_tried_again_too_late(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "bot.db"
    first, second = SQLitePersistence(path, lock_timeout=0.1), SQLitePersistence(path)
    await first.update_record("fsm", FSM_KEY, {"a": 1})
    _, version = await first.get_versioned_record("fsm", FSM_KEY)
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    with pytest.raises(StoreLockedError):
        await first.update_record("fsm", FSM_KEY, {"a": 2}, version=version)
    blocker.execute("ROLLBACK")
    blocker.close()

    await second.update_record("fsm", FSM_KEY, {"b": 2})
    with caplog.at_level(logging.WARNING, logger="botstate"):
        await first.update_user_data(1, {"u": 1})  # tries the failed change again
    assert await second.get_record("fsm", FSM_KEY) == {"b": 2}
    assert await second.get_user_data() == {1: {"u": 1}}
    assert (
        f"dropped a change whose first write had failed: {path}: fsm[(700000001, " in caplog.text
    )
    assert f"was not stored: it was read at version {version}" in caplog.text
    await first.close()
    await second.close()


@pytest.mark.parametrize("version", [-1, 1.0, "1"])
async def test_a_version_that_is_no_stored_version_is_refused(
    versioned_stores: StoreFactory, version: object
) -> None:
    with pytest.raises(ValueError, match="version must be a stored version, an int >= 0"):
        await versioned_stores.open().update_record("fsm", FSM_KEY, {}, version=version)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("key", "text"),
    [
        (FSM_KEY, '[700000001,-1001234567890,1099511627776,17,"biz-1","default"]'),
        ((1, 2, 3, None, None, "default"), '[1,2,3,null,null,"default"]'),
        ((1, -2, 3, None, "ü:x", "dé"), '[1,-2,3,null,"ü:x","dé"]'),
    ],
)
def test_fsm_key_text_keeps_every_field_and_its_type(key: object, text: str) -> None:
    assert key_to_text("fsm", key) == text  # type: ignore[arg-type]
    back = key_from_text("fsm", text)
    assert back == key
    assert isinstance(back, tuple)
    assert [type(part) for part in back] == [type(part) for part in key]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "key",
    [
        (1, 2, 3, None, None),
        (1, 2, 3, None, None, "default", "extra"),
        (1, 2, "3", None, None, "default"),
        (1, 2, 3, True, None, "default"),
        (1, 2, 3, None, 5, "default"),
        (1, 2, 3, None, None, None),
        [1, 2, 3, None, None, "default"],
    ],
)
def test_fsm_key_with_a_wrong_field_is_refused(key: object) -> None:
    with pytest.raises(TypeError, match="fsm records are keyed by"):
        check_key("fsm", key)


@pytest.mark.parametrize(
    "text", ["", "[1,2,3]", '{"a":1}', '[1,2,3,null,null,"default",1]', "[1,2,3,null,null,7]"]
)
def test_fsm_key_text_that_is_not_a_key_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="fsm"):
        key_from_text("fsm", text)


def test_fsm_record_is_described_with_its_key() -> None:
    assert describe("fsm", FSM_KEY) == (
        "fsm[(700000001, -1001234567890, 1099511627776, 17, 'biz-1', 'default')]"
    )
