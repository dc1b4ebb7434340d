"""One record at a time: Persistence.get_record / update_record / drop_record and fsm keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from botstate import PersistenceInput, SQLitePersistence
from botstate.kinds import KINDS, check_key, describe, key_from_text, key_to_text
from botstate.stores.base import Change
from botstate.stores.sqlite import SQLiteStore

from .conftest import StoreFactory

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
