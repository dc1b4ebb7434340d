"""botstate as aiogram's FSM storage: aiogram's storage semantics on every store, and real
aiogram dispatchers run offline (updates fed locally, Bot API calls answered locally)."""

from __future__ import annotations

import asyncio
import itertools
import json
import pickle
import sqlite3
import threading
import time
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

import pytest
import telegram.ext
from aiogram import Bot, Dispatcher, F, Router
from aiogram.client.session.base import BaseSession
from aiogram.filters import CommandStart
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.fsm.storage.base import StorageKey
from aiogram.fsm.strategy import FSMStrategy
from aiogram.methods.base import TelegramMethod, TelegramType
from aiogram.types import Message, Update

from botstate import CorruptDataError, EncodingError, PicklePersistence
from botstate.aiogram import AiogramStorage, record_key

from .conftest import StoreFactory

TOKEN = "700000001:offline-token-for-tests-only"
BOT_ID = 700000001
USER = {"id": 2**33 + 1, "is_bot": False, "first_name": "Grace"}
FORUM = {"id": -1001234567890, "type": "supergroup", "title": "Team", "is_forum": True}
KEY = StorageKey(bot_id=BOT_ID, chat_id=-1001234567890, user_id=2**33 + 1)


class Form(StatesGroup):
    name = State()
    age = State()
    confirm = State()


# -- an aiogram bot that never leaves the machine -----------------------------------------------


class OfflineSession(BaseSession):
    """Answers an aiogram Bot's API calls locally and records them, instead of calling Telegram.

    Attributes:
        calls: Every call as ``(method name, parameters as sent)``, in order.
    """

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self._message_ids = itertools.count(1000)

    @property
    def texts(self) -> list[str]:
        """The texts of the messages the bot sent, in order."""
        return [parameters["text"] for name, parameters in self.calls if name == "sendMessage"]

    async def make_request(
        self, bot: Bot, method: TelegramMethod[TelegramType], timeout: int | None = None
    ) -> TelegramType:
        name = method.__api_method__
        parameters = {
            field: self.prepare_value(value, bot=bot, files={})
            for field, value in method.model_dump(warnings=False).items()
        }
        parameters = {field: value for field, value in parameters.items() if value is not None}
        self.calls.append((name, parameters))
        if name != "sendMessage":
            raise AssertionError(f"the offline session does not answer {name}")
        result = {
            "message_id": next(self._message_ids),
            "date": int(time.time()),
            "chat": {"id": int(parameters["chat_id"]), "type": "supergroup"},
            "text": parameters["text"],
        }
        if "message_thread_id" in parameters:
            result["message_thread_id"] = int(parameters["message_thread_id"])
        answer = json.dumps({"ok": True, "result": result})
        return self.check_response(bot, method, 200, answer).result  # type: ignore[return-value]

    async def stream_content(
        self,
        url: str,
        headers: dict[str, Any] | None = None,
        timeout: int = 30,
        chunk_size: int = 65536,
        raise_for_status: bool = True,
    ) -> AsyncGenerator[bytes, None]:
        raise AssertionError("the offline session downloads nothing")
        yield b""  # pragma: no cover (makes this an async generator, as the interface wants)

    async def close(self) -> None:
        """Nothing to release."""


def form_router(finished: list[dict[str, Any]]) -> Router:
    """A three-step form (name, age, confirmation); each finished form is added to *finished*."""
    router = Router()

    @router.message(CommandStart())
    async def start(message: Message, state: FSMContext) -> None:
        await state.set_state(Form.name)
        await message.answer("What is your name?")

    @router.message(Form.name, F.text)
    async def got_name(message: Message, state: FSMContext) -> None:
        await state.update_data(name=message.text)
        await state.set_state(Form.age)
        await message.answer("How old are you?")

    @router.message(Form.age, F.text.isdigit())
    async def got_age(message: Message, state: FSMContext) -> None:
        await state.update_data(age=int(message.text or ""))
        await state.set_state(Form.confirm)
        await message.answer("Send yes to confirm.")

    @router.message(Form.age)
    async def bad_age(message: Message) -> None:
        await message.answer("Please send a number.")

    @router.message(Form.confirm, F.text == "yes")
    async def confirm(message: Message, state: FSMContext) -> None:
        data = await state.get_data()
        finished.append(data)
        await state.clear()
        await message.answer(f"Saved {data['name']}, {data['age']}.")

    return router


class RunningBot:
    """One run of a bot process: a dispatcher on *storage* and an offline bot."""

    def __init__(
        self,
        storage: AiogramStorage,
        finished: list[dict[str, Any]],
        strategy: FSMStrategy = FSMStrategy.USER_IN_CHAT,
    ) -> None:
        self.session = OfflineSession()
        self.bot = Bot(TOKEN, session=self.session)
        self.dispatcher = Dispatcher(storage=storage, fsm_strategy=strategy)
        self.dispatcher.include_router(form_router(finished))
        self._update_ids = itertools.count(1)

    async def say(self, text: str, thread: int | None = None) -> None:
        message: dict[str, Any] = {
            "message_id": next(self._update_ids),
            "date": 1700000000,
            "chat": FORUM,
            "from": USER,
            "text": text,
        }
        if text.startswith("/"):
            message["entities"] = [{"type": "bot_command", "offset": 0, "length": len(text)}]
        if thread is not None:
            message.update(message_thread_id=thread, is_topic_message=True)
        update = Update.model_validate(
            {"update_id": message["message_id"], "message": message}, context={"bot": self.bot}
        )
        await self.dispatcher.feed_update(self.bot, update)

    async def __aenter__(self) -> RunningBot:
        await self.dispatcher.emit_startup(bot=self.bot)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        # Stopping the dispatcher closes its storage, as at the end of polling.
        await self.dispatcher.emit_shutdown(bot=self.bot)


# -- the form, across a restart -----------------------------------------------------------------


async def test_a_form_started_before_a_restart_is_completed_after_it(stores: StoreFactory) -> None:
    finished: list[dict[str, Any]] = []
    async with RunningBot(AiogramStorage(stores.open()), finished) as first:
        await first.say("/start")
        await first.say("Grace")
        await first.say("many")
    assert first.session.texts == [
        "What is your name?",
        "How old are you?",
        "Please send a number.",
    ]

    async with RunningBot(AiogramStorage(stores.open()), finished) as second:
        await second.say("85")
        await second.say("yes")
    assert second.session.texts == ["Send yes to confirm.", "Saved Grace, 85."]
    assert finished == [{"name": "Grace", "age": 85}]

    # A finished form leaves nothing behind.
    assert await stores.open().get_record("fsm", record_key(KEY)) is None


async def test_forms_in_two_topics_of_a_forum_are_separate(stores: StoreFactory) -> None:
    finished: list[dict[str, Any]] = []
    # Each process gets a list of (topic, text) messages; the forms of topics 11 and 22
    # interleave and both span the restart.
    runs = [
        [(11, "/start"), (22, "/start"), (11, "Ada"), (22, "Grace"), (22, "36")],
        [(22, "yes"), (11, "28"), (11, "yes")],
    ]
    for messages in runs:
        storage = AiogramStorage(stores.open())
        async with RunningBot(storage, finished, FSMStrategy.USER_IN_TOPIC) as running:
            for thread, text in messages:
                await running.say(text, thread=thread)
    assert finished == [{"name": "Grace", "age": 36}, {"name": "Ada", "age": 28}]


async def test_from_url_stores_the_form_as_fsm_rows_in_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    async with RunningBot(AiogramStorage.from_url(f"sqlite:///{path}"), []) as running:
        await running.say("/start")
        await running.say("Grace")

    with sqlite3.connect(path) as connection:
        rows = connection.execute("SELECT kind, key, value FROM botstate_records").fetchall()
    connection.close()
    assert [(kind, key) for kind, key, _ in rows] == [
        ("fsm", f'[{BOT_ID},-1001234567890,{2**33 + 1},null,null,"default"]')
    ]
    assert pickle.loads(rows[0][2]) == {"state": "Form:age", "data": {"name": "Grace"}}


# -- aiogram's storage semantics, on every store ------------------------------------------------


async def test_a_key_never_set_has_no_state_and_empty_data(stores: StoreFactory) -> None:
    storage = AiogramStorage(stores.open())
    assert await storage.get_state(KEY) is None
    assert await storage.get_data(KEY) == {}
    assert await storage.get_value(KEY, "missing", "fallback") == "fallback"


async def test_states_are_stored_by_name_and_come_back_as_strings(stores: StoreFactory) -> None:
    storage = AiogramStorage(stores.open())
    await storage.set_state(KEY, Form.age)
    assert await storage.get_state(KEY) == "Form:age"

    other = StorageKey(bot_id=BOT_ID, chat_id=1, user_id=1)
    await storage.set_state(other, "plain:text")

    restarted = AiogramStorage(stores.open())
    state = await restarted.get_state(KEY)
    assert state == "Form:age"
    assert type(state) is str
    assert await restarted.get_state(other) == "plain:text"


async def test_state_none_clears_the_state_and_keeps_the_data(stores: StoreFactory) -> None:
    storage = AiogramStorage(stores.open())
    await storage.set_state(KEY, Form.name)
    await storage.set_data(KEY, {"name": "Ada"})
    await storage.set_state(KEY, None)

    restarted = AiogramStorage(stores.open())
    assert await restarted.get_state(KEY) is None
    assert await restarted.get_data(KEY) == {"name": "Ada"}


async def test_data_comes_back_equal_after_a_restart(stores: StoreFactory) -> None:
    data = {
        "name": "Ada",
        "age": 36,
        "score": 0.5,
        "admin": False,
        "nickname": None,
        "answers": [1, "two", [3]],
        "address": {"city": "London", "zip": "N1"},
    }
    await AiogramStorage(stores.open()).set_data(KEY, data)
    restored = await AiogramStorage(stores.open()).get_data(KEY)
    assert restored == data
    assert type(restored["admin"]) is bool
    assert type(restored["age"]) is int


async def test_a_new_value_equal_under_eq_is_still_written(stores: StoreFactory) -> None:
    storage = AiogramStorage(stores.open())
    await storage.set_data(KEY, {"flag": 1})
    await storage.set_data(KEY, {"flag": True})
    assert type((await AiogramStorage(stores.open()).get_data(KEY))["flag"]) is bool


async def test_get_data_hands_out_copies(stores: StoreFactory) -> None:
    storage = AiogramStorage(stores.open())
    await storage.set_data(KEY, {"items": [1]})
    data = await storage.get_data(KEY)
    data["items"].append(2)
    data["new"] = True
    assert await storage.get_data(KEY) == {"items": [1]}


async def test_update_data_merges_and_returns_the_new_data(stores: StoreFactory) -> None:
    storage = AiogramStorage(stores.open())
    await storage.set_state(KEY, Form.age)
    await storage.set_data(KEY, {"name": "Ada", "age": 1})
    result = await storage.update_data(KEY, {"age": 36, "city": "London"})
    assert result == {"name": "Ada", "age": 36, "city": "London"}

    result["age"] = 99
    restarted = AiogramStorage(stores.open())
    assert await restarted.get_data(KEY) == {"name": "Ada", "age": 36, "city": "London"}
    assert await restarted.get_state(KEY) == "Form:age"


async def test_concurrent_updates_of_one_key_lose_nothing(stores: StoreFactory) -> None:
    storage = AiogramStorage(stores.open())
    await asyncio.gather(*(storage.update_data(KEY, {f"answer {i}": i}) for i in range(20)))
    assert await storage.get_data(KEY) == {f"answer {i}": i for i in range(20)}


async def test_concurrent_state_and_data_changes_of_one_key_both_land(
    stores: StoreFactory,
) -> None:
    storage = AiogramStorage(stores.open())
    await asyncio.gather(
        storage.set_state(KEY, Form.confirm), storage.update_data(KEY, {"name": "Ada"})
    )
    restarted = AiogramStorage(stores.open())
    assert await restarted.get_state(KEY) == "Form:confirm"
    assert await restarted.get_data(KEY) == {"name": "Ada"}


async def test_every_field_of_the_storage_key_separates_records(stores: StoreFactory) -> None:
    keys = [
        KEY,
        StorageKey(bot_id=BOT_ID + 1, chat_id=KEY.chat_id, user_id=KEY.user_id),
        StorageKey(bot_id=BOT_ID, chat_id=KEY.chat_id + 1, user_id=KEY.user_id),
        StorageKey(bot_id=BOT_ID, chat_id=KEY.chat_id, user_id=KEY.user_id + 1),
        StorageKey(bot_id=BOT_ID, chat_id=KEY.chat_id, user_id=KEY.user_id, thread_id=11),
        StorageKey(bot_id=BOT_ID, chat_id=KEY.chat_id, user_id=KEY.user_id, thread_id=22),
        StorageKey(
            bot_id=BOT_ID, chat_id=KEY.chat_id, user_id=KEY.user_id, business_connection_id="b"
        ),
        StorageKey(bot_id=BOT_ID, chat_id=KEY.chat_id, user_id=KEY.user_id, destiny="other"),
    ]
    storage = AiogramStorage(stores.open())
    for number, key in enumerate(keys):
        await storage.set_state(key, f"S:{number}")
        await storage.set_data(key, {"number": number})

    restarted = AiogramStorage(stores.open())
    for number, key in enumerate(keys):
        assert await restarted.get_state(key) == f"S:{number}"
        assert await restarted.get_data(key) == {"number": number}


async def test_clearing_one_key_leaves_other_keys_alone(stores: StoreFactory) -> None:
    other = StorageKey(bot_id=BOT_ID, chat_id=KEY.chat_id, user_id=KEY.user_id, thread_id=7)
    storage = AiogramStorage(stores.open())
    for key in (KEY, other):
        await storage.set_state(key, Form.age)
        await storage.set_data(key, {"name": "Ada"})

    await FSMContext(storage, KEY).clear()

    restarted = AiogramStorage(stores.open())
    assert await restarted.get_state(KEY) is None
    assert await restarted.get_data(KEY) == {}
    assert await restarted.get_state(other) == "Form:age"
    assert await restarted.get_data(other) == {"name": "Ada"}
    # A cleared key keeps no empty record.
    assert await restarted.persistence.get_record("fsm", record_key(KEY)) is None


async def test_clearing_a_key_that_has_no_record_writes_nothing(stores: StoreFactory) -> None:
    await FSMContext(AiogramStorage(stores.open()), KEY).clear()
    assert stores.writes == []


async def test_setting_the_same_state_again_writes_nothing(stores: StoreFactory) -> None:
    storage = AiogramStorage(stores.open())
    await storage.set_state(KEY, Form.name)
    await storage.set_state(KEY, "Form:name")
    await storage.update_data(KEY, {})
    assert stores.writes == [[("fsm", record_key(KEY))]]


async def test_data_that_is_not_a_mapping_is_refused(stores: StoreFactory) -> None:
    storage = AiogramStorage(stores.open())
    with pytest.raises(TypeError, match="aiogram data must be a dict, got list"):
        await storage.set_data(KEY, [("a", 1)])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="a state is a State, a str or None, got int"):
        await storage.set_state(KEY, 5)  # type: ignore[arg-type]
    assert stores.writes == []


async def test_data_that_cannot_be_stored_fails_and_keeps_the_stored_data(
    stores: StoreFactory,
) -> None:
    storage = AiogramStorage(stores.open())
    await storage.set_data(KEY, {"name": "Ada"})
    with pytest.raises(EncodingError, match=r"cannot store fsm\[.*\]\['data'\]\['lock'\]"):
        await storage.update_data(KEY, {"lock": threading.Lock()})
    assert await AiogramStorage(stores.open()).get_data(KEY) == {"name": "Ada"}


async def test_a_stored_value_that_is_no_aiogram_record_is_reported(
    stores: StoreFactory,
) -> None:
    persistence = stores.open()
    await persistence.update_record("fsm", record_key(KEY), ["not", "a", "record"])
    storage = AiogramStorage(persistence)
    with pytest.raises(CorruptDataError, match=r"fsm\[.*'default'\)\] is a list, not an aiogram"):
        await storage.get_state(KEY)
    with pytest.raises(CorruptDataError, match=r"delete the record with persistence\.drop_record"):
        await FSMContext(storage, KEY).clear()

    await persistence.drop_record("fsm", record_key(KEY))
    assert await storage.get_state(KEY) is None


async def test_aiogram_records_live_beside_python_telegram_bot_data(
    stores: StoreFactory,
) -> None:
    persistence = stores.open()
    await persistence.update_user_data(KEY.user_id, {"visits": 3})
    await AiogramStorage(persistence).set_state(KEY, Form.name)

    restarted = stores.open()
    assert await restarted.get_user_data() == {KEY.user_id: {"visits": 3}}
    assert await AiogramStorage(restarted).get_state(KEY) == "Form:name"


async def test_storage_may_be_used_again_after_close(stores: StoreFactory) -> None:
    storage = AiogramStorage(stores.open())
    await storage.set_state(KEY, Form.name)
    await storage.close()
    await storage.set_data(KEY, {"name": "Ada"})
    assert await storage.get_state(KEY) == "Form:name"
    assert await storage.get_data(KEY) == {"name": "Ada"}


# -- the pickle files stay python-telegram-bot's ------------------------------------------------


@pytest.mark.parametrize("single_file", [True, False])
async def test_python_telegram_bot_reads_a_pickle_store_holding_aiogram_records(
    tmp_path: Path, single_file: bool
) -> None:
    path = tmp_path / "bot.pickle"
    persistence = PicklePersistence(path, single_file=single_file)
    await persistence.update_user_data(5, {"n": 5})
    storage = AiogramStorage(persistence)
    await storage.set_state(KEY, Form.age)
    await storage.set_data(KEY, {"name": "Ada"})
    await storage.close()

    theirs: telegram.ext.PicklePersistence[Any, Any, Any] = telegram.ext.PicklePersistence(
        path, single_file=single_file
    )
    assert await theirs.get_user_data() == {5: {"n": 5}}
    assert await theirs.get_conversations("any") == {}

    again = AiogramStorage(PicklePersistence(path, single_file=single_file))
    assert await again.get_state(KEY) == "Form:age"
    assert await again.get_data(KEY) == {"name": "Ada"}
    await again.close()


async def test_pickle_file_keeps_the_aiogram_entry_only_while_it_holds_records(
    tmp_path: Path,
) -> None:
    path = tmp_path / "bot.pickle"
    storage = AiogramStorage(PicklePersistence(path))
    await storage.set_state(KEY, Form.name)
    content = pickle.loads(path.read_bytes())
    assert content["fsm"] == {record_key(KEY): {"state": "Form:name", "data": {}}}

    await storage.set_state(KEY, None)
    assert "fsm" not in pickle.loads(path.read_bytes())


async def test_multi_file_layout_keeps_aiogram_records_in_their_own_file(
    tmp_path: Path,
) -> None:
    persistence = PicklePersistence(tmp_path / "bot", single_file=False)
    await persistence.update_user_data(5, {"n": 5})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bot_user_data"]

    await AiogramStorage(persistence).set_state(KEY, Form.name)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bot_fsm", "bot_user_data"]
    assert pickle.loads((tmp_path / "bot_fsm").read_bytes()) == {
        record_key(KEY): {"state": "Form:name", "data": {}}
    }

    # The last record gone, the file goes too, and a reopened store finds no records.
    await AiogramStorage(persistence).set_state(KEY, None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bot_user_data"]
    again = AiogramStorage(PicklePersistence(tmp_path / "bot", single_file=False))
    assert await again.get_state(KEY) is None
    await again.close()


async def test_a_file_replaced_under_the_storage_fails_at_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from botstate import ConflictError

    storage = AiogramStorage(PicklePersistence(tmp_path / "bot.pickle"))
    await storage.update_data(KEY, {"step": 1})
    backup = (tmp_path / "bot.pickle").read_bytes()
    await storage.update_data(KEY, {"step": 2})
    (tmp_path / "bot.pickle").write_bytes(backup)  # a backup restored under the bot

    # Retrying cannot settle this (only a restart does): one try, one error.
    with caplog.at_level("WARNING"), pytest.raises(ConflictError, match="changed by another"):
        await storage.update_data(KEY, {"step": 3})
    assert caplog.text.count("was not stored") == 1
    # The change stays unstored; closing says so rather than dropping it silently.
    with pytest.raises(ConflictError):
        await storage.close()
