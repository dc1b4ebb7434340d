"""Shared fixtures: every store behind one factory, so the contract suite runs on each."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from botstate import BotStateError, JSONPersistence, PicklePersistence, SQLitePersistence
from botstate.persistence import Persistence
from botstate.stores.base import Change, Written
from botstate.stores.memory import MemoryStore

from . import servers

#: The stores the contract suite runs on. Later stores add their names here.
STORE_NAMES = [
    "memory",
    "pickle",
    "pickle-multi",
    "pickle-restricted",
    "sqlite",
    "sqlite-json",
    "json",
    "json-multi",
    "redis",
    "redis-json",
    "postgres",
    "postgres-json",
]

#: Those of them that check record versions: a compare-and-set, atomic across processes.
VERSIONED_STORE_NAMES = [
    name for name in STORE_NAMES if name.partition("-")[0] in ("sqlite", "redis", "postgres")
]


class StoreFactory:
    """Opens persistences on one underlying store again and again, as restarts of a bot do.

    Every write that reaches the store is recorded in :attr:`writes` as the list of
    ``(kind, key)`` it carried, so tests can see what was written and how many batches.
    """

    def __init__(self, name: str, folder: Path) -> None:
        self.name = name
        self.folder = folder
        self.writes: list[list[tuple[str, object]]] = []
        self._memory = MemoryStore()
        self.opened: list[Persistence[Any, Any, Any]] = []
        self._counted: list[object] = []
        # "redis", "postgres", and their variants with the JSON codec ("redis-json", ...).
        self.server, _, variant = name.partition("-")
        self.codec = {"codec": variant} if variant else {}
        self.server_name = ""
        if self.server in ("redis", "postgres"):
            servers.require(self.server)
            self.server_name = servers.unique_name(self.server)

    def open(self, **options: Any) -> Persistence[Any, Any, Any]:
        """Return a new persistence on this store, as a restarted bot would create it."""
        persistence: Persistence[Any, Any, Any]
        if self.name == "memory":
            persistence = Persistence(self._memory, **options)
        elif self.name == "pickle":
            persistence = PicklePersistence(self.folder / "state.pickle", **options)
        elif self.name == "pickle-multi":
            persistence = PicklePersistence(self.folder / "state", single_file=False, **options)
        elif self.name == "pickle-restricted":
            persistence = PicklePersistence(
                self.folder / "state.pickle", codec="pickle-restricted", **options
            )
        elif self.name == "sqlite":
            persistence = SQLitePersistence(self.folder / "state.db", **options)
        elif self.name == "sqlite-json":
            persistence = SQLitePersistence(self.folder / "state.db", codec="json", **options)
        elif self.name == "json":
            persistence = JSONPersistence(self.folder / "state.json", **options)
        elif self.name == "json-multi":
            persistence = JSONPersistence(self.folder / "state", single_file=False, **options)
        elif self.server_name:
            persistence = servers.open_persistence(
                self.server, self.server_name, **self.codec, **options
            )
        else:
            raise AssertionError(f"no such store {self.name}")
        self._count_writes(persistence)
        self.opened.append(persistence)
        return persistence

    def _count_writes(self, persistence: Persistence[Any, Any, Any]) -> None:
        store = persistence.store
        if store in self._counted:
            return  # The memory store is shared by every persistence the factory opens.
        self._counted.append(store)
        write: Callable[..., Written[Any] | None] = store.write

        def counting_write(changes: list[Change], bot: Any) -> Written[Any] | None:
            written = write(changes, bot)
            self.writes.append([(change.kind, change.key) for change in changes])
            return written

        store.write = counting_write  # type: ignore[method-assign]

    async def close_all(self) -> None:
        for persistence in self.opened:
            # A test may leave records that cannot be stored on purpose.
            with contextlib.suppress(BotStateError):
                await persistence.close()
        if self.server_name:
            servers.remove(self.server, self.server_name)


@pytest.fixture(params=STORE_NAMES)
async def stores(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StoreFactory]:
    factory = StoreFactory(request.param, tmp_path)
    yield factory
    await factory.close_all()


@contextlib.asynccontextmanager
async def store_factory(name: str, folder: Path) -> AsyncIterator[StoreFactory]:
    """A :class:`StoreFactory` on store *name*, closed (and its server data removed) after."""
    factory = StoreFactory(name, folder)
    try:
        yield factory
    finally:
        await factory.close_all()


@pytest.fixture(params=VERSIONED_STORE_NAMES)
async def versioned_stores(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[StoreFactory]:
    async with store_factory(request.param, tmp_path) as factory:
        yield factory
