"""aiogram integration: any botstate store as aiogram 3's finite-state-machine storage.

Give the dispatcher an :class:`AiogramStorage` and every state and every piece of form data
lives in a botstate store, with its durability, formats and tools::

    from aiogram import Dispatcher
    from botstate.aiogram import AiogramStorage

    dispatcher = Dispatcher(storage=AiogramStorage.from_url("sqlite:///var/lib/bot/state.db"))

Each aiogram storage key is one record of kind ``fsm`` (see :mod:`botstate.kinds`), addressed by
all six fields of the key (bot id, chat id, user id, thread id, business connection id,
destiny), so two bots, two threads of a forum chat or two destinies never share a record. The
record holds the key's state and data together as ``{"state": str | None, "data": dict}``; a key
whose state is None and whose data is empty has no record at all. Where a store expires records
after a time to live (``ttl`` of the Redis and PostgreSQL stores), state and data of a key
therefore expire together, and an expired key reads as no state and empty data.

Each change of a key reads its record and writes it back. On stores that check record versions
(SQLite, Redis, PostgreSQL) the write is a compare-and-set: when another process changed the
record in between, the change is made again on the record as it now is, so concurrent
``update_data`` calls of several processes never lose each other's keys.

Requires aiogram 3 (``pip install botstate[aiogram]``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from aiogram.fsm.state import State
from aiogram.fsm.storage.base import BaseStorage, StateType, StorageKey

from botstate.errors import ConflictError, CorruptDataError
from botstate.kinds import FSMKey, describe
from botstate.persistence import Persistence
from botstate.urls import from_url

__all__ = ["AiogramStorage", "record_key"]

_log = logging.getLogger(__name__)

_KIND: Final = "fsm"

#: How many times one change is made before another process's changes of the same key make it
#: give up, and the longest pause before the second try and before any try, in seconds.
_TRIES: Final = 30
_FIRST_PAUSE: Final = 0.002
_MAX_PAUSE: Final = 0.05


def record_key(key: StorageKey) -> FSMKey:
    """The botstate record key of an aiogram storage key: its six fields, in order."""
    return (
        key.bot_id,
        key.chat_id,
        key.user_id,
        key.thread_id,
        key.business_connection_id,
        key.destiny,
    )


@dataclass(frozen=True)
class _Record:
    """The state and data of one storage key."""

    state: str | None = None
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return self.state is None and not self.data


class AiogramStorage(BaseStorage):
    """aiogram's ``BaseStorage`` on a botstate persistence.

    Reads and writes run on the persistence's worker thread, never on the event loop, and a
    write is durable when :meth:`set_state`, :meth:`set_data` or :meth:`update_data` returns
    (unless the persistence was made with ``on_flush=True``). Changes of one key run one at a
    time within a process, and are a compare-and-set across processes on stores that check
    record versions, so :meth:`update_data` never loses a concurrent change.

    Args:
        persistence: Any botstate persistence; it may hold python-telegram-bot data too.

    Attributes:
        persistence: As given.
    """

    def __init__(self, persistence: Persistence[Any, Any, Any]) -> None:
        self.persistence = persistence
        self._locks: dict[FSMKey, asyncio.Lock] = {}
        self._lock_users: dict[FSMKey, int] = {}

    @classmethod
    def from_url(cls, url: str | Path, **options: Any) -> AiogramStorage:
        """Open the store a URL names (see :func:`botstate.from_url`), as aiogram storage.

        ``AiogramStorage.from_url("sqlite:///var/lib/bot/state.db")``; *options* go to the
        persistence, for example ``synchronous="FULL"`` for SQLite.
        """
        return cls(from_url(url, **options))

    # -- aiogram's storage interface ------------------------------------------------------------

    async def set_state(self, key: StorageKey, state: StateType = None) -> None:
        """Set the state of *key*; a ``State`` is stored by its name, None clears it."""
        name = state.state if isinstance(state, State) else state
        if name is not None and not isinstance(name, str):
            raise TypeError(f"a state is a State, a str or None, got {type(name).__name__}")
        await self._change(key, lambda record: _Record(name, record.data))

    async def get_state(self, key: StorageKey) -> str | None:
        """Return the state of *key* as a string, or None."""
        record, _ = await self._read(record_key(key))
        return None if record is None else record.state

    async def set_data(self, key: StorageKey, data: Mapping[str, Any]) -> None:
        """Replace the data of *key*; empty data clears it."""
        new_data = _as_dict(data)
        await self._change(key, lambda record: _Record(record.state, new_data))

    async def get_data(self, key: StorageKey) -> dict[str, Any]:
        """Return a new copy of the data of *key* (empty when none is stored)."""
        record, _ = await self._read(record_key(key))
        return {} if record is None else record.data

    async def update_data(self, key: StorageKey, data: Mapping[str, Any]) -> dict[str, Any]:
        """Merge *data* into the data of *key* as ``dict.update`` does; return the result.

        Atomic per key within one process and, on SQLite, Redis and PostgreSQL (unless the
        persistence has ``on_flush=True``), across processes.

        Raises:
            ConflictError: When other processes changed the key every time this change was
                about to be written, many times in a row; nothing of it was written.
        """
        changes = _as_dict(data)
        record = await self._change(
            key, lambda record: _Record(record.state, {**record.data, **changes})
        )
        return dict(record.data)

    async def close(self) -> None:
        """Write what is pending and close the persistence (it may be used again later)."""
        await self.persistence.close()

    def __repr__(self) -> str:
        return f"AiogramStorage({self.persistence!r})"

    # -- records --------------------------------------------------------------------------------

    async def _read(self, address: FSMKey) -> tuple[_Record | None, int | None]:
        """The stored record of one key (None when it has none) and its stored version."""
        value, version = await self.persistence.get_versioned_record(_KIND, address)
        if value is None:
            return None, version
        if not (
            isinstance(value, dict)
            and isinstance(value.get("state"), (str, type(None)))
            and isinstance(value.get("data"), dict)
        ):
            location = self.persistence.store.location
            what = describe(_KIND, address)
            raise CorruptDataError(
                f"{location}: {what} is a {type(value).__name__}, not an aiogram record "
                "{'state': str or None, 'data': dict}, so this key can be neither read nor "
                f"changed; delete the record with persistence.drop_record('fsm', {address!r})",
                location=location,
                kind=_KIND,
                key=address,
            )
        return _Record(value["state"], value["data"]), version

    async def _change(self, key: StorageKey, change: Callable[[_Record], _Record]) -> _Record:
        """Read the record of *key*, apply *change* and store the result, one key at a time.

        The write carries the version read, where the store has one: when another process
        wrote the record meanwhile, the change is made again on what it wrote.
        """
        address = record_key(key)
        async with self._lock(address):
            for attempt in range(1, _TRIES + 1):
                old, version = await self._read(address)
                new = change(old or _Record())
                try:
                    await self._write(address, old, new, version)
                except ConflictError as exc:
                    if version is None:
                        # Not a changed version (the store checks none) but a conflict no
                        # retry settles, such as a file replaced under the bot.
                        raise
                    if attempt == _TRIES:
                        raise ConflictError(
                            f"{self.persistence.store.location}: {describe(_KIND, address)} was "
                            f"not changed: other processes changed it each of {_TRIES} times "
                            "this one tried. Try again later."
                        ) from exc
                    _log.debug(
                        "%s: %s changed by another process meanwhile; making the change again "
                        "(try %d)",
                        self.persistence.store.location,
                        describe(_KIND, address),
                        attempt + 1,
                    )
                    # A random pause, growing with each try, lets contending processes part.
                    longest = min(_MAX_PAUSE, _FIRST_PAUSE * 2 ** (attempt - 1))
                    await asyncio.sleep(random.uniform(0, longest))
                else:
                    return new
        raise AssertionError("unreachable")  # pragma: no cover

    async def _write(
        self, address: FSMKey, old: _Record | None, new: _Record, version: int | None
    ) -> None:
        """Store *new* in place of *old*, if the stored version is still *version*."""
        # An unchanged value is not written again: the persistence compares encoded bytes,
        # which unlike == tells 1 from True. Only a key that had no record and gets none is
        # settled here, so that clearing an unknown key costs no write at all.
        if new.empty:
            if old is not None:
                await self.persistence.drop_record(_KIND, address, version=version)
        else:
            await self.persistence.update_record(
                _KIND, address, {"state": new.state, "data": new.data}, version=version
            )

    @contextlib.asynccontextmanager
    async def _lock(self, address: FSMKey) -> AsyncIterator[None]:
        """Hold the lock of one key; it is kept only while a task holds or waits for it."""
        lock = self._locks.setdefault(address, asyncio.Lock())
        self._lock_users[address] = self._lock_users.get(address, 0) + 1
        try:
            async with lock:
                yield
        finally:
            self._lock_users[address] -= 1
            if not self._lock_users[address]:
                del self._lock_users[address], self._locks[address]


def _as_dict(data: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(data, Mapping):
        raise TypeError(f"aiogram data must be a dict, got {type(data).__name__}")
    return dict(data)
