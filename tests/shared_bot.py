"""A python-telegram-bot application run as one worker of several on a shared store.

Started by tests/test_telegram_shared.py as ``python -m tests.shared_bot SERVER NAME WORKER``:
it reads Bot API updates as JSON lines on stdin, processes each one offline and answers with a
JSON line listing the texts the bot sent for it. At the end of stdin the application stops,
which flushes its persistence.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from typing import Any

from telegram import Update
from telegram.ext import (
    Application,
    CallbackContext,
    CommandHandler,
    ConversationHandler,
    MessageHandler,
    filters,
)

from botstate.telegram import share_state
from botstate.testing import OfflineRequest, feed

from . import servers

NAME, AGE = range(2)


def build(server: str, name: str, worker: str, shared: bool) -> tuple[Any, OfflineRequest]:
    async def start(update: Update, context: CallbackContext[Any, Any, Any, Any]) -> int:
        assert update.effective_message
        context.user_data["started_by"] = worker
        await update.effective_message.reply_text("What is your name?")
        return NAME

    async def got_name(update: Update, context: CallbackContext[Any, Any, Any, Any]) -> int:
        assert update.effective_message
        context.user_data["name"] = update.effective_message.text
        await update.effective_message.reply_text("How old are you?")
        return AGE

    async def got_age(update: Update, context: CallbackContext[Any, Any, Any, Any]) -> int:
        assert update.effective_message
        name = context.user_data.get("name", "?")
        context.user_data["age"] = update.effective_message.text
        await update.effective_message.reply_text(
            f"Thanks {name} ({update.effective_message.text})"
        )
        return ConversationHandler.END

    request = OfflineRequest()
    application = (
        Application.builder()
        .token(OfflineRequest.TOKEN)
        .request(request)
        .get_updates_request(OfflineRequest())
        .updater(None)
        .persistence(servers.open_persistence(server, name))
        .build()
    )
    application.add_handler(
        ConversationHandler(
            entry_points=[CommandHandler("start", start)],
            states={
                NAME: [MessageHandler(filters.TEXT & ~filters.COMMAND, got_name)],
                AGE: [MessageHandler(filters.TEXT & ~filters.COMMAND, got_age)],
            },
            fallbacks=[],
            name="signup",
            persistent=True,
        )
    )
    if shared:
        share_state(application)
    return application, request


async def main(server: str, name: str, worker: str, shared: bool) -> None:
    application, request = build(server, name, worker, shared)
    async with application:
        print(json.dumps({"ready": worker}), flush=True)
        loop = asyncio.get_running_loop()
        while line := await loop.run_in_executor(None, sys.stdin.readline):
            before = len(request.sent)
            await feed(application, json.loads(line))
            if not shared:
                await application.update_persistence()
            sent = [message["text"] for message in request.sent[before:]]
            print(json.dumps({"sent": sent}), flush=True)


if __name__ == "__main__":
    if os.environ.get("SHARED_BOT_LOG"):
        # For debugging a failing run: botstate's log on stderr, lines marked with the worker.
        logging.basicConfig(format=f"{sys.argv[3]} %(name)s %(message)s")
        logging.getLogger("botstate").setLevel(os.environ["SHARED_BOT_LOG"])
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "shared"))
