"""A process of an aiogram bot that calls ``update_data`` on one storage key, over and over.

Started by tests/test_aiogram_shared.py as ``python -m tests.aiogram_worker LABEL`` and kept for
several runs, since importing aiogram takes seconds. A run starts with a JSON line on stdin,
``{"store": "sqlite" | "redis" | "postgres", "location": ..., "tasks": T, "count": N}``: the
worker opens an :class:`~botstate.aiogram.AiogramStorage` on that SQLite file, Redis prefix or
PostgreSQL table and answers ``{"ready": LABEL}``. At the next line, which every worker gets at
once, *T* tasks each merge *N* new entries ``"LABEL.task.n": n`` into the key's data. Then the
worker closes the storage and answers ``{"done": LABEL, "retries": R, "warnings": [...]}``: how
many changes were made again because another process had changed the key meanwhile, and the
warnings botstate logged.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from typing import Any

from aiogram.fsm.storage.base import StorageKey

from botstate import SQLitePersistence
from botstate.aiogram import AiogramStorage

from . import servers

KEY = StorageKey(bot_id=700000001, chat_id=-1001234567890, user_id=2**33 + 1)


class Recorder(logging.Handler):
    """Keeps botstate's warnings and counts the changes made again."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.retries = 0
        self.warnings: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.WARNING:
            self.warnings.append(record.getMessage())
        elif "making the change again" in record.getMessage():
            self.retries += 1


def open_storage(store: str, location: str) -> AiogramStorage:
    persistence: Any = (
        SQLitePersistence(location)
        if store == "sqlite"
        else servers.open_persistence(store, location)
    )
    return AiogramStorage(persistence)


async def run(label: str, job: dict[str, Any], read_line: Any) -> dict[str, Any]:
    recorder = Recorder()
    logger = logging.getLogger("botstate")
    logger.addHandler(recorder)
    logger.setLevel(logging.DEBUG)
    storage = open_storage(job["store"], job["location"])
    try:
        await storage.get_data(KEY)  # opens the store before the start
        print(json.dumps({"ready": label}), flush=True)
        start = await read_line()
        assert start == "go\n", f"expected the start signal, got {start!r}"

        async def updates(task: int) -> None:
            for n in range(job["count"]):
                data = await storage.update_data(KEY, {f"{label}.{task}.{n}": n})
                # What update_data returns holds this change and every earlier one of the task.
                missing = [m for m in range(n + 1) if f"{label}.{task}.{m}" not in data]
                assert not missing, f"update_data returned no {label}.{task}.{missing}"

        await asyncio.gather(*(updates(task) for task in range(job["tasks"])))
    finally:
        await storage.close()
        logger.removeHandler(recorder)
    return {"done": label, "retries": recorder.retries, "warnings": recorder.warnings}


async def main(label: str) -> None:
    loop = asyncio.get_running_loop()

    async def read_line() -> str:
        line: str = await loop.run_in_executor(None, sys.stdin.readline)
        return line

    while line := await read_line():
        print(json.dumps(await run(label, json.loads(line), read_line)), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
