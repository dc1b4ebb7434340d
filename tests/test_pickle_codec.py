"""PickleCodec: values without a bot take the fast pickler and give the same bytes."""

from __future__ import annotations

import io
import pickle

from telegram import User
from telegram.ext import ExtBot

from botstate.codecs.pickle import BOT_PLACEHOLDER, BotPickler, PickleCodec
from botstate.testing import OfflineRequest


def test_a_value_without_a_bot_is_pickled_to_the_bytes_the_bot_pickler_writes() -> None:
    bot = ExtBot(OfflineRequest.TOKEN, request=OfflineRequest())
    value = {
        "plain": [1, 2.5, "text", (3, b"raw"), {4}, frozenset({5}), None, True],
        "telegram object": User(42, "Ada", is_bot=False),
    }
    buffer = io.BytesIO()
    BotPickler(buffer, bot, pickle.HIGHEST_PROTOCOL).dump(value)

    assert PickleCodec().encode(value, bot=bot) == buffer.getvalue()


def test_a_bot_of_any_class_deep_inside_a_value_becomes_the_placeholder() -> None:
    class FrameworkBot:
        token = "1234:secret"

    codec = PickleCodec()
    old, new = FrameworkBot(), FrameworkBot()
    data = codec.encode({"orders": [1, {"bot": old}], "again": old}, bot=old)

    assert BOT_PLACEHOLDER.encode() in data
    assert b"secret" not in data
    loaded = codec.decode(data, bot=new)
    assert isinstance(loaded, dict)
    assert loaded["orders"][1]["bot"] is new
    assert loaded["again"] is new
