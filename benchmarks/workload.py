"""The benchmark's bot: its stored state, the changes of one cycle, and the application's calls.

A bot with N users talking to it in private chats holds N ``user_data`` dicts of about 100
pickled bytes, N ``chat_data`` dicts, a small ``bot_data`` and one conversation handler with a
state for each of the N (chat id, user id) pairs.

In one cycle K users send a message: their ``user_data`` changes, K conversations move to their
next state, and python-telegram-bot's ``Application.update_persistence`` hands the persistence
everything those updates touched. It deep-copies each touched user's and chat's data and the bot
data, starts one ``update_*`` call per touched id (the private chat of each user is touched too,
although its data did not change) plus ``update_bot_data`` and one ``update_conversation`` per
changed conversation, and gathers them all at once. :func:`update_like_application` makes the
same calls in the same way; :func:`load_like_application` makes the calls an application makes
at start-up.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Coroutine
from copy import deepcopy
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = [
    "HANDLER",
    "Handlers",
    "State",
    "Touched",
    "initial_state",
    "load_like_application",
    "update_like_application",
]

#: The name of the benchmark's one conversation handler.
HANDLER = "signup"

# Telegram user ids are large integers; the benchmark's users are consecutive from here.
_FIRST_USER = 600_000_000
# A fixed start time keeps the generated data the same from run to run.
_EPOCH = 1_767_225_600

ConversationKey = tuple[int, ...]


@dataclass
class State:
    """Everything a bot holds, in the shapes python-telegram-bot hands to a persistence."""

    user_data: dict[int, dict[str, Any]]
    chat_data: dict[int, dict[str, Any]]
    bot_data: dict[str, Any]
    conversations: dict[str, dict[ConversationKey, object]]

    def records(self) -> int:
        """The number of stored records: users, chats, conversation states and bot_data."""
        return (
            len(self.user_data)
            + len(self.chat_data)
            + sum(len(states) for states in self.conversations.values())
            + 1
        )


@dataclass
class Touched:
    """What one cycle touched: the ids and conversation keys the application hands over."""

    users: list[int] = field(default_factory=list)
    chats: list[int] = field(default_factory=list)
    conversations: list[tuple[str, ConversationKey]] = field(default_factory=list)


def _user(number: int) -> dict[str, Any]:
    # About 100 bytes once pickled.
    return {
        "name": f"user {number}",
        "language": "en",
        "visits": number % 50,
        "cart": [number % 7, number % 11, 3],
        "premium": False,
        "last_seen": _EPOCH + number,
    }


def initial_state(n: int) -> State:
    """The stored state of a bot with *n* users, each in a private chat with it."""
    ids = range(_FIRST_USER, _FIRST_USER + n)
    return State(
        user_data={user_id: _user(user_id - _FIRST_USER) for user_id in ids},
        chat_data={
            chat_id: {"title": f"chat {chat_id}", "messages": chat_id % 300, "muted": False}
            for chat_id in ids
        },
        bot_data={"started": _EPOCH, "admins": [_FIRST_USER], "motd": "welcome"},
        conversations={HANDLER: {(user_id, user_id): user_id % 4 for user_id in ids}},
    )


class Handlers:
    """The bot's handlers: each cycle they change some users' data and conversation states."""

    def __init__(self, state: State, seed: int) -> None:
        self.state = state
        self._rng = random.Random(seed)
        self._users = sorted(state.user_data)
        self._keys = sorted(state.conversations[HANDLER])
        self._cycles = 0

    def next_cycle(self, k: int) -> Touched:
        """Change *k* users and *k* conversations of the state in place.

        Returns what the application hands to the persistence afterwards: the changed users,
        their (unchanged) private chats and the changed conversations.
        """
        self._cycles += 1
        users = self._rng.sample(self._users, k)
        for user_id in users:
            data = self.state.user_data[user_id]
            data["visits"] += 1
            data["last_seen"] = _EPOCH + 1_000_000 + self._cycles
        states = self.state.conversations[HANDLER]
        keys = self._rng.sample(self._keys, k)
        for key in keys:
            current = states[key]
            states[key] = (current + 1) % 4 if isinstance(current, int) else 0
        return Touched(
            users=users,
            chats=[user_id for user_id in users if user_id in self.state.chat_data],
            conversations=[(HANDLER, key) for key in keys],
        )


class PersistenceLike(Protocol):
    """The calls of python-telegram-bot's ``BasePersistence`` the benchmark makes."""

    async def get_user_data(self) -> Any: ...
    async def get_chat_data(self) -> Any: ...
    async def get_bot_data(self) -> Any: ...
    async def get_conversations(self, name: str) -> Any: ...
    async def update_user_data(self, user_id: int, data: Any) -> None: ...
    async def update_chat_data(self, chat_id: int, data: Any) -> None: ...
    async def update_bot_data(self, data: Any) -> None: ...
    async def update_conversation(self, name: str, key: Any, new_state: Any) -> None: ...


async def load_like_application(persistence: PersistenceLike) -> State:
    """Load everything, in the order an application and its conversation handler do."""
    user_data = await persistence.get_user_data()
    chat_data = await persistence.get_chat_data()
    bot_data = await persistence.get_bot_data()
    conversations = {HANDLER: await persistence.get_conversations(HANDLER)}
    return State(dict(user_data), dict(chat_data), bot_data, conversations)


async def update_like_application(
    persistence: PersistenceLike, state: State, touched: Touched
) -> None:
    """Hand what *touched* names to *persistence* as ``Application.update_persistence`` does.

    Raises the first error any of the calls raised.
    """
    calls: set[Coroutine[Any, Any, None]] = {persistence.update_bot_data(deepcopy(state.bot_data))}
    for chat_id in touched.chats:
        calls.add(persistence.update_chat_data(chat_id, deepcopy(state.chat_data[chat_id])))
    for user_id in touched.users:
        calls.add(persistence.update_user_data(user_id, deepcopy(state.user_data[user_id])))
    for name, key in touched.conversations:
        new_state = state.conversations[name][key]
        calls.add(persistence.update_conversation(name=name, key=key, new_state=new_state))

    results = await asyncio.gather(*calls, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
