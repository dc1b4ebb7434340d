"""Run a python-telegram-bot application offline: no network, no real token.

:class:`OfflineRequest` answers the Bot API calls a bot makes (``getMe``, ``sendMessage``,
``answerCallbackQuery``, ...) locally and records them; :func:`feed` hands an update, given as
Bot API JSON, to an application the way its updater would. ``botstate demo`` and botstate's own
tests use them; they serve for testing your own bot with botstate too::

    request = OfflineRequest()
    application = (
        Application.builder()
        .token(OfflineRequest.TOKEN)
        .request(request)
        .get_updates_request(OfflineRequest())
        .updater(None)
        .persistence(SQLitePersistence("bot.db"))
        .build()
    )
    async with application:
        await feed(application, {"update_id": 1, "message": {...}})
    print(request.sent)

Requires python-telegram-bot (``pip install botstate[telegram]``).
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Mapping
from typing import Any

from telegram import Update
from telegram.ext import Application, ExtBot
from telegram.request import BaseRequest, RequestData

__all__ = ["BOT_USER", "OfflineRequest", "button_update", "feed", "text_update"]

#: The user the offline Bot API reports as the bot (answer to ``getMe``).
BOT_USER: Mapping[str, Any] = {
    "id": 700000001,
    "is_bot": True,
    "first_name": "botstate demo",
    "username": "botstate_demo_bot",
    "can_join_groups": True,
    "can_read_all_group_messages": False,
    "supports_inline_queries": False,
}


class OfflineRequest(BaseRequest):
    """A request backend that answers Bot API calls locally instead of calling Telegram.

    Attributes:
        calls: Every call as ``(method name, parameters)``, in order.
        sent: The messages the bot sent or edited, as the Bot API JSON it answered with.
    """

    #: A syntactically valid token that belongs to no bot.
    TOKEN = "700000001:offline-token-for-tests-only"

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.sent: list[dict[str, Any]] = []
        self._message_ids = itertools.count(1000)

    @property
    def read_timeout(self) -> float | None:
        return 1.0

    async def initialize(self) -> None:
        """Nothing to set up."""

    async def shutdown(self) -> None:
        """Nothing to release."""

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: Any = None,
        write_timeout: Any = None,
        connect_timeout: Any = None,
        pool_timeout: Any = None,
    ) -> tuple[int, bytes]:
        api_method = url.rsplit("/", 1)[-1]
        parameters = dict(request_data.parameters) if request_data else {}
        self.calls.append((api_method, parameters))
        result = self.answer(api_method, parameters)
        return 200, json.dumps({"ok": True, "result": result}).encode()

    def answer(self, api_method: str, parameters: dict[str, Any]) -> Any:
        """Return the ``result`` of one Bot API call. Override to answer more methods."""
        if api_method == "getMe":
            return dict(BOT_USER)
        if api_method == "getUpdates":
            return []
        if api_method in ("sendMessage", "editMessageText"):
            message: dict[str, Any] = {
                "message_id": parameters.get("message_id") or next(self._message_ids),
                "date": int(time.time()),
                "chat": {"id": int(parameters["chat_id"]), "type": "private"},
                "from": dict(BOT_USER),
                "text": parameters.get("text", ""),
            }
            if "reply_markup" in parameters:
                markup = parameters["reply_markup"]
                message["reply_markup"] = json.loads(markup) if isinstance(markup, str) else markup
            self.sent.append(message)
            return message
        return True


async def feed(
    application: Application[Any, Any, Any, Any, Any, Any], data: Mapping[str, Any]
) -> Update:
    """Process one update given as Bot API JSON, as the application's updater would.

    Callback data of buttons is resolved from the bot's callback data cache first, as
    python-telegram-bot's updater does when it fetches updates.
    """
    update = Update.de_json(dict(data), application.bot)
    if isinstance(application.bot, ExtBot):
        application.bot.insert_callback_data(update)
    await application.process_update(update)
    return update


def text_update(
    update_id: int, text: str, *, chat: Mapping[str, Any], user: Mapping[str, Any]
) -> dict[str, Any]:
    """Return the Bot API JSON of an update carrying a text message (a command if it starts
    with ``/``) from *user* in *chat*."""
    message: dict[str, Any] = {
        "message_id": update_id,
        "date": int(time.time()),
        "chat": dict(chat),
        "from": dict(user),
        "text": text,
    }
    if text.startswith("/"):
        command = text.split(maxsplit=1)[0]
        message["entities"] = [{"type": "bot_command", "offset": 0, "length": len(command)}]
    return {"update_id": update_id, "message": message}


def button_update(
    update_id: int, keyboard_message: Mapping[str, Any], button: int, *, user: Mapping[str, Any]
) -> dict[str, Any]:
    """Return the Bot API JSON of *user* tapping the *button*-th inline button (counted across
    rows) of *keyboard_message*, a message the bot sent (see :attr:`OfflineRequest.sent`)."""
    rows = keyboard_message["reply_markup"]["inline_keyboard"]
    data = [key for row in rows for key in row][button]["callback_data"]
    return {
        "update_id": update_id,
        "callback_query": {
            "id": f"query-{update_id}",
            "from": dict(user),
            "chat_instance": str(keyboard_message["chat"]["id"]),
            "message": dict(keyboard_message),
            "data": data,
        },
    }
