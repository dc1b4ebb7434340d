"""The JSON codec: its notation, exact round trips of the types bots keep, and its refusals."""

from __future__ import annotations

import json
import sys
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from enum import Enum, Flag, IntEnum
from pathlib import Path
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

import pytest
from telegram import ChatMemberOwner, User
from telegram.ext import ExtBot

from botstate import (
    CorruptDataError,
    EncodingError,
    JSONCodec,
    JSONPersistence,
    SQLitePersistence,
    UnsafeDataError,
)
from botstate.codecs.json import MAX_DEPTH
from botstate.testing import OfflineRequest

from .test_telegram import a_message

BERLIN = ZoneInfo("Europe/Berlin")
SUPERGROUP = -1001234567890
THIS_MODULE = __name__


class Step(Enum):
    """Conversation states as bots often declare them."""

    NAME = "name"
    AGE = "age"


class Level(IntEnum):
    LOW = 1
    HIGH = 2


class Rights(Flag):
    READ = 1
    WRITE = 2


@dataclass
class Cart:
    items: list[str] = field(default_factory=list)
    total: Decimal = Decimal(0)


class Profile:
    def __init__(self, name: str) -> None:
        self.name = name
        self.seen = {date(2024, 1, 2)}


class Counter(dict[str, int]):
    """A dict subclass: its items live outside __dict__."""


def codec(**options: Any) -> JSONCodec:
    return JSONCodec(allow=[THIS_MODULE], **options)


def round_trip(value: object, **options: Any) -> Any:
    json_codec = codec(**options)
    return json_codec.decode(json_codec.encode(value))


# -- the notation -------------------------------------------------------------------------------


def test_the_notation_is_plain_json_with_dollar_tags() -> None:
    value = {"name": "Ada", "ids": (1, 2), "tags": {"b", "a"}, 42: [None, True, 1.5]}
    text = JSONCodec().encode(value).decode()
    assert json.loads(text) == {
        "$dict": [
            ["name", "Ada"],
            ["ids", {"$tuple": [1, 2]}],
            ["tags", {"$set": ["a", "b"]}],
            [42, [None, True, 1.5]],
        ]
    }
    assert JSONCodec().encode({"a": [1, 2]}) == b'{"a":[1,2]}'


def test_int_and_str_keys_stay_two_distinct_keys() -> None:
    restored = round_trip({7: "int", "7": "str", (7,): "tuple", 7.5: "float", None: "none"})
    assert restored == {7: "int", "7": "str", (7,): "tuple", 7.5: "float", None: "none"}
    assert [type(key) for key in restored] == [int, str, tuple, float, type(None)]


def test_negative_64_bit_chat_ids_stay_ints() -> None:
    ids = {SUPERGROUP: "group", -(2**63): "lowest", 2**64 - 1: "highest"}
    assert round_trip(ids) == ids
    assert all(type(key) is int for key in round_trip(ids))


def test_containers_keep_their_types() -> None:
    value = [(1, [2, (3,)]), {frozenset({1, 2}), (4, 5)}, frozenset({"x"}), [], (), set()]
    restored = round_trip(value)
    assert restored == value
    assert [type(part) for part in restored] == [tuple, set, frozenset, list, tuple, set]
    assert type(restored[0][1][1]) is tuple


def test_dict_keys_starting_with_a_dollar_are_not_mistaken_for_notation() -> None:
    value = {"$tuple": [1, 2], "$price": 5}
    assert round_trip(value) == value
    assert round_trip({"$bot": None}) == {"$bot": None}


def test_scalars_round_trip_exactly() -> None:
    value = {
        "nan": float("nan"),
        "inf": float("inf"),
        "minus_zero": -0.0,
        "float": 0.1 + 0.2,
        "bytes": b"\x00\xff binary",
        "decimal": Decimal("1.10"),
        "decimal_nan": Decimal("NaN"),
        "uuid": UUID("12345678-1234-5678-1234-567812345678"),
        "delta": timedelta(days=-3, seconds=5, microseconds=7),
        "date": date(2024, 2, 29),
        "big": 2**100,
        "surrogate": "\ud800 lone",
    }
    restored = round_trip(value)
    assert repr(restored) == repr(value)
    assert str(restored["decimal"]) == "1.10"


def test_sets_are_written_in_a_stable_order() -> None:
    assert JSONCodec().encode({"c", "a", "b"}) == b'{"$set":["a","b","c"]}'


# -- dates and time zones -----------------------------------------------------------------------


def test_tz_aware_datetimes_keep_their_time_zone() -> None:
    values = [
        datetime(2024, 5, 1, 9, 30),
        datetime(2024, 5, 1, 9, 30, 0, 123456, tzinfo=timezone.utc),
        datetime(2024, 5, 1, 9, 30, tzinfo=timezone(timedelta(hours=5, minutes=30))),
        datetime(2024, 5, 1, 9, 30, tzinfo=BERLIN),
        # The repeated hour when clocks go back: the second 02:30 (fold=1) stays the second.
        datetime(2024, 10, 27, 2, 30, tzinfo=BERLIN, fold=1),
        datetime(2024, 10, 27, 2, 30, tzinfo=BERLIN),
        # A wall time that does not exist (clocks skip 02:00 to 03:00) stays as written.
        datetime(2024, 3, 31, 2, 30, tzinfo=BERLIN),
    ]
    restored = round_trip(values)
    for before, after in zip(values, restored, strict=True):
        assert after == before
        assert after.tzinfo == before.tzinfo
        assert after.utcoffset() == before.utcoffset()
        assert (after.replace(tzinfo=None), after.fold) == (
            before.replace(tzinfo=None),
            before.fold,
        )
    assert restored[3].tzinfo is BERLIN


def test_a_zone_is_written_as_offset_and_key() -> None:
    text = JSONCodec().encode(datetime(2024, 5, 1, 9, 30, tzinfo=BERLIN)).decode()
    assert text == '{"$datetime":"2024-05-01T09:30:00+02:00[Europe/Berlin]"}'


def test_times_keep_their_zone() -> None:
    values = [time(9, 30), time(9, 30, 1, 5, tzinfo=timezone(timedelta(hours=-3))), time(8)]
    values.append(time(9, tzinfo=BERLIN))
    restored = round_trip(values)
    assert restored == values
    assert [value.tzinfo for value in restored] == [value.tzinfo for value in values]


def test_a_time_zone_json_cannot_keep_exactly_is_refused() -> None:
    named = datetime(2024, 1, 1, tzinfo=timezone(timedelta(hours=1), "CET"))
    with pytest.raises(EncodingError, match=r"at \['when'\].*named 'CET'"):
        JSONCodec().encode({"when": named})

    class OwnZone(timezone.__base__):  # type: ignore[name-defined,misc]
        def utcoffset(self, dt: object) -> timedelta:
            return timedelta(0)

    with pytest.raises(EncodingError, match=r"time zone \(.*OwnZone\) cannot be written"):
        JSONCodec().encode(datetime(2024, 1, 1, tzinfo=OwnZone()))


# -- enums and plain objects --------------------------------------------------------------------


def test_enum_members_round_trip_by_name() -> None:
    value = {"step": Step.AGE, "level": Level.HIGH, "rights": Rights.READ | Rights.WRITE}
    restored = round_trip(value)
    assert restored == value
    assert restored["step"] is Step.AGE
    assert restored["level"] is Level.HIGH
    assert type(restored["rights"]) is Rights
    text = codec().encode(Step.AGE).decode()
    assert text == f'{{"$enum":"{THIS_MODULE}:Step.AGE"}}'


def test_an_enum_of_a_module_not_allowed_is_refused_when_written() -> None:
    with pytest.raises(
        EncodingError, match=rf"test_json_codec.Step at \['state'\].*allow=\['{THIS_MODULE}'\]"
    ):
        JSONCodec().encode({"state": Step.NAME})


def test_loading_never_imports_a_module_the_allow_list_does_not_name() -> None:
    # Importing the standard library's ``this`` prints a poem: an import would be visible.
    assert "this" not in sys.modules
    for notation in (
        {"$enum": "this:Poem.LINE"},
        {"$enum": ["this:Poem", 1]},
        {"$object": ["this:Poem", {}]},
        {"$telegram": ["this:Poem", {}]},
    ):
        with pytest.raises(UnsafeDataError, match=r"refused to load this\.Poem"):
            JSONCodec().decode(json.dumps(notation).encode())
    assert "this" not in sys.modules


def test_plain_objects_of_allowed_classes_round_trip() -> None:
    value = {"cart": Cart(["tea"], Decimal("3.50")), "profile": Profile("Ada")}
    restored = round_trip(value)
    assert restored["cart"] == Cart(["tea"], Decimal("3.50"))
    assert type(restored["profile"]) is Profile
    assert vars(restored["profile"]) == {"name": "Ada", "seen": {date(2024, 1, 2)}}


def test_objects_that_json_cannot_keep_whole_are_refused() -> None:
    with pytest.raises(EncodingError, match=r"test_json_codec.Counter at \['c'\]"):
        codec().encode({"c": Counter(a=1)})
    with pytest.raises(EncodingError, match=r"OrderedDict"):
        codec().encode(OrderedDict(a=1))
    with pytest.raises(EncodingError, match=r"Cart at \[0\].*allow-list"):
        JSONCodec().encode([Cart()])

    class Local:
        pass

    with pytest.raises(EncodingError, match="defined inside a function"):
        JSONCodec(allow=[THIS_MODULE]).encode(Local())


def test_an_object_notation_for_a_class_that_is_not_plain_is_refused() -> None:
    notation = {"$object": ["collections:OrderedDict", {"a": 1}]}
    with pytest.raises(UnsafeDataError, match=r"OrderedDict as a plain object"):
        JSONCodec().decode(json.dumps(notation).encode())


# -- refusals -----------------------------------------------------------------------------------


def test_an_unknown_type_names_its_type_and_path() -> None:
    with pytest.raises(EncodingError) as caught:
        JSONCodec().encode({"cart": ["apple", "pear", "plum", threading.Lock()]})
    assert caught.value.path == "['cart'][3]"
    assert "_thread.lock at ['cart'][3]" in str(caught.value)

    with pytest.raises(
        EncodingError, match=r"function at \[\(1, 'x'\)\]\[<function .*>\] \(key\)"
    ):
        JSONCodec().encode({(1, "x"): {lambda: None: 2}})


async def test_the_store_message_names_kind_key_path_and_type(tmp_path: Path) -> None:
    persistence = JSONPersistence(tmp_path / "bot.json")
    with pytest.raises(EncodingError) as caught:
        await persistence.update_user_data(42, {"cart": ["a", "b", "c", threading.Lock()]})
    message = str(caught.value)
    assert message.startswith("cannot store user_data[42]['cart'][3]: ")
    assert "_thread.lock" in message
    assert caught.value.path == "['cart'][3]"
    await persistence.close()


def test_a_value_that_contains_itself_is_refused() -> None:
    loop: list[object] = [1]
    loop.append({"again": loop})
    with pytest.raises(
        EncodingError, match=r"list at \[1\]\['again'\] as JSON: it contains itself"
    ):
        JSONCodec().encode(loop)
    shared = [1, 2]
    assert JSONCodec().decode(JSONCodec().encode([shared, shared])) == [[1, 2], [1, 2]]


def test_nesting_is_limited_so_that_everything_written_can_be_read() -> None:
    deep: list[object] = []
    for _ in range(MAX_DEPTH + 10):
        deep = [deep]
    with pytest.raises(EncodingError, match=f"nested more than {MAX_DEPTH} levels"):
        JSONCodec().encode(deep)

    nested: object = "bottom"
    for level in range(MAX_DEPTH // 3):
        nested = {level: nested} if level % 2 else (nested,)
    assert round_trip(nested) == nested


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"{not json", "not valid JSON"),
        (b'{"$nope": 1}', "unknown notation '[$]nope'"),
        (b'{"$tuple": 5}', r"bad \$tuple notation: expected an array"),
        (b'{"$dict": [[[1], 2]]}', r"bad \$dict notation"),
        (b'{"$set": [[1]]}', r"bad \$set notation"),
        (b'{"$tuple": [], "b": 1}', "mixes the notation key '[$]tuple'"),
        (b'{"$datetime": "yesterday"}', r"bad \$datetime notation"),
        (b'{"$float": "1.5"}', r"bad \$float notation"),
        (b'{"$bytes": "***"}', r"bad \$bytes notation: not base64"),
        (b'{"$enum": "tests.test_json_codec:Step.SIZE"}', "has no member 'SIZE'"),
        (b'{"$enum": "tests.test_json_codec:Cart.X"}', "is not an Enum"),
        (b"[NaN]", "JSON holds NaN"),
        (b"\xff\xfe\x00", "not valid JSON"),
    ],
)
def test_bad_data_is_corrupt_data(data: bytes, problem: str) -> None:
    with pytest.raises(CorruptDataError, match=problem):
        codec().decode(data)


# -- text for tools -----------------------------------------------------------------------------


def test_text_for_tools_round_trips_and_is_indented() -> None:
    value = {SUPERGROUP: {"step": Step.AGE, "when": datetime(2024, 1, 1, tzinfo=timezone.utc)}}
    text = codec().to_text(value)
    assert text.startswith('{\n  "$dict": [\n')
    assert codec().from_text(text) == value
    assert codec().from_text('{"$tuple": [1, {"$set": [2]}]}') == (1, {2})


# -- python-telegram-bot ------------------------------------------------------------------------


def offline_bot(token: str = OfflineRequest.TOKEN) -> ExtBot[Any]:
    return ExtBot(token, request=OfflineRequest(), arbitrary_callback_data=True)


def test_telegram_objects_come_back_equal_with_the_current_bot() -> None:
    old_bot, new_bot = offline_bot(), offline_bot("700000001:another-token")
    message = a_message(old_bot)
    owner = ChatMemberOwner(User(1, "Ada", False), is_anonymous=False, custom_title="boss")
    data = JSONCodec().encode({"message": message, "owner": owner}, bot=old_bot)
    assert b'"$telegram":["telegram:Message"' in data

    restored = JSONCodec().decode(data, bot=new_bot)
    assert restored["message"] == message
    assert restored["message"].to_dict() == message.to_dict()
    assert restored["message"].get_bot() is new_bot
    assert type(restored["owner"]) is ChatMemberOwner
    assert restored["owner"].to_dict() == owner.to_dict()


def test_the_own_bot_is_a_placeholder_and_other_bots_are_refused() -> None:
    own, other = offline_bot(), offline_bot("700000002:other")
    data = JSONCodec().encode({"bot": own}, bot=own)
    assert data == b'{"bot":{"$bot":null}}'
    assert JSONCodec().decode(data, bot=other)["bot"] is other
    with pytest.raises(EncodingError, match=r"ExtBot at \['b'\].*other than the persistence"):
        JSONCodec().encode({"b": other}, bot=own)


def test_a_bot_named_in_telegram_notation_is_refused() -> None:
    notation = {"$telegram": ["telegram:Bot", {"token": "1:x"}]}
    with pytest.raises(UnsafeDataError, match=r"refused to load telegram\.Bot"):
        JSONCodec().decode(json.dumps(notation).encode())


# -- stores -------------------------------------------------------------------------------------


@pytest.mark.parametrize("store", ["json", "sqlite-json"])
async def test_enum_conversation_states_survive_a_restart(tmp_path: Path, store: str) -> None:
    def open_store() -> JSONPersistence[Any, Any, Any] | SQLitePersistence[Any, Any, Any]:
        if store == "json":
            return JSONPersistence(tmp_path / "bot.json", codec=codec())
        return SQLitePersistence(tmp_path / "bot.db", codec=codec())

    first = open_store()
    await first.update_conversation("signup", (SUPERGROUP, 2**40), Step.AGE)
    await first.update_conversation("signup", (5, 5), Level.LOW)
    await first.update_chat_data(SUPERGROUP, {"members": {2**40, -7}})
    await first.close()

    second = open_store()
    states = await second.get_conversations("signup")
    assert states == {(SUPERGROUP, 2**40): Step.AGE, (5, 5): Level.LOW}
    assert states[(SUPERGROUP, 2**40)] is Step.AGE
    assert await second.get_chat_data() == {SUPERGROUP: {"members": {2**40, -7}}}
    await second.close()


async def test_a_json_database_refuses_the_pickle_codec(tmp_path: Path) -> None:
    first = SQLitePersistence(tmp_path / "bot.db", codec="json")
    await first.update_bot_data({"a": 1})
    await first.close()
    with pytest.raises(CorruptDataError, match=r"encoded with codec 'json', not 'pickle'"):
        await SQLitePersistence(tmp_path / "bot.db").get_bot_data()


@pytest.mark.parametrize(
    "value",
    [
        time(0, 0, tzinfo=timezone(timedelta(microseconds=1))),
        datetime(2020, 1, 1, tzinfo=timezone(-timedelta(hours=3, microseconds=7))),
    ],
)
def test_offsets_with_fractions_of_a_second_are_kept(value: time | datetime) -> None:
    codec = JSONCodec()
    back = codec.decode(codec.encode(value))
    assert back == value
    assert isinstance(back, type(value))
    assert back.utcoffset() == value.utcoffset()
