"""``botstate demo``: a real python-telegram-bot application keeps its state across a kill.

The demo runs a sign-up bot offline (Bot API calls are answered locally, see
:mod:`botstate.testing`) on a scripted conversation given as Bot API update JSON:

1. A first process starts the application on the store, a user sends ``/start`` and their
   name, the bot answers with an inline keyboard carrying arbitrary callback data. After each
   update the application stores its state, as its interval timer would. Then the demo kills
   that process with SIGKILL: no shutdown, no flush.
2. A second process starts a new application on the same store, shows what it restored (the
   user's data, the conversation state, the callback data behind the keyboard), and finishes
   the conversation: the user taps a button of the old keyboard and answers the last question.

It needs no token and no network, and leaves its files in the folder it names.
"""

from __future__ import annotations

import asyncio
import enum
import json
import os
import shlex
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any, cast

__all__ = ["run_demo"]

USER = {"id": 5000000001, "is_bot": False, "first_name": "Ada", "language_code": "en"}
CHAT = {"id": 5000000001, "type": "private", "first_name": "Ada"}
STORE_FILES = {"sqlite": "bot.db", "pickle": "bot.pickle"}
MARKER = ".botstate-demo"
KILL_ME = "@@botstate-demo: ready to be killed@@"


class Step(enum.IntEnum):
    """The states of the sign-up conversation."""

    NAME = 1
    PLAN = 2
    AGE = 3


# -- the bot ------------------------------------------------------------------------------------


def _build_application(store: str, folder: Path) -> tuple[Any, Any]:
    from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
    from telegram.ext import (
        Application,
        CallbackQueryHandler,
        CommandHandler,
        ConversationHandler,
        MessageHandler,
        TypeHandler,
        filters,
    )
    from telegram.warnings import PTBUserWarning

    from botstate import Persistence, PicklePersistence, SQLitePersistence
    from botstate.telegram import for_application
    from botstate.testing import OfflineRequest

    # The sign-up conversation tracks chats and users, not messages, on purpose.
    warnings.filterwarnings("ignore", "If 'per_message=False'", PTBUserWarning)

    async def count_messages(update: Update, context: Any) -> None:
        context.chat_data["updates"] = context.chat_data.get("updates", 0) + 1

    async def start(update: Update, context: Any) -> Step:
        assert update.effective_message
        await update.effective_message.reply_text("Welcome! What is your name?")
        return Step.NAME

    async def name(update: Update, context: Any) -> Step:
        assert update.effective_message
        assert update.effective_message.text
        context.user_data["name"] = update.effective_message.text
        keyboard = InlineKeyboardMarkup(
            [
                [
                    InlineKeyboardButton("Free", callback_data=("plan", "free", {"price": 0})),
                    InlineKeyboardButton("Pro", callback_data=("plan", "pro", {"price": 5})),
                ]
            ]
        )
        await update.effective_message.reply_text(
            f"Nice to meet you, {context.user_data['name']}. Which plan?", reply_markup=keyboard
        )
        return Step.PLAN

    async def plan(update: Update, context: Any) -> Step:
        query = update.callback_query
        assert query
        await query.answer()
        _, chosen, terms = cast("tuple[str, str, dict[str, int]]", query.data)
        context.user_data["plan"] = chosen
        context.user_data["price"] = terms["price"]
        await query.edit_message_text(f"{chosen.title()} plan it is. How old are you?")
        return Step.AGE

    async def age(update: Update, context: Any) -> int:
        assert update.effective_message
        assert update.effective_message.text
        context.user_data["age"] = int(update.effective_message.text)
        context.bot_data["signups"] = context.bot_data.get("signups", 0) + 1
        data = context.user_data
        await update.effective_message.reply_text(
            f"All set, {data['name']}: {data['plan']} plan, age {data['age']}."
        )
        return ConversationHandler.END

    path = folder / STORE_FILES[store]
    persistence: Persistence[Any, Any, Any] = (
        SQLitePersistence(path) if store == "sqlite" else PicklePersistence(path)
    )
    request = OfflineRequest()
    application = (
        Application.builder()
        .token(OfflineRequest.TOKEN)
        .request(request)
        .get_updates_request(OfflineRequest())
        .updater(None)
        .arbitrary_callback_data(True)
        .persistence(for_application(persistence))
        .build()
    )
    application.add_handler(TypeHandler(Update, count_messages), group=-1)
    application.add_handler(
        ConversationHandler(
            entry_points=[CommandHandler("start", start)],
            states={
                Step.NAME: [MessageHandler(filters.TEXT & ~filters.COMMAND, name)],
                Step.PLAN: [CallbackQueryHandler(plan)],
                Step.AGE: [MessageHandler(filters.Regex(r"^\d+$"), age)],
            },
            fallbacks=[],
            name="signup",
            persistent=True,
            per_message=False,
        )
    )
    return application, request


def _say(who: str, text: str) -> None:
    print(f"    {who:<4} > {text}", flush=True)


def _bot_lines(request: Any, seen: int) -> int:
    for message in request.sent[seen:]:
        buttons = ""
        markup = message.get("reply_markup")
        if markup:
            labels = [key["text"] for row in markup["inline_keyboard"] for key in row]
            buttons = "  " + " ".join(f"[{label}]" for label in labels)
        _say("bot", message["text"] + buttons)
    return len(request.sent)


async def _phase_one(store: str, folder: Path) -> None:
    from botstate.testing import feed, text_update

    application, request = _build_application(store, folder)
    seen = 0
    async with application:
        for update_id, text in ((1, "/start"), (2, "Ada")):
            _say("user", text)
            await feed(application, text_update(update_id, text, chat=CHAT, user=USER))
            # What the application's interval timer does every update_interval seconds.
            await application.update_persistence()
            seen = _bot_lines(request, seen)
        (folder / "transcript.json").write_text(json.dumps(request.sent, indent=2))
        print("    (state stored after each update)", flush=True)
        print(KILL_ME, flush=True)
        await asyncio.sleep(3600)


async def _phase_two(store: str, folder: Path) -> None:
    from botstate.testing import button_update, feed, text_update

    application, request = _build_application(store, folder)
    keyboard_message = json.loads((folder / "transcript.json").read_text())[-1]
    user_id, chat_id = USER["id"], CHAT["id"]
    async with application:
        restored_user = application.user_data.get(user_id, {})
        conversations = application.persistence.get_conversations("signup")
        state = (await conversations).get((chat_id, user_id))
        cache = application.bot.callback_data_cache
        keyboards = len(cache.persistence_data[0])
        print("  It restored:", flush=True)
        print(f"    user_data[{user_id}] = {restored_user}", flush=True)
        print(f"    chat_data[{chat_id}] = {dict(application.chat_data.get(chat_id, {}))}")
        print(f"    conversation 'signup' of ({chat_id}, {user_id}) = {state!r}")
        print(f"    callback data: {keyboards} keyboard(s) with their Python objects", flush=True)
        if restored_user.get("name") != "Ada" or state != Step.PLAN or keyboards != 1:
            print("  botstate demo: FAILED, the state was not restored", file=sys.stderr)
            raise SystemExit(1)

        print("  The conversation goes on where it stopped:", flush=True)
        _say("user", "taps [Pro] on the keyboard sent before the kill")
        await feed(application, button_update(3, keyboard_message, 1, user=USER))
        seen = _bot_lines(request, 0)
        _say("user", "36")
        await feed(application, text_update(4, "36", chat=CHAT, user=USER))
        _bot_lines(request, seen)
    # Leaving "async with" shut the application down, which stored and flushed its state.

    print("  Stored at the end:", flush=True)
    print(f"    user_data[{user_id}] = {application.user_data[user_id]}")
    print(f"    bot_data = {application.bot_data}")
    if application.user_data[user_id].get("age") != 36:
        print("  botstate demo: FAILED, the conversation did not finish", file=sys.stderr)
        raise SystemExit(1)


# -- the orchestration --------------------------------------------------------------------------


def _prepare_folder(folder: Path, store: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / MARKER
    leftovers = [p for p in folder.iterdir() if p.name != MARKER]
    if leftovers and not marker.exists():
        raise SystemExit(
            f"botstate demo: {folder} is not empty and was not made by the demo; "
            "choose another folder with --dir"
        )
    # Start over: remove only files an earlier demo run made.
    for leftover in leftovers:
        if leftover.is_file() and (
            leftover.name.startswith(tuple(STORE_FILES.values()))
            or leftover.name == "transcript.json"
        ):
            leftover.unlink()
    marker.write_text("This folder was made by 'botstate demo'; it may be deleted.\n")


def _child(phase: int, store: str, folder: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-u", "-m", "botstate.demo", str(phase), store, str(folder)],
        stdout=subprocess.PIPE,
        text=True,
    )


def run_demo(folder: Path, store: str = "sqlite") -> int:
    """Run the demo in *folder* on *store* (``"sqlite"`` or ``"pickle"``); return an exit code."""
    try:
        import telegram  # noqa: F401
    except ImportError:
        print(
            "botstate demo needs python-telegram-bot: pip install 'botstate[telegram]'",
            file=sys.stderr,
        )
        return 2
    folder = folder.resolve()
    _prepare_folder(folder, store)
    path = folder / STORE_FILES[store]
    kind = "SQLitePersistence" if store == "sqlite" else "PicklePersistence"
    print(f"botstate demo: a python-telegram-bot application, offline, on {kind}")
    print(f"  store: {path}\n")

    first = _child(1, store, folder)
    print(f"Process 1 (pid {first.pid}) starts the bot:", flush=True)
    assert first.stdout is not None
    for line in first.stdout:
        if line.strip() == KILL_ME:
            first.kill()
            break
        print(line, end="", flush=True)
    first.wait()
    if first.returncode != -9 and os.name == "posix":
        print(f"botstate demo: process 1 ended on its own ({first.returncode})", file=sys.stderr)
        return 1
    print("  Process 1 was killed with SIGKILL: no shutdown, no flush.\n")

    second = _child(2, store, folder)
    print(f"Process 2 (pid {second.pid}) starts a new application on the same store.", flush=True)
    assert second.stdout is not None
    for line in second.stdout:
        print(line, end="", flush=True)
    if second.wait() != 0:
        return 1

    print(f"\nThe demo's files are in {folder}")
    print(f"Look inside the store: botstate inspect {shlex.quote(f'{store}://{path}')}")
    return 0


def _main(argv: list[str]) -> None:
    phase, store, folder = int(argv[0]), argv[1], Path(argv[2])
    asyncio.run(_phase_one(store, folder) if phase == 1 else _phase_two(store, folder))


if __name__ == "__main__":
    _main(sys.argv[1:])
