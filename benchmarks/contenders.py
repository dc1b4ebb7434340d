"""The stores the benchmark compares, each one entry of :data:`CONTENDERS`.

A contender knows how to fill its store with a bot's initial state (:meth:`Contender.seed`) and
how to open it in a measuring process (:meth:`Contender.open`), which gives a :class:`Subject`:
load everything, run one cycle, flush, close. Persistences are driven through the calls
python-telegram-bot's application makes (:mod:`benchmarks.workload`); a floor is the least work
that stores the same records with the same database and durability, with no library around it.

A store added to botstate joins the benchmark as one more entry here (a database server store
would come with its own floor, e.g. one redis-py pipeline or one psycopg ``executemany`` per
cycle, named by its ``floor``).
"""

from __future__ import annotations

import asyncio
import json
import pickle
import sqlite3
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.workload import (
    PersistenceLike,
    State,
    Touched,
    load_like_application,
    update_like_application,
)

__all__ = ["CONTENDERS", "Contender", "Subject", "offline_bot"]


def offline_bot() -> Any:
    """A python-telegram-bot ``ExtBot`` that never reaches the network, as a bot's persistence
    gets from ``set_bot``: pickling then swaps it for a placeholder, as in a real bot."""
    from telegram.ext import ExtBot

    from botstate.testing import OfflineRequest

    return ExtBot(
        OfflineRequest.TOKEN, request=OfflineRequest(), get_updates_request=OfflineRequest()
    )


class Subject(ABC):
    """One store opened in the measuring process."""

    @abstractmethod
    async def load(self) -> State:
        """Load everything the application loads at start-up."""

    @abstractmethod
    async def cycle(self, state: State, touched: Touched) -> None:
        """Store what one cycle touched; return once it is stored."""

    async def flush(self) -> None:  # noqa: B027 (optional hook)
        """Write what is still held back, as the application does when it stops."""

    def full_write(self) -> float | None:
        """For a store that writes its whole state at once: the seconds one such write takes."""
        return None

    async def close(self) -> None:  # noqa: B027 (optional hook)
        """Release files, connections and threads."""


class PersistenceSubject(Subject):
    """A persistence, driven as python-telegram-bot's application drives it."""

    def __init__(self, persistence: Any) -> None:
        self.persistence = persistence

    async def load(self) -> State:
        return await load_like_application(self.persistence)

    async def cycle(self, state: State, touched: Touched) -> None:
        await update_like_application(self.persistence, state, touched)

    async def flush(self) -> None:
        await self.persistence.flush()

    async def close(self) -> None:
        close = getattr(self.persistence, "close", None)
        if close is not None:
            await close()


class SnapshotPersistenceSubject(PersistenceSubject):
    """botstate's ``PicklePersistence``, which can also time one write of its whole file."""

    def full_write(self) -> float:
        # The store alone, with no change: it encodes the whole state and replaces the file,
        # exactly as a cycle does after it has applied its changes.
        started = time.perf_counter()
        self.persistence.store.write([], self.persistence.bot)
        return time.perf_counter() - started


@dataclass(frozen=True)
class Contender:
    """One store in the comparison: a persistence (``make``) or a floor (``raw``).

    Attributes:
        name: Short name, used on the command line and in the results file.
        label: The name the tables and the chart show.
        filename: The file the store keeps in its folder.
        make: ``make(path, on_flush)`` returns a new persistence on *path*.
        subject: Wraps what ``make`` returned for measuring.
        raw: For a floor, its class.
        floor: The contender whose cycle is this one's lower bound (the "vs floor" column).
        max_work: Cycles are skipped where N times K exceeds this (the store's cycle grows with
            both and would take too long); None runs every cycle.
        is_reference: python-telegram-bot's own store, which "vs PTB" compares with.
    """

    name: str
    label: str
    filename: str
    make: Callable[[Path, bool], Any] | None = None
    subject: Callable[[Any], Subject] = PersistenceSubject
    raw: type[Floor] | None = None
    floor: str | None = "sqlite-floor"
    max_work: int | None = None
    is_reference: bool = False

    def runs_cycle(self, n: int, k: int) -> bool:
        return self.max_work is None or n * k <= self.max_work

    async def seed(self, folder: Path, state: State, bot: Any) -> None:
        """Store *state* in a new store in *folder*, as one write where the store allows."""
        if self.raw is not None:
            self.raw.seed(folder / self.filename, state)
            return
        assert self.make is not None
        persistence = self.make(folder / self.filename, True)
        persistence.set_bot(bot)
        calls = [persistence.update_bot_data(state.bot_data)]
        calls += [persistence.update_user_data(i, data) for i, data in state.user_data.items()]
        calls += [persistence.update_chat_data(i, data) for i, data in state.chat_data.items()]
        calls += [
            persistence.update_conversation(name, key, value)
            for name, states in state.conversations.items()
            for key, value in states.items()
        ]
        await asyncio.gather(*calls)
        subject = self.subject(persistence)
        await subject.flush()
        await subject.close()

    def open(self, folder: Path, bot: Any) -> Subject:
        """Open the store in *folder* for measuring."""
        if self.raw is not None:
            return self.raw(folder / self.filename)
        assert self.make is not None
        persistence = self.make(folder / self.filename, False)
        persistence.set_bot(bot)
        return self.subject(persistence)


# -- floors -------------------------------------------------------------------------------------


def _conversation_key(name: str, key: tuple[Any, ...]) -> str:
    return json.dumps([name, list(key)], separators=(",", ":"))


class Floor(Subject):
    """The least a program can do to store a cycle: the application's calls only collect what
    they are handed, then one write pickles and stores all of it. No change detection, no
    worker thread: the write runs on the event loop.

    A floor for another database (one redis-py pipeline, one psycopg ``executemany``)
    implements :meth:`write`, :meth:`read` and :meth:`release`.
    """

    def __init__(self, path: Path) -> None:
        self._batch: list[tuple[str, str, object]] = []

    @abstractmethod
    def write(self, rows: list[tuple[str, str, bytes]]) -> None:
        """Store *rows* of (kind, key, pickled value) in one transaction or pipeline."""

    @abstractmethod
    def read(self, kind: str) -> list[tuple[str, bytes]]:
        """Return the (key, pickled value) pairs of *kind*."""

    @classmethod
    def seed(cls, path: Path, state: State) -> None:
        floor = cls(path)
        floor.add("bot_data", "", state.bot_data)
        for user_id, data in state.user_data.items():
            floor.add("user_data", str(user_id), data)
        for chat_id, data in state.chat_data.items():
            floor.add("chat_data", str(chat_id), data)
        for name, states in state.conversations.items():
            for key, value in states.items():
                floor.add("conversations", _conversation_key(name, key), value)
        floor.commit()
        floor.release()

    def add(self, kind: str, key: str, value: object) -> None:
        self._batch.append((kind, key, value))

    def commit(self) -> None:
        rows = [(kind, key, pickle.dumps(value, 5)) for kind, key, value in self._batch]
        self._batch = []
        self.write(rows)

    @abstractmethod
    def release(self) -> None:
        """Close the connection."""

    async def close(self) -> None:
        self.release()

    # The calls the application makes, as PersistenceLike.

    async def get_user_data(self) -> dict[int, Any]:
        return {int(key): value for key, value in self._decoded("user_data")}

    async def get_chat_data(self) -> dict[int, Any]:
        return {int(key): value for key, value in self._decoded("chat_data")}

    async def get_bot_data(self) -> Any:
        return dict(self._decoded("bot_data")).get("", {})

    async def get_conversations(self, name: str) -> dict[tuple[Any, ...], object]:
        states = {}
        for key, value in self._decoded("conversations"):
            stored_name, parts = json.loads(key)
            if stored_name == name:
                states[tuple(parts)] = value
        return states

    def _decoded(self, kind: str) -> list[tuple[str, Any]]:
        return [(key, pickle.loads(value)) for key, value in self.read(kind)]

    async def update_user_data(self, user_id: int, data: Any) -> None:
        self.add("user_data", str(user_id), data)

    async def update_chat_data(self, chat_id: int, data: Any) -> None:
        self.add("chat_data", str(chat_id), data)

    async def update_bot_data(self, data: Any) -> None:
        self.add("bot_data", "", data)

    async def update_conversation(self, name: str, key: Any, new_state: Any) -> None:
        self.add("conversations", _conversation_key(name, key), new_state)

    # As a Subject.

    async def load(self) -> State:
        floor: PersistenceLike = self
        return await load_like_application(floor)

    async def cycle(self, state: State, touched: Touched) -> None:
        await update_like_application(self, state, touched)
        self.commit()


_SQLITE_SCHEMA = """CREATE TABLE IF NOT EXISTS records (
    kind TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL, PRIMARY KEY (kind, key)
) WITHOUT ROWID"""
_SQLITE_UPSERT = (
    "INSERT INTO records (kind, key, value) VALUES (?, ?, ?) "
    "ON CONFLICT (kind, key) DO UPDATE SET value = excluded.value"
)


class SQLiteFloor(Floor):
    """Raw sqlite3: one ``executemany`` upsert in one transaction, with botstate's default
    durability (WAL, ``synchronous=NORMAL``)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.connection.execute("PRAGMA journal_mode=WAL")
        self.connection.execute("PRAGMA synchronous=NORMAL")
        self.connection.execute(_SQLITE_SCHEMA)

    def write(self, rows: list[tuple[str, str, bytes]]) -> None:
        self.connection.execute("BEGIN")
        self.connection.executemany(_SQLITE_UPSERT, rows)
        self.connection.execute("COMMIT")

    def read(self, kind: str) -> list[tuple[str, bytes]]:
        return list(
            self.connection.execute("SELECT key, value FROM records WHERE kind = ?", (kind,))
        )

    def release(self) -> None:
        self.connection.close()


# -- the contenders ------------------------------------------------------------------------------


def _ptb_pickle(path: Path, on_flush: bool) -> Any:
    from telegram.ext import PicklePersistence

    # Its defaults: one file, written on every update_* call that changes something.
    return PicklePersistence(path, on_flush=on_flush)


def _botstate_pickle(path: Path, on_flush: bool) -> Any:
    from botstate import PicklePersistence

    return PicklePersistence(path, on_flush=on_flush)


def _botstate_sqlite(path: Path, on_flush: bool) -> Any:
    from botstate import SQLitePersistence

    return SQLitePersistence(path, on_flush=on_flush)


#: Every contender, in the order tables and the chart show them.
CONTENDERS: dict[str, Contender] = {
    contender.name: contender
    for contender in (
        Contender(
            "ptb-pickle",
            "python-telegram-bot PicklePersistence",
            "state.pickle",
            _ptb_pickle,
            # Its cycle writes the whole file once per changed record: N times K.
            max_work=1_000_000,
            is_reference=True,
        ),
        Contender(
            "botstate-pickle",
            "botstate PicklePersistence",
            "state.pickle",
            _botstate_pickle,
            SnapshotPersistenceSubject,
        ),
        Contender("botstate-sqlite", "botstate SQLitePersistence", "state.db", _botstate_sqlite),
        Contender("sqlite-floor", "raw sqlite3 (floor)", "state.db", raw=SQLiteFloor, floor=None),
    )
}
