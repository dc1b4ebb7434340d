"""The bot-like workload of the crash harness, and how to check what survived it.

A cycle is what python-telegram-bot hands a persistence after one update interval: the data of
the users and chats that were touched, a few of them dropped, conversation states set or ended,
``bot_data`` and the callback data cache. Everything a cycle writes follows from the seed and
the cycle number, and each value carries its kind, key and cycle, so a loaded value is checked
whole: it must be exactly the value one cycle wrote for that record.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import Awaitable, Iterable
from typing import Any

from botstate.kinds import describe
from botstate.persistence import Persistence

#: The conversation handler whose states the workload keeps.
HANDLER = "flow"
USERS = 200
CHATS = 40
CONVERSATIONS = 60
#: Bytes of filler in each user and chat record: enough that a file store's write takes long
#: enough for kills to land inside it.
FILLER = 1500

Address = tuple[str, Any]
#: For each stored record, the number of the cycle that wrote it.
Summary = dict[Address, int]


def plan(seed: int, number: int) -> dict[Address, bool]:
    """The records cycle *number* writes (True) or removes (False)."""
    rng = random.Random(f"{seed}/{number}")
    changes: dict[Address, bool] = {}
    for kind, count, most in (("user_data", USERS, 30), ("chat_data", CHATS, 8)):
        for key in rng.sample(range(count), rng.randint(1, most)):
            changes[(kind, key)] = True
        if rng.random() < 0.3:
            # A drop wins over an update of the same id, as in python-telegram-bot.
            for key in rng.sample(range(count), rng.randint(1, 3)):
                changes[(kind, key)] = False
    for slot in rng.sample(range(CONVERSATIONS), rng.randint(0, 6)):
        changes[("conversations", (HANDLER, (slot, slot * 7)))] = rng.random() < 0.75
    changes[("bot_data", None)] = True
    changes[("callback_data", None)] = True
    return changes


def value(kind: str, key: Any, number: int) -> Any:
    """The value cycle *number* writes for the record (*kind*, *key*)."""
    if kind == "conversations":
        return ("step", number, key[1])
    if kind == "callback_data":
        keyboard = f"keyboard-{number}"
        return ([(keyboard, float(number), {"button": number})], {f"query-{number}": keyboard})
    filler = hashlib.shake_128(f"{kind}/{key}/{number}".encode()).digest(FILLER)
    return {"kind": kind, "key": key, "cycle": number, "filler": filler}


def calls(
    persistence: Persistence[Any, Any, Any], seed: int, number: int
) -> list[Awaitable[None]]:
    """The persistence calls of one cycle, as an application makes them."""
    result: list[Awaitable[None]] = []
    for (kind, key), write in plan(seed, number).items():
        new = value(kind, key, number) if write else None
        if kind == "user_data":
            result.append(
                persistence.update_user_data(key, new)
                if write
                else persistence.drop_user_data(key)
            )
        elif kind == "chat_data":
            result.append(
                persistence.update_chat_data(key, new)
                if write
                else persistence.drop_chat_data(key)
            )
        elif kind == "conversations":
            result.append(persistence.update_conversation(HANDLER, key[1], new))
        elif kind == "bot_data":
            result.append(persistence.update_bot_data(new))
        else:
            result.append(persistence.update_callback_data(new))
    return result


async def run_cycle(persistence: Persistence[Any, Any, Any], seed: int, number: int) -> None:
    """Hand cycle *number* to *persistence* and return once every call returned."""
    results = await asyncio.gather(*calls(persistence, seed, number), return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result


def expected(start: Summary, seed: int, numbers: Iterable[int]) -> Summary:
    """What the store holds after cycles *numbers* were applied in full to *start*."""
    result = dict(start)
    for number in numbers:
        for address, write in plan(seed, number).items():
            if write:
                result[address] = number
            else:
                result.pop(address, None)
    return result


async def load_all(persistence: Persistence[Any, Any, Any]) -> dict[Address, Any]:
    """Every stored record, as an application loads them at start-up."""
    loaded: dict[Address, Any] = {}
    for key, data in (await persistence.get_user_data()).items():
        loaded[("user_data", key)] = data
    for key, data in (await persistence.get_chat_data()).items():
        loaded[("chat_data", key)] = data
    bot_data = await persistence.get_bot_data()
    if bot_data != {}:
        loaded[("bot_data", None)] = bot_data
    callback_data = await persistence.get_callback_data()
    if callback_data is not None:
        loaded[("callback_data", None)] = callback_data
    for key, state in (await persistence.get_conversations(HANDLER)).items():
        loaded[("conversations", (HANDLER, key))] = state
    return loaded


def summarize(loaded: dict[Address, Any]) -> tuple[Summary, list[str]]:
    """The cycle of each loaded record, and a problem for each value no cycle wrote."""
    summary: Summary = {}
    problems = []
    for (kind, key), data in loaded.items():
        number = _cycle_of(kind, data)
        if number is None or data != value(kind, key, number):
            problems.append(
                f"{describe(kind, key)} holds a value no cycle wrote (mixed or damaged)"
            )
        else:
            summary[(kind, key)] = number
    return summary, problems


def _cycle_of(kind: str, data: Any) -> int | None:
    try:
        if kind == "conversations":
            number = data[1]
        elif kind == "callback_data":
            number = data[0][0][1]
        else:
            number = data["cycle"]
    except (TypeError, KeyError, IndexError):
        return None
    return int(number) if isinstance(number, (int, float)) else None


def compare(observed: Summary, old: Summary, new: Summary, atomic: bool) -> list[str]:
    """Problems of *observed* against the state before (*old*) and after (*new*) the cycle that
    was in flight: each record must be old or new, and with *atomic* the whole store too."""
    problems = []
    for address in sorted(old.keys() | new.keys() | observed.keys(), key=repr):
        got, before, after = observed.get(address), old.get(address), new.get(address)
        if got not in (before, after):
            problems.append(
                f"{describe(*address)} is from cycle {got}; expected cycle {before} or {after} "
                "(None: not stored)"
            )
    if atomic and not problems and observed not in (old, new):
        changed = sorted(
            describe(*a) for a in old.keys() | new.keys() if observed.get(a) != old.get(a)
        )
        problems.append(f"the cycle in flight was applied in part: only {', '.join(changed[:5])}")
    return problems
