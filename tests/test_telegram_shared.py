"""Two python-telegram-bot applications, two processes, one Redis or PostgreSQL store."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from . import servers

ROOT = Path(__file__).resolve().parent.parent
CHAT_USER = 2**33 + 5


class Worker:
    """One bot process fed updates through its stdin."""

    def __init__(self, server: str, name: str, label: str, shared: bool) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.shared_bot",
                server,
                name,
                label,
                "shared" if shared else "alone",
            ],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert json.loads(self._line()) == {"ready": label}

    def _line(self) -> str:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line, f"worker exited with {self.process.wait(10)}"
        return line

    def send(self, update: dict[str, Any]) -> list[str]:
        """Process one update; return what the bot answered."""
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(update) + "\n")
        self.process.stdin.flush()
        sent: list[str] = json.loads(self._line())["sent"]
        return sent

    def stop(self) -> str:
        """Stop the process; return what it logged."""
        _, log = self.process.communicate(timeout=30)  # closes stdin: the end of updates
        assert self.process.returncode == 0, log
        return log


def message(update_id: int, user: int, text: str) -> dict[str, Any]:
    data: dict[str, Any] = {
        "message_id": update_id,
        "date": 1700000000 + update_id,
        "chat": {"id": user, "type": "private"},
        "from": {"id": user, "is_bot": False, "first_name": f"user {user}"},
        "text": text,
    }
    if text.startswith("/"):
        data["entities"] = [{"type": "bot_command", "offset": 0, "length": len(text)}]
    return {"update_id": update_id, "message": data}


@pytest.fixture(params=["redis", "postgres"])
def store(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    servers.require(request.param)
    name = servers.unique_name(request.param)
    yield request.param, name
    servers.remove(request.param, name)


async def stored_users(server: str, name: str) -> dict[int, Any]:
    persistence = servers.open_persistence(server, name)
    try:
        users: dict[int, Any] = await persistence.get_user_data()
        assert await persistence.get_conversations("signup") == {}
    finally:
        await persistence.close()
    return users


@contextlib.contextmanager
def two_workers(store: tuple[str, str], *, shared: bool) -> Iterator[tuple[Worker, Worker]]:
    """Two bot processes on *store*, stopped (and so flushed) at the end."""
    first = Worker(*store, "first", shared=shared)
    second = Worker(*store, "second", shared=shared)
    try:
        yield first, second
    finally:
        logs = first.stop() + second.stop()
    # Processes taking turns on the same records base each write on the stored version.
    assert "replaced by another process" not in logs


async def test_a_conversation_alternating_between_two_processes_completes(
    store: tuple[str, str],
) -> None:
    with two_workers(store, shared=True) as (first, second):
        assert first.send(message(1, CHAT_USER, "/start")) == ["What is your name?"]
        assert second.send(message(2, CHAT_USER, "Ada")) == ["How old are you?"]
        assert first.send(message(3, CHAT_USER, "36")) == ["Thanks Ada (36)"]
        # The conversation ended: a new one starts wherever the next /start lands.
        assert second.send(message(4, CHAT_USER, "/start")) == ["What is your name?"]
        assert first.send(message(5, CHAT_USER, "Grace")) == ["How old are you?"]
        assert second.send(message(6, CHAT_USER, "41")) == ["Thanks Grace (41)"]

        # Users that only one of the processes has seen.
        for update_id, user in enumerate(range(100, 104), start=10):
            worker = first if user % 2 else second
            assert worker.send(message(update_id, user, "/start")) == ["What is your name?"]
            assert worker.send(message(update_id + 10, user, "x")) == ["How old are you?"]
            assert worker.send(message(update_id + 20, user, "1")) == ["Thanks x (1)"]

    users = await stored_users(*store)
    assert users[CHAT_USER] == {"started_by": "second", "name": "Grace", "age": "41"}
    assert {user: data["started_by"] for user, data in users.items() if user != CHAT_USER} == {
        100: "second",
        101: "first",
        102: "second",
        103: "first",
    }


async def test_without_share_state_the_other_process_does_not_know_the_conversation(
    store: tuple[str, str],
) -> None:
    with two_workers(store, shared=False) as (first, second):
        assert first.send(message(1, CHAT_USER, "/start")) == ["What is your name?"]
        # python-telegram-bot read the conversation states once, before the first process
        # started this one: the second process ignores the answer.
        assert second.send(message(2, CHAT_USER, "Ada")) == []
