"""Values that cannot be stored: one bad record fails alone, named with its path, every time.

:func:`bad_value_trial` puts each value of :data:`BAD_VALUES` into one record of each kind, in a
cycle that also changes every other record, and checks that

* the bad record's call raises :class:`~botstate.errors.EncodingError` naming the record and
  the path of the bad part inside it (``user_data[42]['cart'][1]``);
* every other record of the cycle is stored;
* the bad record keeps its last stored version, readable after a restart;
* writing the bad record again raises again.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
import threading
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botstate import EncodingError
from botstate.persistence import Persistence
from tests.stores import STORES


class Order:
    """A plain class a bot might keep in its data; pickles fine unless an attribute does not."""

    def __init__(self, handle: object) -> None:
        self.items = ["tea"]
        self.handle = handle


def _local_class_instance() -> object:
    class Local:
        pass

    return Local()


def _generator() -> Iterator[int]:
    yield 1


@contextlib.contextmanager
def _closing(make: Callable[[], Any]) -> Iterator[Any]:
    value = make()
    try:
        yield value
    finally:
        value.close()


@contextlib.contextmanager
def _plain(make: Callable[[], Any]) -> Iterator[Any]:
    yield make()


#: Name to a context manager giving a value no codec can store (and closing it afterwards).
BAD_VALUES: dict[str, Callable[[], contextlib.AbstractContextManager[Any]]] = {
    "a lock": lambda: _plain(threading.Lock),
    "a socket": lambda: _closing(socket.socket),
    "an open file": lambda: _closing(lambda: open(os.devnull)),  # noqa: SIM115
    "a lambda": lambda: _plain(lambda: lambda: None),
    "a generator": lambda: _plain(_generator),
    "an instance of a class defined in a function": lambda: _plain(_local_class_instance),
    "a module": lambda: _plain(lambda: sys),
    "a weak reference": lambda: _plain(lambda: weakref.ref(Order)),
    "a thread-local object": lambda: _plain(threading.local),
}

#: Where the bad part sits in a record (as a factory of the record), and the path that names it.
PLACES: dict[str, tuple[Callable[[Any], Any], str]] = {
    "in a list": (lambda bad: {"cart": ["apple", bad]}, "['cart'][1]"),
    "in an object's attribute": (lambda bad: {"order": Order(bad)}, "['order'].handle"),
}


@dataclass
class BadValueFigures:
    """What :func:`bad_value_trial` tried on one store."""

    store: str
    tried: int = 0
    problems: list[str] = field(default_factory=list)


def bad_value_trial(store: str, folder: Path) -> BadValueFigures:
    """Try every bad value, in every place, in a record of every kind."""
    figures = BadValueFigures(store)
    for value_name, bad_value in BAD_VALUES.items():
        for place, (record_of, path) in PLACES.items():
            for kind in RECORDS:
                work = folder / f"trial-{figures.tried}"
                work.mkdir(parents=True)
                with bad_value() as bad:
                    problem = asyncio.run(_one_bad_record(store, work, kind, record_of(bad), path))
                figures.tried += 1
                if problem:
                    figures.problems.append(f"{store}: {value_name} {place} in {kind}: {problem}")
    return figures


#: One record of each kind: name in messages, how to write it, how to read it back.
RECORDS: dict[str, tuple[str, Callable[[Persistence[Any, Any, Any], Any], Any]]] = {
    "user_data": ("user_data[42]", lambda p, v: p.update_user_data(42, v)),
    "chat_data": ("chat_data[-100]", lambda p, v: p.update_chat_data(-100, v)),
    "bot_data": ("bot_data", lambda p, v: p.update_bot_data(v)),
    "callback_data": (
        "callback_data",
        lambda p, v: p.update_callback_data(([("kb", 1.0, {"button": v})], {"q": "kb"})),
    ),
    "conversations": (
        "conversations['flow'][(42,)]",
        lambda p, v: p.update_conversation("flow", (42,), v),
    ),
}


async def _stored(persistence: Persistence[Any, Any, Any]) -> dict[str, Any]:
    callback = await persistence.get_callback_data()
    return {
        "user_data": (await persistence.get_user_data()).get(42),
        "chat_data": (await persistence.get_chat_data()).get(-100),
        "bot_data": await persistence.get_bot_data(),
        "callback_data": None if callback is None else callback[0][0][2]["button"],
        "conversations": (await persistence.get_conversations("flow")).get((42,)),
    }


async def _one_bad_record(
    store: str, folder: Path, bad_kind: str, bad: Any, path: str
) -> str | None:
    """Return what went wrong with a cycle whose *bad_kind* record holds *bad*, or None."""
    entry = STORES[store]
    persistence = entry.open(folder)
    try:
        await asyncio.gather(
            *(write(persistence, {"version": 1}) for _, write in RECORDS.values())
        )

        # One cycle: the bad record, and a new version of every other one.
        calls = [
            write(persistence, bad if kind == bad_kind else {"version": 2})
            for kind, (_, write) in RECORDS.items()
        ]
        results = await asyncio.gather(*calls, return_exceptions=True)
        for kind, result in zip(RECORDS, results, strict=True):
            if kind != bad_kind and result is not None:
                return f"the good {kind} record failed too: {result!r}"
        error = results[list(RECORDS).index(bad_kind)]
        name = RECORDS[bad_kind][0]
        if not isinstance(error, EncodingError):
            return f"expected EncodingError, got {error!r}"
        if bad_kind == "callback_data":
            name += "[0][0][2]['button']"
        if f"cannot store {name}{path}" not in str(error):
            return f"the error does not name {name}{path}: {error}"

        # The application hands the record over again next cycle: it must fail again.
        try:
            await RECORDS[bad_kind][1](persistence, bad)
        except EncodingError:
            pass
        else:
            return "the second write of the bad record did not raise"
    finally:
        with contextlib.suppress(EncodingError):
            await persistence.close()

    reopened = entry.open(folder)
    try:
        stored = await _stored(reopened)
    finally:
        await reopened.close()
    expected = {kind: {"version": 1 if kind == bad_kind else 2} for kind in RECORDS}
    if stored != expected:
        return f"after a restart the store holds {stored}, expected {expected}"
    return None
