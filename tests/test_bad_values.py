"""Values that cannot be stored: the bad record fails alone, by name and path, every time, in
every store and inside a real python-telegram-bot application."""

from __future__ import annotations

import asyncio
import copy
import pickle
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from telegram import Update
from telegram.ext import Application, CallbackContext, ContextTypes, MessageHandler, filters

from botstate import EncodingError
from botstate.persistence import Persistence
from botstate.telegram import CopySafe, CopySafeDict, copy_safe_context_types
from botstate.testing import OfflineRequest, feed

from .conftest import require
from .reliability.badvalues import BAD_VALUES, bad_value_trial
from .stores import STORES

ALICE, BOB = 2**33 + 1, 2**33 + 2


@pytest.mark.parametrize("store", list(STORES))
def test_every_bad_value_fails_only_its_record_every_time_and_the_last_version_stays(
    store: str, tmp_path: Path
) -> None:
    require(store)
    figures = bad_value_trial(store, tmp_path)
    assert figures.problems == []
    assert figures.tried == len(BAD_VALUES) * 2 * 5


# -- the copy-safe containers ------------------------------------------------------------------


def test_a_copy_safe_dict_shares_only_the_parts_that_cannot_be_copied() -> None:
    lock = threading.Lock()
    shared = [1, {"deep": [2]}]
    original = CopySafeDict(a=shared, b=shared, cart=["apple", lock], pair=(3, lock))
    copied = copy.deepcopy(original)
    assert type(copied) is CopySafeDict
    assert copied == original
    assert copied["cart"][1] is lock
    assert copied["pair"][1] is lock
    assert copied["a"] is copied["b"]
    assert copied["a"] is not shared
    assert copied["a"][1] is not shared[1]


def test_a_list_that_failed_to_copy_is_not_reused_half_built() -> None:
    lock = threading.Lock()
    bad = ["first", lock]
    copied = copy.deepcopy(CopySafeDict(x=bad, y=bad))
    assert copied["x"] == ["first", lock]
    assert copied["x"] is copied["y"]
    assert copied["x"] is not bad


def test_a_copy_safe_dict_is_stored_as_a_plain_dict() -> None:
    stored = pickle.loads(pickle.dumps(CopySafeDict(a={"b": 1})))
    assert type(stored) is dict
    assert stored == {"a": {"b": 1}}
    assert type(copy.copy(CopySafeDict(a=1))) is CopySafeDict


class BotData(CopySafe):
    """A bot_data class of a bot's own, made copy-safe."""

    def __init__(self) -> None:
        self.signups = 0
        self.lock: object = None


def test_a_class_of_ones_own_with_the_mixin_copies_its_attributes_safely() -> None:
    data = BotData()
    data.lock = threading.Lock()
    data.signups = 3
    copied = copy.deepcopy(data)
    assert type(copied) is BotData
    assert copied.signups == 3
    assert copied.lock is data.lock


def test_copy_safe_context_types_swaps_dict_and_keeps_copy_safe_classes() -> None:
    context_types = copy_safe_context_types(ContextTypes(bot_data=BotData))
    assert context_types.bot_data is BotData
    assert context_types.user_data is CopySafeDict
    assert context_types.chat_data is CopySafeDict


def test_copy_safe_context_types_refuses_a_class_it_cannot_make_safe() -> None:
    class Plain:
        pass

    with pytest.raises(TypeError, match=r"bot_data class .*Plain.*class Plain\(botstate"):
        copy_safe_context_types(ContextTypes(bot_data=Plain))


# -- inside a python-telegram-bot application ---------------------------------------------------


def message(update_id: int, user: int, text: str) -> dict[str, Any]:
    return {
        "update_id": update_id,
        "message": {
            "message_id": update_id,
            "date": 1700000000,
            "chat": {"id": user, "type": "private"},
            "from": {"id": user, "is_bot": False, "first_name": "x"},
            "text": text,
        },
    }


async def remember(update: Update, context: CallbackContext[Any, Any, Any, Any]) -> None:
    """Keep the text; "lock" and "unlock" add and remove a lock in user or bot data."""
    assert update.effective_message
    text = update.effective_message.text or ""
    target = context.bot_data if text.startswith("bot ") else context.user_data
    if text.endswith(" lock") or text == "lock":
        target["lock"] = threading.Lock()
    elif text.endswith("unlock"):
        target.pop("lock", None)
    if target is context.user_data:
        target["text"] = text


def build(
    persistence: Persistence[Any, Any, Any], context_types: ContextTypes[Any, Any, Any, Any]
) -> tuple[Application[Any, Any, Any, Any, Any, Any], list[BaseException]]:
    application = (
        Application.builder()
        .token(OfflineRequest.TOKEN)
        .request(OfflineRequest())
        .get_updates_request(OfflineRequest())
        .updater(None)
        .context_types(context_types)
        .persistence(persistence)
        .build()
    )
    application.add_handler(MessageHandler(filters.TEXT, remember))
    errors: list[BaseException] = []

    async def on_error(update: object, context: CallbackContext[Any, Any, Any, Any]) -> None:
        assert context.error is not None
        errors.append(context.error)

    application.add_error_handler(on_error)
    return application, errors


async def until(condition: Callable[[], object], what: str) -> None:
    """Wait for the application's periodic saving to make *condition* true."""
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"the application never got there: {what}")


async def stored_users(store: str, folder: Path) -> dict[int, Any]:
    reader = STORES[store].open(folder)
    try:
        return await reader.get_user_data()
    finally:
        await reader.close()


async def until_stored(store: str, folder: Path, expected: dict[int, Any]) -> None:
    """Wait until the store holds *expected* for those users."""
    users: dict[int, Any] = {}
    for _ in range(1000):
        users = await stored_users(store, folder)
        if all(users.get(user) == data for user, data in expected.items()):
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never stored {expected}; the store holds {users}")


def naming(errors: list[BaseException], name: str) -> int:
    return sum(isinstance(error, EncodingError) and name in str(error) for error in errors)


@pytest.mark.parametrize("store", list(STORES))
async def test_with_copy_safe_types_an_application_reports_a_bad_record_each_cycle_saves_the_rest(
    store: str, tmp_path: Path
) -> None:
    require(store)
    context_types = copy_safe_context_types()
    persistence = STORES[store].open(tmp_path, update_interval=0.02, context_types=context_types)
    application, errors = build(persistence, context_types)
    async with application:
        await application.start()
        await feed(application, message(1, ALICE, "hello"))
        await until_stored(store, tmp_path, {ALICE: {"text": "hello"}})

        # A lock in Alice's data: reported by name, Bob's data of the same cycle stored.
        await feed(application, message(2, ALICE, "lock"))
        await feed(application, message(3, BOB, "hi"))
        await until(lambda: naming(errors, f"user_data[{ALICE}]['lock']") == 1, "first report")
        await until_stored(store, tmp_path, {BOB: {"text": "hi"}, ALICE: {"text": "hello"}})

        # Each cycle that hands Alice's data over again reports it again.
        await feed(application, message(4, ALICE, "still locked"))
        await until(lambda: naming(errors, f"user_data[{ALICE}]['lock']") == 2, "second report")
        await feed(application, message(5, ALICE, "unlock"))
        await until_stored(store, tmp_path, {ALICE: {"text": "unlock"}})

        # bot_data is handed over every cycle: a lock in it is reported cycle after cycle, and
        # the periodic saving goes on.
        await feed(application, message(6, BOB, "bot lock"))
        await until(lambda: naming(errors, "bot_data['lock']") >= 3, "three bot_data reports")
        await feed(application, message(7, BOB, "bot unlock"))
        await feed(application, message(8, BOB, "after"))
        await until_stored(store, tmp_path, {BOB: {"text": "after"}})
        await application.stop()
    assert all(isinstance(error, EncodingError) for error in errors), errors


async def test_stored_data_comes_back_copy_safe_after_a_restart(tmp_path: Path) -> None:
    context_types = copy_safe_context_types()
    first, _ = build(STORES["sqlite"].open(tmp_path, context_types=context_types), context_types)
    async with first:
        await feed(first, message(1, ALICE, "hello"))
        first.bot_data["started"] = True

    second, errors = build(
        STORES["sqlite"].open(tmp_path, context_types=context_types), context_types
    )
    async with second:
        assert type(second.user_data[ALICE]) is CopySafeDict
        assert type(second.bot_data) is CopySafeDict
        assert second.bot_data == {"started": True}
        await feed(second, message(2, ALICE, "lock"))
        await second.update_persistence()
        assert naming(errors, f"user_data[{ALICE}]['lock']") == 1
        second.user_data[ALICE].pop("lock")


@pytest.mark.filterwarnings("ignore:coroutine .* was never awaited:RuntimeWarning")
async def test_without_copy_safe_types_an_uncopyable_value_breaks_the_applications_save(
    tmp_path: Path,
) -> None:
    """The limitation copy_safe_context_types() removes, as python-telegram-bot 22 shows it:
    its own deep copy raises, before the persistence is called."""
    application, errors = build(STORES["sqlite"].open(tmp_path), ContextTypes())
    async with application:
        await feed(application, message(1, BOB, "hi"))
        application.bot_data["lock"] = threading.Lock()
        with pytest.raises(TypeError, match=r"cannot pickle '_thread\.lock' object"):
            await application.update_persistence()
        assert errors == []
        assert await stored_users("sqlite", tmp_path) == {}
        application.bot_data.pop("lock")


async def test_without_copy_safe_types_a_lambda_still_reaches_the_error_handlers(
    tmp_path: Path,
) -> None:
    """A lambda deep-copies (functions are copied as themselves), so botstate reports it."""
    application, errors = build(STORES["sqlite"].open(tmp_path), ContextTypes())
    async with application:
        await feed(application, message(1, BOB, "hi"))
        application.bot_data["callback"] = lambda: None
        await application.update_persistence()
        assert naming(errors, "bot_data['callback']") == 1
        assert await stored_users("sqlite", tmp_path) == {BOB: {"text": "hi"}}
        application.bot_data.pop("callback")
