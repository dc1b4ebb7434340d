"""Restricted pickle loading: the allow-list, refused globals, and the bot kept out of reach."""

from __future__ import annotations

import collections
import os
import pickle
import sqlite3
import struct
import sys
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from enum import Enum
from pathlib import Path
from subprocess import Popen
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

import pytest
from telegram.ext import ExtBot

from botstate import (
    AllowList,
    CorruptDataError,
    EncodingError,
    PickleCodec,
    PicklePersistence,
    SQLitePersistence,
    UnsafeDataError,
    from_url,
)
from botstate.codecs import safe_codec
from botstate.codecs.pickle import BOT_PLACEHOLDER
from botstate.testing import OfflineRequest

from .test_telegram import a_message

RESTRICTED = PickleCodec(trusted=False)


class Step(Enum):
    ASK = 1
    DONE = 2


class Basket:
    def __init__(self, items: list[str]) -> None:
        self.items = items

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Basket) and other.items == self.items

    __hash__ = None  # type: ignore[assignment]


def make_basket(items: list[str]) -> Basket:
    return Basket(items)


class CreatesAFile:
    """Pickles to a call of ``open(path, "w")``: loading it creates the file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.path), "w"))


class RunsACommand:
    """Pickles to ``os.system("touch path")``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.path}",))


def offline_bot(token: str = OfflineRequest.TOKEN) -> ExtBot[Any]:
    return ExtBot(token, request=OfflineRequest(), arbitrary_callback_data=True)


# -- refusals -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "refused"),
    [(CreatesAFile, r"(io|builtins)\.open"), (RunsACommand, rf"{os.system.__module__}\.system")],
)
def test_a_malicious_pickle_is_refused_before_anything_runs(
    tmp_path: Path, make: Any, refused: str
) -> None:
    target = tmp_path / "created"
    data = pickle.dumps({"user_data": {1: {"x": make(target)}}})
    with pytest.raises(UnsafeDataError, match=f"refused to load {refused}"):
        RESTRICTED.decode(data)
    assert not target.exists()

    # The same bytes, loaded trusted, do what they say: the test above can fail.
    PickleCodec().decode(data)
    assert target.exists()


async def test_a_malicious_pickle_file_is_refused_with_its_name(tmp_path: Path) -> None:
    target = tmp_path / "created"
    path = tmp_path / "bot.pickle"
    path.write_bytes(pickle.dumps({"user_data": {1: RunsACommand(target)}, "chat_data": {}}))
    persistence = PicklePersistence(path, codec="pickle-restricted")
    with pytest.raises(UnsafeDataError, match=r"bot\.pickle cannot be decoded as pickle: refused"):
        await persistence.get_user_data()
    assert not target.exists()
    assert path.read_bytes().startswith(b"\x80")  # left as it was


async def test_a_malicious_database_record_is_refused_with_its_key(tmp_path: Path) -> None:
    target = tmp_path / "created"
    trusted = SQLitePersistence(tmp_path / "bot.db")
    await trusted.update_user_data(42, {"fine": True})
    await trusted.close()
    # Someone else who can write the database plants a record.
    evil = pickle.dumps({"x": RunsACommand(target)})
    connection = sqlite3.connect(tmp_path / "bot.db")
    with connection:
        connection.execute(
            "UPDATE botstate_records SET value = ?, crc = NULL WHERE key = '42'", (evil,)
        )
    connection.close()

    restricted = SQLitePersistence(tmp_path / "bot.db", codec="pickle-restricted")
    with pytest.raises(UnsafeDataError, match=r"cannot decode user_data\[42\]: refused to load"):
        await restricted.get_user_data()
    assert not target.exists()
    await restricted.close()


def test_getattr_in_a_pickle_reaches_only_enum_members_and_listed_attributes() -> None:
    class Escape:
        def __reduce__(self) -> tuple[Any, ...]:
            return (getattr, (object, "__subclasses__"))

    with pytest.raises(UnsafeDataError, match=r"refused to load builtins\.object\.__subclasses__"):
        RESTRICTED.decode(pickle.dumps(Escape()))

    class ByName:
        def __reduce__(self) -> tuple[Any, ...]:
            return (getattr, (Step, "DONE"))

    allowed = PickleCodec(trusted=False, allow=[Step])
    assert allowed.decode(pickle.dumps(ByName())) is Step.DONE


def test_a_module_entry_allows_its_classes_but_not_its_functions_or_imports() -> None:
    allow = AllowList([__name__])
    assert allow.resolve(__name__, "Basket") is Basket
    with pytest.raises(UnsafeDataError, match=r"refused to load .*make_basket"):
        allow.resolve(__name__, "make_basket")
    # Popen is imported by this module, not defined in it.
    with pytest.raises(UnsafeDataError, match=r"refused to load .*\.Popen"):
        allow.resolve(__name__, "Popen")
    assert Popen is not None
    assert AllowList([f"{__name__}:make_basket"]).resolve(__name__, "make_basket") is make_basket
    assert AllowList([make_basket]).resolve(__name__, "make_basket") is make_basket


def test_allow_entries_are_checked() -> None:
    with pytest.raises(ValueError, match="cannot allow 'not a module'"):
        AllowList(["not a module"])
    with pytest.raises(ValueError, match="pass trusted=False too"):
        PickleCodec(allow=["mybot"])


# -- what loads ---------------------------------------------------------------------------------


def test_the_default_allow_list_loads_the_standard_types() -> None:
    value = {
        "when": datetime(2024, 5, 1, 9, 30, tzinfo=ZoneInfo("Europe/Berlin")),
        "offset": datetime(2024, 5, 1, tzinfo=timezone(timedelta(hours=2))),
        "money": Decimal("9.99"),
        "id": UUID(int=7),
        "ordered": collections.OrderedDict(b=1, a=2),
        "grouped": collections.defaultdict(list, {1: [2]}),
        "queue": collections.deque([1, 2], maxlen=5),
        "counts": collections.Counter("hello"),
        "containers": ({1, 2}, frozenset({3}), bytearray(b"x"), b"y", complex(1, 2)),
    }
    for protocol in (2, 4, pickle.HIGHEST_PROTOCOL):
        assert RESTRICTED.decode(pickle.dumps(value, protocol)) == value


def test_enum_members_and_classes_of_allowed_modules_load() -> None:
    data = pickle.dumps({"state": Step.ASK, "basket": Basket(["tea"])})
    with pytest.raises(UnsafeDataError, match=rf"refused to load {__name__}\.Step"):
        RESTRICTED.decode(data)
    allowed = PickleCodec(trusted=False, allow=[__name__])
    assert allowed.decode(data) == {"state": Step.ASK, "basket": Basket(["tea"])}


def test_a_restricted_codec_refuses_to_write_what_it_could_not_load() -> None:
    with pytest.raises(
        EncodingError, match=rf"for restricted loading: refused to load {__name__}"
    ):
        RESTRICTED.encode({"basket": Basket(["tea"])})
    assert PickleCodec(trusted=False, allow=[Basket]).encode(Basket([])) == pickle.dumps(
        Basket([]), pickle.HIGHEST_PROTOCOL
    )


async def test_a_database_written_with_pickle_opens_restricted(tmp_path: Path) -> None:
    trusted = SQLitePersistence(tmp_path / "bot.db")
    await trusted.update_user_data(1, {"when": datetime(2024, 1, 1, tzinfo=timezone.utc)})
    await trusted.close()
    restricted = SQLitePersistence(tmp_path / "bot.db", codec="pickle-restricted")
    assert await restricted.get_user_data() == {
        1: {"when": datetime(2024, 1, 1, tzinfo=timezone.utc)}
    }
    await restricted.close()


async def test_telegram_objects_written_by_botstate_load_restricted(tmp_path: Path) -> None:
    bot = offline_bot()
    persistence = PicklePersistence(tmp_path / "bot.pickle", codec="pickle-restricted")
    persistence.set_bot(bot)
    await persistence.update_user_data(1, {"message": a_message(bot), "nested": [(bot,)]})
    await persistence.close()

    new_bot = offline_bot("700000001:a-new-token")
    reopened = PicklePersistence(tmp_path / "bot.pickle", codec="pickle-restricted")
    reopened.set_bot(new_bot)
    user = (await reopened.get_user_data())[1]
    assert user["message"].get_bot() is new_bot
    assert user["nested"] == [(new_bot,)]
    assert user["nested"][0][0] is new_bot


def test_a_crafted_pickle_cannot_change_the_live_bot() -> None:
    # The bot placeholder, then BUILD with a state that points the bot at another server.
    text = b"https://attacker.invalid/bot"
    key = b"_base_url"
    data = (
        b"\x80\x04P"
        + BOT_PLACEHOLDER.encode()
        + b"\n}X"
        + struct.pack("<I", len(key))
        + key
        + b"X"
        + struct.pack("<I", len(text))
        + text
        + b"sb."
    )
    bot = offline_bot()
    before = bot.base_url
    with pytest.raises(CorruptDataError, match="not a readable pickle"):
        RESTRICTED.decode(data, bot=bot)
    assert bot.base_url == before

    # Trusted loading lets it through, which is why data from elsewhere needs restriction.
    PickleCodec().decode(data, bot=bot)
    assert bot._base_url == "https://attacker.invalid/bot"


@pytest.mark.parametrize(
    ("call", "refused"),
    [
        ((bytearray, (10**12,)), "bytearray of anything but bytes"),
        ((bytes, (10**12,)), r"builtins\.bytes"),
        ((list, (range(10**12),)), r"builtins\.range"),
    ],
)
def test_a_few_bytes_of_pickle_cannot_ask_for_gigabytes(
    call: tuple[Any, tuple[Any, ...]], refused: str
) -> None:
    class Huge:
        def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
            return call

    data = pickle.dumps(Huge(), protocol=4)
    assert len(data) < 100
    with pytest.raises(UnsafeDataError, match=refused):
        RESTRICTED.decode(data)


def test_loading_never_imports_a_module_the_allow_list_does_not_name() -> None:
    # Importing the standard library's ``this`` prints a poem: an import would be visible.
    assert "this" not in sys.modules
    with pytest.raises(UnsafeDataError, match=r"refused to load this\.s"):
        RESTRICTED.decode(b"\x80\x02cthis\ns\n.")
    assert "this" not in sys.modules


def test_urls_choose_the_restricted_codec(tmp_path: Path) -> None:
    pickled = from_url(f"pickle://{tmp_path}/bot.pickle?codec=pickle-restricted")
    database = from_url(f"sqlite://{tmp_path}/bot.db?codec=pickle-restricted")
    for persistence in (pickled, database):
        codec = persistence.store.codec
        assert isinstance(codec, PickleCodec)
        assert codec.trusted is False


def test_tools_get_a_safe_codec_for_each_format() -> None:
    pickle_codec = safe_codec("pickle", allow=[Step])
    assert isinstance(pickle_codec, PickleCodec)
    assert pickle_codec.trusted is False
    assert pickle_codec.decode(pickle.dumps(Step.ASK)) is Step.ASK
    json_codec = safe_codec("json", allow=[Step])
    assert json_codec.name == "json"
    assert json_codec.decode(json_codec.encode(Step.ASK)) is Step.ASK
    with pytest.raises(ValueError, match="unknown format 'yaml'"):
        safe_codec("yaml")
