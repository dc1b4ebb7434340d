"""Shared fixtures: every store behind one factory, so the contract suite runs on each."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from botstate import BotStateError
from botstate.persistence import Persistence
from botstate.stores.base import Change, Written

from .stores import STORES

#: The stores the contract suite runs on: every entry of ``tests/stores.py``.
STORE_NAMES = list(STORES)

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
        self.opened: list[Persistence[Any, Any, Any]] = []
        self._counted: list[object] = []

    def open(self, **options: Any) -> Persistence[Any, Any, Any]:
        """Return a new persistence on this store, as a restarted bot would create it."""
        persistence = STORES[self.name].open(self.folder, **options)
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
        cleanup = STORES[self.name].cleanup
        if cleanup is not None:
            cleanup(self.folder)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Leave nothing of this run on the shared Redis and PostgreSQL servers."""
    from . import servers

    servers.remove_session()


def require(name: str) -> None:
    """Skip the test, saying why, when store *name* cannot run here; in CI, fail it instead."""
    reason = STORES[name].unavailable()
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"store {name} is needed in CI: {reason}")
    pytest.skip(f"store {name}: {reason}")


@pytest.fixture(params=STORE_NAMES)
async def stores(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StoreFactory]:
    require(request.param)
    factory = StoreFactory(request.param, tmp_path)
    yield factory
    await factory.close_all()


@contextlib.asynccontextmanager
async def store_factory(name: str, folder: Path) -> AsyncIterator[StoreFactory]:
    """A :class:`StoreFactory` on store *name*, closed (and its server data removed) after."""
    require(name)
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
