"""botstate inside real python-telegram-bot applications, offline, and its pickle interop."""

from __future__ import annotations

import logging
import pickle
from pathlib import Path
from typing import Any

import pytest
import telegram
import telegram.ext
from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Message, Update
from telegram.ext import (
    Application,
    CallbackContext,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    ConversationHandler,
    ExtBot,
    MessageHandler,
    filters,
)

from botstate import (
    CorruptDataError,
    JSONCodec,
    JSONPersistence,
    PicklePersistence,
    SQLitePersistence,
)
from botstate.codecs.pickle import BOT_PLACEHOLDER
from botstate.persistence import Persistence
from botstate.telegram import for_application
from botstate.testing import OfflineRequest, button_update, feed, text_update

USER = {"id": 2**33 + 1, "is_bot": False, "first_name": "Grace"}
CHAT = {"id": -1001234567890, "type": "supergroup", "title": "Team"}
NEW_TOKEN = "700000001:a-new-token-after-rotation"


def message(update_id: int, text: str) -> dict[str, Any]:
    return text_update(update_id, text, chat=CHAT, user=USER)


#: The persistences the application tests run on.
KINDS = ["pickle", "pickle-multi", "sqlite", "json"]


def make_persistence(kind: str, folder: Path, **options: Any) -> Persistence[Any, Any, Any]:
    if kind == "pickle":
        return PicklePersistence(folder / "bot.pickle", **options)
    if kind == "pickle-multi":
        return PicklePersistence(folder / "bot", single_file=False, **options)
    if kind == "json":
        # This module's BotData is the application's bot_data class.
        return JSONPersistence(folder / "bot.json", codec=JSONCodec(allow=[__name__]), **options)
    return SQLitePersistence(folder / "bot.db", **options)


class BotData:
    """A custom bot_data class, declared through ContextTypes."""

    def __init__(self) -> None:
        self.counter = 0


CONTEXT_TYPES = ContextTypes(bot_data=BotData)
ASK, CONFIRM = range(2)


def build(
    persistence: Persistence[Any, Any, Any], token: str = OfflineRequest.TOKEN
) -> tuple[Application[Any, Any, Any, Any, Any, Any], OfflineRequest]:
    async def start(update: Update, context: CallbackContext[Any, Any, Any, Any]) -> int:
        assert update.effective_message
        context.user_data["started"] = True
        context.chat_data["starts"] = context.chat_data.get("starts", 0) + 1
        context.bot_data.counter += 1
        await update.effective_message.reply_text("What should I remember?")
        return ASK

    async def remember(update: Update, context: CallbackContext[Any, Any, Any, Any]) -> int:
        assert update.effective_message
        assert update.effective_message.text
        context.user_data["memo"] = update.effective_message.text
        context.user_data["last_message"] = update.effective_message
        keyboard = InlineKeyboardMarkup(
            [[InlineKeyboardButton("Keep", callback_data={"keep": (1, 2.5), "memo": "x"})]]
        )
        await update.effective_message.reply_text("Keep it?", reply_markup=keyboard)
        return CONFIRM

    async def confirm(update: Update, context: CallbackContext[Any, Any, Any, Any]) -> int:
        query = update.callback_query
        assert query
        context.user_data["confirmed"] = query.data
        await query.answer()
        return ConversationHandler.END

    request = OfflineRequest()
    application = (
        Application.builder()
        .token(token)
        .request(request)
        .get_updates_request(OfflineRequest())
        .updater(None)
        .arbitrary_callback_data(True)
        .context_types(CONTEXT_TYPES)
        .persistence(persistence)
        .build()
    )
    application.add_handler(
        ConversationHandler(
            entry_points=[CommandHandler("start", start)],
            states={
                ASK: [MessageHandler(filters.TEXT & ~filters.COMMAND, remember)],
                CONFIRM: [CallbackQueryHandler(confirm)],
            },
            fallbacks=[],
            name="memo",
            persistent=True,
        )
    )
    return application, request


def test_application_accepts_any_botstate_persistence(tmp_path: Path) -> None:
    for kind in KINDS:
        persistence = make_persistence(kind, tmp_path)
        assert isinstance(persistence, telegram.ext.BasePersistence)
        application = (
            Application.builder()
            .token(OfflineRequest.TOKEN)
            .persistence(for_application(persistence))
        )
        assert application.build().persistence is persistence


@pytest.mark.filterwarnings("ignore:If 'per_message=False'")
@pytest.mark.parametrize("kind", KINDS)
async def test_an_application_restarted_on_the_store_gets_everything_back(
    tmp_path: Path, kind: str
) -> None:
    first, first_request = build(make_persistence(kind, tmp_path, context_types=CONTEXT_TYPES))
    async with first:
        await feed(first, message(1, "/start"))
        await feed(first, message(2, "buy milk"))
    keyboard_message = first_request.sent[-1]
    button_data = keyboard_message["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
    assert isinstance(button_data, str)  # python-telegram-bot sent a cache id, not the dict

    second, _ = build(make_persistence(kind, tmp_path, context_types=CONTEXT_TYPES))
    async with second:
        user_data = second.user_data[USER["id"]]
        assert user_data["memo"] == "buy milk"
        assert user_data["started"] is True
        assert second.chat_data[CHAT["id"]] == {"starts": 1}
        assert isinstance(second.bot_data, BotData)
        assert second.bot_data.counter == 1
        stored_message = user_data["last_message"]
        assert isinstance(stored_message, Message)
        assert stored_message.text == "buy milk"
        assert stored_message.get_bot() is second.bot

        # The conversation is waiting for the button of the keyboard sent before the restart,
        # and the button's Python object comes back from the stored callback data.
        press = button_update(3, keyboard_message, 0, user=USER)
        await feed(second, press)
        assert second.user_data[USER["id"]]["confirmed"] == {"keep": (1, 2.5), "memo": "x"}

    third = make_persistence(kind, tmp_path)
    assert await third.get_conversations("memo") == {}
    assert (await third.get_user_data())[USER["id"]]["confirmed"]["keep"] == (1, 2.5)
    await third.close()


@pytest.mark.parametrize("kind", KINDS)
async def test_the_bot_is_stored_as_a_placeholder_and_the_new_bot_comes_back(
    tmp_path: Path, kind: str
) -> None:
    bot = ExtBot(OfflineRequest.TOKEN, request=OfflineRequest(), arbitrary_callback_data=True)
    persistence = make_persistence(kind, tmp_path)
    persistence.set_bot(bot)
    await persistence.update_user_data(1, {"bot": bot, "nested": [{"again": bot}]})
    await persistence.close()

    stored = b"".join(path.read_bytes() for path in tmp_path.iterdir() if path.is_file())
    assert OfflineRequest.TOKEN.encode() not in stored
    assert b"offline-token" not in stored

    new_bot = ExtBot(NEW_TOKEN, request=OfflineRequest(), arbitrary_callback_data=True)
    reopened = make_persistence(kind, tmp_path)
    reopened.set_bot(new_bot)
    user = (await reopened.get_user_data())[1]
    assert user["bot"] is new_bot
    assert user["nested"][0]["again"] is new_bot
    await reopened.close()


async def test_another_bot_is_stored_as_a_second_placeholder_that_loads_as_none(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    own = ExtBot(OfflineRequest.TOKEN, request=OfflineRequest(), arbitrary_callback_data=True)
    other = ExtBot(NEW_TOKEN, request=OfflineRequest())
    persistence = SQLitePersistence(tmp_path / "bot.db")
    persistence.set_bot(own)
    with caplog.at_level(logging.WARNING):
        await persistence.update_user_data(1, {"other": other, "own": own})
    assert "other than the persistence's own" in caplog.text
    caplog.clear()

    reopened = SQLitePersistence(tmp_path / "bot.db")
    reopened.set_bot(own)
    with caplog.at_level(logging.WARNING):
        user = (await reopened.get_user_data())[1]
    assert user == {"other": None, "own": own}
    assert "loaded as None" in caplog.text
    await persistence.close()
    await reopened.close()


async def test_an_unknown_placeholder_is_corrupt_data(tmp_path: Path) -> None:
    class Marker:
        pass

    class ForeignPickler(pickle.Pickler):
        def persistent_id(self, obj: object) -> str | None:
            return "something else" if isinstance(obj, Marker) else None

    path = tmp_path / "bot.pickle"
    with path.open("wb") as file:
        ForeignPickler(file).dump(
            {"user_data": {1: {"x": Marker()}}, "chat_data": {}, "conversations": {}}
        )
    persistence = PicklePersistence(path)
    with pytest.raises(CorruptDataError, match=r"bot\.pickle.*unknown placeholder"):
        await persistence.get_user_data()


# -- files written by python-telegram-bot itself -----------------------------------------------


def ptb_bot() -> ExtBot[Any]:
    return ExtBot(OfflineRequest.TOKEN, request=OfflineRequest(), arbitrary_callback_data=True)


def a_message(bot: telegram.Bot) -> Message:
    result = Message.de_json(message(9, "hello")["message"], bot)
    assert result is not None
    return result


@pytest.mark.parametrize("codec", ["pickle", "pickle-restricted"])
@pytest.mark.parametrize("single_file", [True, False])
async def test_files_written_by_python_telegram_bot_load(
    tmp_path: Path, single_file: bool, codec: str
) -> None:
    bot = ptb_bot()
    path = tmp_path / "ptb.pickle"
    theirs: telegram.ext.PicklePersistence[Any, Any, Any] = telegram.ext.PicklePersistence(
        path, single_file=single_file
    )
    theirs.set_bot(bot)
    await theirs.get_user_data()
    await theirs.update_user_data(2**40, {"bot": bot, "message": a_message(bot)})
    await theirs.update_chat_data(-1001234567890, {"title": "x"})
    await theirs.update_bot_data({"b": 1})
    await theirs.update_callback_data(([("kb", 1700000000.25, {"b": {"page": 2}})], {"q": "kb"}))
    await theirs.update_conversation("conv", (1, 2), 3)
    await theirs.flush()

    new_bot = ExtBot(NEW_TOKEN, request=OfflineRequest(), arbitrary_callback_data=True)
    ours = PicklePersistence(path, single_file=single_file, codec=codec)
    ours.set_bot(new_bot)
    user = (await ours.get_user_data())[2**40]
    assert user["bot"] is new_bot
    assert user["message"] == a_message(bot)
    assert user["message"].get_bot() is new_bot
    assert await ours.get_chat_data() == {-1001234567890: {"title": "x"}}
    assert await ours.get_bot_data() == {"b": 1}
    assert await ours.get_callback_data() == (
        [("kb", 1700000000.25, {"b": {"page": 2}})],
        {"q": "kb"},
    )
    assert await ours.get_conversations("conv") == {(1, 2): 3}

    # botstate writes the file back in the same layout, and python-telegram-bot still reads it.
    await ours.update_chat_data(-1001234567890, {"title": "y"})
    await ours.close()
    again: telegram.ext.PicklePersistence[Any, Any, Any] = telegram.ext.PicklePersistence(
        path, single_file=single_file
    )
    again.set_bot(bot)
    assert await again.get_chat_data() == {-1001234567890: {"title": "y"}}
    # (python-telegram-bot's own getter deep-copies user_data, which a stored bot refuses.)


@pytest.mark.parametrize("single_file", [True, False])
async def test_python_telegram_bot_loads_plain_data_written_by_botstate(
    tmp_path: Path, single_file: bool
) -> None:
    path = tmp_path / "ours.pickle"
    ours = PicklePersistence(path, single_file=single_file)
    ours.set_bot(ptb_bot())
    await ours.update_user_data(5, {"n": 5, "when": (2024, 1, 2)})
    await ours.update_chat_data(-7, {"c": True})
    await ours.update_bot_data({"b": [1, 2]})
    await ours.update_callback_data(([("kb", 1.5, {"b": 1})], {"q": "kb"}))
    await ours.update_conversation("conv", (5, 5), "STATE")
    await ours.close()

    theirs: telegram.ext.PicklePersistence[Any, Any, Any] = telegram.ext.PicklePersistence(
        path, single_file=single_file
    )
    theirs.set_bot(ptb_bot())
    assert await theirs.get_user_data() == {5: {"n": 5, "when": (2024, 1, 2)}}
    assert await theirs.get_chat_data() == {-7: {"c": True}}
    assert await theirs.get_bot_data() == {"b": [1, 2]}
    assert await theirs.get_callback_data() == ([("kb", 1.5, {"b": 1})], {"q": "kb"})
    assert await theirs.get_conversations("conv") == {(5, 5): "STATE"}


async def test_a_file_without_bot_data_or_callback_data_loads_with_defaults(
    tmp_path: Path,
) -> None:
    # The layout python-telegram-bot releases wrote before they stored these two kinds.
    path = tmp_path / "old.pickle"
    path.write_bytes(
        pickle.dumps({"user_data": {1: {"a": 1}}, "chat_data": {}, "conversations": {}})
    )
    persistence = PicklePersistence(path, context_types=CONTEXT_TYPES)
    assert await persistence.get_user_data() == {1: {"a": 1}}
    assert isinstance(await persistence.get_bot_data(), BotData)
    assert await persistence.get_callback_data() is None


def test_the_placeholder_is_python_telegram_bots() -> None:
    from telegram.ext import _picklepersistence

    assert BOT_PLACEHOLDER == _picklepersistence._REPLACED_KNOWN_BOT
