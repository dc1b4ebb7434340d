"""aiogram storage on a store several processes share: update_data as a compare-and-set on
SQLite, Redis and PostgreSQL, and the expiry of aiogram keys on the servers."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

import botstate.aiogram
from botstate import ConflictError
from botstate.aiogram import AiogramStorage, record_key
from botstate.kinds import key_to_text
from botstate.stores.redis import RedisStore

from . import servers
from .aiogram_worker import KEY, open_storage

ROOT = Path(__file__).resolve().parent.parent

Store = tuple[str, str]


# The stores that check versions across processes, each with its default codec.
@pytest.fixture(params=["sqlite", "redis", "postgres"])
def shared_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A store name and the SQLite file, Redis prefix or PostgreSQL table of this test."""
    if request.param == "sqlite":
        yield "sqlite", str(tmp_path / "bot.db")
        return
    servers.require(request.param)
    name = servers.unique_name(request.param)
    yield request.param, name
    servers.remove(request.param, name)


@pytest.fixture
async def open_process(shared_store: Store) -> AsyncIterator[Any]:
    """Opens storages on the test's store, each standing for one bot process."""
    opened: list[AiogramStorage] = []

    def open_one() -> AiogramStorage:
        opened.append(open_storage(*shared_store))
        return opened[-1]

    yield open_one
    for storage in opened:
        await storage.close()


# -- update_data across processes ---------------------------------------------------------------


class Worker:
    """One process of tests/aiogram_worker.py, kept for every test of this module."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.aiogram_worker", label],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def answer(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            _, log = self.process.communicate(timeout=30)
            raise AssertionError(f"worker {self.label} ended ({self.process.returncode}):\n{log}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def stop(self) -> None:
        _, log = self.process.communicate(timeout=30)  # closes stdin: no more runs
        assert self.process.returncode == 0, log


@pytest.fixture(scope="module")
def workers() -> Iterator[list[Worker]]:
    started = [Worker(label) for label in ("a", "b")]
    try:
        yield started
    finally:
        for worker in started:
            if worker.process.poll() is None:
                worker.stop()


async def test_update_data_of_several_processes_on_one_key_loses_nothing(
    shared_store: Store, workers: list[Worker]
) -> None:
    tasks, count = 3, 60
    job = {"store": shared_store[0], "location": shared_store[1], "tasks": tasks, "count": count}
    for worker in workers:
        worker.send(json.dumps(job))
    for worker in workers:
        assert worker.answer() == {"ready": worker.label}
    for worker in workers:
        worker.send("go")
    results = [worker.answer() for worker in workers]

    storage = open_storage(*shared_store)
    data = await storage.get_data(KEY)
    await storage.close()
    labels = [worker.label for worker in workers]
    expected = {
        f"{label}.{task}.{n}": n for label in labels for task in range(tasks) for n in range(count)
    }
    assert sorted(set(expected) - set(data)) == []
    assert data == expected
    assert [result["warnings"] for result in results] == [[], []]
    # The processes did meet: some changes found the key changed and were made again.
    assert sum(result["retries"] for result in results) > 0


async def test_a_change_meeting_another_process_is_made_again_on_its_result(
    open_process: Any,
) -> None:
    first, second = open_process(), open_process()
    await first.set_state(KEY, "Form:age")
    await first.set_data(KEY, {"name": "Ada"})

    # The other process stores its change while this one is between its read and its write.
    update_record = first.persistence.update_record
    writes = 0

    async def write_after_the_other(*args: Any, **options: Any) -> None:
        nonlocal writes
        writes += 1
        if writes == 1:
            await second.update_data(KEY, {"city": "London"})
        await update_record(*args, **options)

    first.persistence.update_record = write_after_the_other
    assert await first.update_data(KEY, {"age": 36}) == {
        "name": "Ada",
        "city": "London",
        "age": 36,
    }
    assert writes == 2

    reader = open_process()
    assert await reader.get_data(KEY) == {"name": "Ada", "city": "London", "age": 36}
    assert await reader.get_state(KEY) == "Form:age"


async def test_clearing_a_state_keeps_data_another_process_stored_meanwhile(
    open_process: Any,
) -> None:
    first, second = open_process(), open_process()
    await first.set_state(KEY, "Form:age")

    # Clearing the state of a key without data deletes its record: a compare-and-set too.
    drop_record = first.persistence.drop_record

    async def drop_after_the_other(*args: Any, **options: Any) -> None:
        first.persistence.drop_record = drop_record
        await second.update_data(KEY, {"name": "Ada"})
        await drop_record(*args, **options)

    first.persistence.drop_record = drop_after_the_other
    await first.set_state(KEY, None)

    reader = open_process()
    assert await reader.get_state(KEY) is None
    assert await reader.get_data(KEY) == {"name": "Ada"}


async def test_a_change_that_always_meets_another_process_gives_up_with_a_clear_error(
    open_process: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(botstate.aiogram, "_TRIES", 3)
    first, second = open_process(), open_process()
    update_record = first.persistence.update_record

    async def always_after_the_other(*args: Any, **options: Any) -> None:
        await second.update_data(KEY, {"other": time.monotonic_ns()})
        await update_record(*args, **options)

    first.persistence.update_record = always_after_the_other
    with pytest.raises(
        ConflictError,
        match=r"fsm\[.*\] was not changed: other processes changed it each of 3 times this one "
        "tried. Try again later.",
    ):
        await first.update_data(KEY, {"mine": 1})
    assert "mine" not in await open_process().get_data(KEY)


# -- expiry -------------------------------------------------------------------------------------


@pytest.fixture(params=["redis", "postgres"])
def server_store(request: pytest.FixtureRequest) -> Iterator[Store]:
    servers.require(request.param)
    name = servers.unique_name(request.param)
    yield request.param, name
    servers.remove(request.param, name)


def server_storage(store: Store, **options: Any) -> AiogramStorage:
    return AiogramStorage(servers.open_persistence(*store, **options))


def deadline_of(storage: AiogramStorage) -> float | None:
    """Seconds until the record of KEY expires, as the server keeps it; None for never."""
    store: Any = storage.persistence.store
    text = key_to_text("fsm", record_key(KEY))
    if isinstance(store, RedisStore):
        left: int = store._client.pttl(f"{store.prefix}:r:fsm:{text}")  # type: ignore[assignment]
        assert left != -2, "the record is not stored"
        return None if left == -1 else left / 1000
    with store._pool.connection() as connection:
        (seconds,) = connection.execute(
            store._sql(
                "SELECT extract(epoch FROM expires - now()) FROM {records} "
                "WHERE kind = 'fsm' AND key = %s"
            ),
            (text,),
        ).fetchone()
    return None if seconds is None else float(seconds)


def expire_in(storage: AiogramStorage, seconds: int) -> None:
    """Bring the deadline of KEY's record forward, as if time had passed."""
    store: Any = storage.persistence.store
    text = key_to_text("fsm", record_key(KEY))
    if isinstance(store, RedisStore):
        store._client.expire(f"{store.prefix}:r:fsm:{text}", seconds)
        return
    with store._pool.connection() as connection:
        connection.execute(
            store._sql(
                "UPDATE {records} SET expires = now() + make_interval(secs => %s) "
                "WHERE kind = 'fsm' AND key = %s"
            ),
            (seconds, text),
        )


@pytest.mark.parametrize("ttl", [600, {"fsm": 600}, {"fsm": 600, "user_data": 5}])
async def test_a_plain_ttl_or_one_for_fsm_gives_each_aiogram_key_a_deadline(
    server_store: Store, ttl: Any
) -> None:
    storage = server_storage(server_store, ttl=ttl)
    await storage.set_state(KEY, "Form:age")
    first = deadline_of(storage)
    assert first is not None
    assert 590 < first <= 600

    # Writing the key again moves its deadline; state and data are one record, one deadline.
    expire_in(storage, 100)
    await storage.set_data(KEY, {"name": "Ada"})
    renewed = deadline_of(storage)
    assert renewed is not None
    assert renewed > 590
    await storage.close()


async def test_without_a_ttl_for_fsm_aiogram_keys_never_expire(server_store: Store) -> None:
    storage = server_storage(server_store, ttl={"user_data": 600, "chat_data": 600})
    await storage.set_state(KEY, "Form:age")
    assert deadline_of(storage) is None
    await storage.close()


async def test_state_and_data_of_a_key_expire_together_and_read_as_nothing(
    server_store: Store,
) -> None:
    writer = server_storage(server_store, ttl={"fsm": 0.5})
    await writer.set_state(KEY, "Form:age")
    await writer.set_data(KEY, {"name": "Ada"})
    reader = server_storage(server_store)
    whole = {"state": "Form:age", "data": {"name": "Ada"}}

    deadline = time.monotonic() + 10
    while (record := await reader.persistence.get_record("fsm", record_key(KEY))) is not None:
        assert record == whole, "state and data of the key did not expire together"
        assert time.monotonic() < deadline, "the key did not expire"
        await asyncio.sleep(0.1)

    for storage in (reader, writer):
        assert await storage.get_state(KEY) is None
        assert await storage.get_data(KEY) == {}
        assert await storage.get_value(KEY, "name", "none") == "none"
    # A change after expiry starts from nothing.
    assert await writer.update_data(KEY, {"age": 36}) == {"age": 36}
    assert await reader.get_state(KEY) is None
    assert await reader.get_data(KEY) == {"age": 36}
    await writer.close()
    await reader.close()
