"""The persistence contract, run against every store (see ``STORE_NAMES`` in conftest)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from botstate import EncodingError, PersistenceInput

from .conftest import StoreFactory

BIG_USER = 2**40 + 7
SUPERGROUP = -1001234567890
CALLBACK_DATA = ([("kb", 1700000000.25, {"b": {"page": 2}})], {"q": "kb"})


class CustomBotData:
    """A bot_data class as a bot would declare it in ContextTypes."""

    def __init__(self) -> None:
        self.signups = 0


class FakeContextTypes:
    bot_data = CustomBotData


async def test_empty_store_gives_empty_containers(stores: StoreFactory) -> None:
    persistence = stores.open()
    assert await persistence.get_user_data() == {}
    assert await persistence.get_chat_data() == {}
    assert await persistence.get_bot_data() == {}
    assert await persistence.get_callback_data() is None
    assert await persistence.get_conversations("any") == {}


async def test_bot_data_comes_from_the_context_types_factory_when_empty(
    stores: StoreFactory,
) -> None:
    persistence = stores.open(context_types=FakeContextTypes())
    bot_data = await persistence.get_bot_data()
    assert isinstance(bot_data, CustomBotData)
    assert bot_data.signups == 0


async def test_every_kind_comes_back_after_a_restart(stores: StoreFactory) -> None:
    first = stores.open()
    await asyncio.gather(
        first.update_user_data(BIG_USER, {"name": "Ada", "tags": {"x", "y"}}),
        first.update_user_data(3, {"n": 3}),
        first.update_chat_data(SUPERGROUP, {"title": "group", "pinned": (1, 2)}),
        first.update_bot_data({"signups": 7}),
        first.update_callback_data(CALLBACK_DATA),
        first.update_conversation("signup", (SUPERGROUP, BIG_USER), "AGE"),
        first.update_conversation("signup", (5, "inline"), 2),
        first.update_conversation("other", (1,), "X"),
    )
    await first.flush()

    second = stores.open()
    user_data = await second.get_user_data()
    assert user_data == {BIG_USER: {"name": "Ada", "tags": {"x", "y"}}, 3: {"n": 3}}
    assert all(type(key) is int for key in user_data)
    assert await second.get_chat_data() == {SUPERGROUP: {"title": "group", "pinned": (1, 2)}}
    assert await second.get_bot_data() == {"signups": 7}
    assert await second.get_conversations("signup") == {
        (SUPERGROUP, BIG_USER): "AGE",
        (5, "inline"): 2,
    }
    assert await second.get_conversations("other") == {(1,): "X"}


async def test_callback_data_keeps_tuples_and_floats(stores: StoreFactory) -> None:
    first = stores.open()
    await first.update_callback_data(CALLBACK_DATA)
    restored = await stores.open().get_callback_data()
    assert restored == CALLBACK_DATA
    assert restored is not None
    keyboard = restored[0][0]
    assert isinstance(keyboard, tuple)
    assert keyboard[1] == 1700000000.25


async def test_conversation_keys_stay_tuples_of_their_types(stores: StoreFactory) -> None:
    first = stores.open()
    await first.update_conversation("c", (SUPERGROUP, 42, "x"), 1)
    (key,) = (await stores.open().get_conversations("c")).keys()
    assert key == (SUPERGROUP, 42, "x")
    assert isinstance(key, tuple)
    assert [type(part) for part in key] == [int, int, str]


async def test_conversation_state_none_removes_it(stores: StoreFactory) -> None:
    first = stores.open()
    await first.update_conversation("c", (1, 1), "A")
    await first.update_conversation("c", (2, 2), "B")
    await first.update_conversation("c", (1, 1), None)
    assert await stores.open().get_conversations("c") == {(2, 2): "B"}


async def test_getters_hand_out_copies(stores: StoreFactory) -> None:
    persistence = stores.open()
    await persistence.update_user_data(1, {"items": [1, 2]})
    await persistence.update_bot_data({"count": 1})
    await persistence.update_callback_data(CALLBACK_DATA)

    user_data = await persistence.get_user_data()
    user_data[1]["items"].append(3)
    user_data[2] = {"new": True}
    (await persistence.get_bot_data())["count"] = 99
    callback = await persistence.get_callback_data()
    assert callback is not None
    callback[1]["q"] = "changed"

    assert await persistence.get_user_data() == {1: {"items": [1, 2]}}
    assert await persistence.get_bot_data() == {"count": 1}
    assert await persistence.get_callback_data() == CALLBACK_DATA
    assert await stores.open().get_user_data() == {1: {"items": [1, 2]}}


async def test_no_write_if_data_did_not_change(stores: StoreFactory) -> None:
    persistence = stores.open()
    await persistence.update_user_data(1, {"a": 1})
    await persistence.update_bot_data({"b": 2})
    writes_before = len(stores.writes)

    await persistence.update_user_data(1, {"a": 1})
    await persistence.update_bot_data({"b": 2})
    assert len(stores.writes) == writes_before

    restarted = stores.open()
    await restarted.get_user_data()
    await restarted.get_bot_data()
    await restarted.update_user_data(1, {"a": 1})
    await restarted.update_bot_data({"b": 2})
    assert len(stores.writes) == writes_before

    await restarted.update_user_data(1, {"a": 2})
    assert stores.writes[-1] == [("user_data", 1)]


async def test_updates_that_arrive_together_are_one_write(stores: StoreFactory) -> None:
    persistence = stores.open()
    await persistence.get_user_data()
    await asyncio.gather(
        *(persistence.update_user_data(user, {"n": user}) for user in range(100)),
        persistence.update_bot_data({"users": 100}),
        *(persistence.update_conversation("c", (user,), "S") for user in range(50)),
    )
    assert len(stores.writes) == 1
    assert len(stores.writes[0]) == 151
    assert len(await stores.open().get_user_data()) == 100


async def test_a_write_holds_only_the_changed_records(stores: StoreFactory) -> None:
    persistence = stores.open()
    await asyncio.gather(*(persistence.update_user_data(u, {"n": u}) for u in range(20)))
    await asyncio.gather(
        *(persistence.update_user_data(u, {"n": u + (u == 5)}) for u in range(20))
    )
    assert stores.writes[-1] == [("user_data", 5)]


@pytest.mark.parametrize("on_flush", [False, True])
async def test_drop_removes_the_record_for_good(stores: StoreFactory, on_flush: bool) -> None:
    setup = stores.open()
    await setup.update_user_data(1, {"a": 1})
    await setup.update_chat_data(-5, {"c": 1})
    await setup.update_user_data(2, {"b": 2})

    persistence = stores.open(on_flush=on_flush)
    await persistence.get_user_data()
    await persistence.drop_user_data(1)
    await persistence.drop_chat_data(-5)
    await persistence.flush()

    restarted = stores.open()
    assert await restarted.get_user_data() == {2: {"b": 2}}
    assert await restarted.get_chat_data() == {}


async def test_drop_then_update_in_one_flush_keeps_the_update(stores: StoreFactory) -> None:
    persistence = stores.open(on_flush=True)
    await persistence.update_user_data(1, {"old": True})
    await persistence.drop_user_data(1)
    await persistence.update_user_data(1, {"new": True})
    await persistence.flush()
    assert await stores.open().get_user_data() == {1: {"new": True}}


async def test_on_flush_writes_nothing_until_flush(stores: StoreFactory) -> None:
    persistence = stores.open(on_flush=True)
    await persistence.update_user_data(1, {"a": 1})
    await persistence.update_bot_data({"b": 1})
    await persistence.update_conversation("c", (1,), "S")
    assert stores.writes == []
    assert await stores.open().get_user_data() == {}
    # The persistence itself already shows what it will write.
    assert await persistence.get_user_data() == {1: {"a": 1}}

    await persistence.flush()
    assert len(stores.writes) == 1
    restarted = stores.open()
    assert await restarted.get_user_data() == {1: {"a": 1}}
    assert await restarted.get_conversations("c") == {(1,): "S"}


async def test_on_flush_can_be_switched_after_construction(stores: StoreFactory) -> None:
    persistence = stores.open()
    persistence.on_flush = True
    await persistence.update_user_data(1, {"a": 1})
    assert stores.writes == []
    persistence.on_flush = False
    # The change kept meanwhile goes with the next write; it does not wait for a flush.
    await persistence.update_user_data(2, {"b": 2})
    assert await stores.open().get_user_data() == {1: {"a": 1}, 2: {"b": 2}}
    assert len(stores.writes) == 1


async def test_a_change_written_at_once_wins_over_an_older_one_kept_in_memory(
    stores: StoreFactory,
) -> None:
    persistence = stores.open(on_flush=True)
    await persistence.update_user_data(1, {"v": "old, kept in memory"})
    persistence.on_flush = False
    await persistence.update_user_data(1, {"v": "new, written at once"})
    assert await persistence.get_user_data() == {1: {"v": "new, written at once"}}
    await persistence.flush()
    assert await stores.open().get_user_data() == {1: {"v": "new, written at once"}}


@pytest.mark.parametrize("kind", ["user_data", "chat_data", "bot_data", "callback_data"])
async def test_a_kind_switched_off_is_not_written_and_reads_empty_later(
    stores: StoreFactory, kind: str
) -> None:
    switched_off = PersistenceInput(**{kind: False})
    persistence = stores.open(store_data=switched_off)
    await persistence.update_user_data(1, {"a": 1})
    await persistence.update_chat_data(2, {"b": 2})
    await persistence.update_bot_data({"c": 3})
    await persistence.update_callback_data(CALLBACK_DATA)
    await persistence.flush()
    assert all(written_kind != kind for batch in stores.writes for written_kind, _ in batch)

    # A getter of a switched-off kind gives the empty container.
    empty: dict[str, Any] = {
        "user_data": {},
        "chat_data": {},
        "bot_data": {},
        "callback_data": None,
    }
    getter = getattr(persistence, f"get_{kind}")
    assert await getter() == empty[kind]

    everything = stores.open()
    assert await getattr(everything, f"get_{kind}")() == empty[kind]
    stored_others = {
        "user_data": await everything.get_user_data(),
        "chat_data": await everything.get_chat_data(),
        "bot_data": await everything.get_bot_data(),
        "callback_data": await everything.get_callback_data(),
    }
    expected = {"user_data": {1: {"a": 1}}, "chat_data": {2: {"b": 2}}}
    expected |= {"bot_data": {"c": 3}, "callback_data": CALLBACK_DATA}
    expected[kind] = empty[kind]
    assert stored_others == expected


async def test_a_kind_switched_off_is_not_loaded_and_survives_in_the_store(
    stores: StoreFactory,
) -> None:
    setup = stores.open()
    await setup.update_user_data(1, {"kept": True})
    await setup.update_chat_data(2, {"c": 1})

    partial = stores.open(store_data=PersistenceInput(user_data=False))
    assert await partial.get_user_data() == {}
    await partial.update_chat_data(2, {"c": 2})

    assert await stores.open().get_user_data() == {1: {"kept": True}}


async def test_a_value_that_cannot_be_encoded_fails_only_its_record(
    stores: StoreFactory,
) -> None:
    persistence = stores.open()
    await persistence.update_user_data(42, {"cart": ["apple"]})

    bad = {"cart": ["apple", "pear", "plum", threading.Lock()]}
    results = await asyncio.gather(
        persistence.update_user_data(42, bad),
        persistence.update_user_data(7, {"fine": True}),
        persistence.update_bot_data({"fine": True}),
        return_exceptions=True,
    )
    error = results[0]
    assert isinstance(error, EncodingError)
    assert "user_data[42]['cart'][3]" in str(error)
    assert error.kind == "user_data"
    assert error.key == 42
    assert error.path == "['cart'][3]"
    assert results[1:] == [None, None]

    restarted = stores.open()
    assert await restarted.get_user_data() == {42: {"cart": ["apple"]}, 7: {"fine": True}}
    assert await restarted.get_bot_data() == {"fine": True}


async def test_a_bad_value_is_reported_every_time_it_is_written(stores: StoreFactory) -> None:
    persistence = stores.open()
    for _ in range(3):
        with pytest.raises(EncodingError, match=r"bot_data\['lock'\]"):
            await persistence.update_bot_data({"lock": threading.Lock()})


async def test_encoding_errors_with_on_flush_surface_at_flush(stores: StoreFactory) -> None:
    persistence = stores.open(on_flush=True)
    await persistence.update_user_data(1, {"ok": 1})
    await persistence.update_user_data(2, {"bad": lambda: None})
    with pytest.raises(EncodingError, match=r"user_data\[2\]\['bad'\]"):
        await persistence.flush()
    assert await stores.open().get_user_data() == {1: {"ok": 1}}


class NeedsTwoArguments(Exception):
    """An exception class that pickles but does not unpickle (its __init__ takes two)."""

    def __init__(self, order: int, reason: str) -> None:
        super().__init__(f"order {order}: {reason}")


async def test_a_value_that_does_not_load_back_fails_only_its_record(
    stores: StoreFactory,
) -> None:
    persistence = stores.open()
    await persistence.update_user_data(3, {"ok": "before"})
    results = await asyncio.gather(
        persistence.update_user_data(3, {"error": NeedsTwoArguments(1, "declined")}),
        persistence.update_user_data(4, {"ok": 4}),
        return_exceptions=True,
    )
    assert isinstance(results[0], EncodingError)
    assert "user_data[3]['error']" in str(results[0])
    assert results[1] is None
    await persistence.update_user_data(5, {"ok": 5})
    await persistence.flush()

    restarted = stores.open()
    assert await restarted.get_user_data() == {3: {"ok": "before"}, 4: {"ok": 4}, 5: {"ok": 5}}


async def test_keys_of_the_wrong_type_are_refused(stores: StoreFactory) -> None:
    persistence = stores.open()
    with pytest.raises(TypeError, match="user_data keys must be int"):
        await persistence.update_user_data("42", {})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="tuple of int or str"):
        await persistence.update_conversation("c", [1, 2], "S")  # type: ignore[arg-type]


async def test_update_interval_is_read_only(stores: StoreFactory) -> None:
    persistence = stores.open(update_interval=5)
    assert persistence.update_interval == 5
    with pytest.raises(AttributeError, match="read-only"):
        persistence.update_interval = 10  # type: ignore[misc]


async def test_the_store_loads_one_record_by_its_key(stores: StoreFactory) -> None:
    persistence = stores.open()
    await asyncio.gather(
        persistence.update_user_data(42, {"a": 1}),
        persistence.update_user_data(420, {"b": 2}),
        persistence.update_bot_data({"c": 3}),
        persistence.update_conversation("c", (4, "x"), "S"),
    )
    store = persistence.store

    async def one(kind: str, key: object) -> object:
        record = await persistence._call(store.load_record, kind, key, None)
        return None if record is None else (record.key, record.value)

    assert await one("user_data", 42) == (42, {"a": 1})
    assert await one("user_data", 4) is None
    assert await one("bot_data", None) == (None, {"c": 3})
    assert await one("callback_data", None) is None
    assert await one("conversations", ("c", (4, "x"))) == (("c", (4, "x")), "S")
    assert await one("conversations", ("c", (4,))) is None


async def test_set_bot_refuses_a_bot_without_callback_cache(stores: StoreFactory) -> None:
    persistence = stores.open()
    with pytest.raises(TypeError, match="ExtBot"):
        persistence.set_bot(object())
    without_callbacks = stores.open(store_data=PersistenceInput(callback_data=False))
    bot = object()
    without_callbacks.set_bot(bot)
    assert without_callbacks.bot is bot
