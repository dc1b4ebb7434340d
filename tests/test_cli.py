"""The botstate command line run as users run it: the installed console script in a subprocess,
end to end, on every store (pickle in both layouts, JSON, SQLite, Redis, PostgreSQL)."""

from __future__ import annotations

import asyncio
import json
import os
import pickle
import pty
import re
import select
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from botstate import CorruptDataError, SQLitePersistence, StoreLockedError, from_url
from botstate.codecs import JSONCodec
from botstate.stores.base import RecordStore, Row
from botstate.stores.sqlite import SQLiteStore
from botstate.tools import open_store

from . import servers
from .test_demo import botstate_command

USERS: dict[int, Any] = {
    42: {"name": "Ada", "tags": {"a", "b"}, "joined": date(2024, 5, 1), "pair": (1, 2)},
    7: {"name": "Bob"},
}
CHATS = {-1001234567890: {"title": "Team"}}
BOT_DATA = {"signups": 2}
CALLBACK_DATA = ([("kb", 1700000000.5, {"b": ("plan", "pro")})], {"q": "kb"})
CONVERSATIONS: dict[str, dict[tuple[int | str, ...], object]] = {
    "signup": {(42, 42): 2, (7, 7): 1},
    "feedback": {(42,): "waiting"},
}
FSM_KEY = (700000001, 42, 42, None, None, "default")
FSM_RECORD = {"state": "Form:name", "data": {"n": 1}}
RECORDS = len(USERS) + len(CHATS) + 2 + 3 + 1

ANSI = re.compile(r"\x1b\[")

#: The stores every command runs on.
STORES = ["pickle", "pickle-multi", "json", "sqlite", "redis", "postgres"]


def botstate(
    *arguments: str, cwd: Path, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*botstate_command(), *arguments],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@dataclass
class Place:
    """Where one store of a kind lives, and how to name a second one of the same kind."""

    name: str
    folder: Path
    server_names: list[str]

    def url(self, label: str = "bot") -> str:
        folder = self.folder
        if self.name == "pickle":
            return f"pickle://{folder}/{label}.pickle"
        if self.name == "pickle-multi":
            return f"pickle://{folder}/{label}?single_file=false"
        if self.name == "json":
            return f"json://{folder}/{label}.json"
        if self.name == "sqlite":
            return f"sqlite://{folder}/{label}.db"
        unique = servers.unique_name(self.name)
        self.server_names.append(unique)
        if self.name == "redis":
            return f"{servers.REDIS_URL}?prefix={unique}"
        return f"{servers.POSTGRES_URL}?table={unique}"


@pytest.fixture(params=STORES)
def place(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Place]:
    name: str = request.param
    if name in ("redis", "postgres"):
        servers.require(name)
    found = Place(name, tmp_path, [])
    yield found
    for server_name in found.server_names:
        servers.remove(name, server_name)


def fill(url: str) -> None:
    """Store the test data through a botstate persistence, as a bot would."""

    async def write() -> None:
        persistence = from_url(url)
        for user_id, data in USERS.items():
            await persistence.update_user_data(user_id, data)
        for chat_id, data in CHATS.items():
            await persistence.update_chat_data(chat_id, data)
        await persistence.update_bot_data(BOT_DATA)
        await persistence.update_callback_data(CALLBACK_DATA)
        for name, states in CONVERSATIONS.items():
            for key, state in states.items():
                await persistence.update_conversation(name, key, state)
        await persistence.update_record("fsm", FSM_KEY, FSM_RECORD)
        await persistence.close()

    asyncio.run(write())


def store_users(url: str, users: dict[int, Any]) -> None:
    async def write() -> None:
        persistence = from_url(url)
        for user_id, data in users.items():
            await persistence.update_user_data(user_id, data)
        await persistence.close()

    asyncio.run(write())


OWN_MODULE_WRITER = """
import asyncio, sys
sys.path.insert(0, ".")
from mybot_module import *
from botstate import from_url

async def main():
    persistence = from_url(sys.argv[1])
    await eval("persistence." + sys.argv[2])
    await persistence.close()

asyncio.run(main())
"""


def store_with_own_module(folder: Path, source: str, url: str, call: str) -> None:
    """Write *source* as ``mybot_module.py`` in *folder*, then, in a process that imports it
    as a bot would, call the persistence method *call* on the store *url*."""
    (folder / "mybot_module.py").write_text(source)
    subprocess.run([sys.executable, "-c", OWN_MODULE_WRITER, url, call], cwd=folder, check=True)


def contents(url: str) -> dict[str, Any]:
    """Everything a bot would load from the store."""

    async def read() -> dict[str, Any]:
        persistence = from_url(url)
        try:
            return {
                "user_data": await persistence.get_user_data(),
                "chat_data": await persistence.get_chat_data(),
                "bot_data": await persistence.get_bot_data(),
                "callback_data": await persistence.get_callback_data(),
                "conversations": {
                    name: await persistence.get_conversations(name) for name in CONVERSATIONS
                },
                "fsm": await persistence.get_record("fsm", FSM_KEY),
            }
        finally:
            await persistence.close()

    return asyncio.run(read())


EXPECTED = {
    "user_data": USERS,
    "chat_data": CHATS,
    "bot_data": BOT_DATA,
    "callback_data": CALLBACK_DATA,
    "conversations": CONVERSATIONS,
    "fsm": FSM_RECORD,
}


# -- every command on every store ---------------------------------------------------------------


def test_every_command_on_every_store(place: Place) -> None:
    url = place.url()
    fill(url)

    # inspect: counts, sizes, conversations, the largest records.
    inspected = botstate("inspect", url, "--json", cwd=place.folder)
    assert inspected.returncode == 0, inspected.stderr
    summary = json.loads(inspected.stdout)
    counts = {kind: numbers["records"] for kind, numbers in summary["kinds"].items()}
    assert counts == {
        "user_data": 2,
        "chat_data": 1,
        "bot_data": 1,
        "callback_data": 1,
        "conversations": 3,
        "fsm": 1,
    }
    assert all(numbers["bytes"] > 0 for numbers in summary["kinds"].values())
    assert summary["conversations"] == {"signup": 2, "feedback": 1}
    assert summary["codec"] == ("json" if place.name == "json" else "pickle")
    assert summary["incomplete"] is None
    assert len(summary["largest"]) == 5
    assert (summary["last_write"] is None) is (place.name == "redis")
    assert summary["in_use"] is (None if place.name in ("redis", "postgres") else False)

    # dump: one typed JSON record per line, then one record alone.
    dumped = botstate("dump", url, cwd=place.folder)
    assert dumped.returncode == 0, dumped.stderr
    lines = [json.loads(line) for line in dumped.stdout.splitlines()]
    assert len(lines) == RECORDS
    codec = JSONCodec()
    by_address = {
        (line["kind"], json.dumps(line["key"])): codec.from_text(json.dumps(line["value"]))
        for line in lines
    }
    assert by_address[("user_data", "42")] == USERS[42]
    assert by_address[("bot_data", "null")] == BOT_DATA
    assert by_address[("callback_data", "null")] == CALLBACK_DATA
    assert by_address[("conversations", '["signup", [42, 42]]')] == 2
    assert by_address[("fsm", json.dumps(list(FSM_KEY)))] == FSM_RECORD
    one = botstate("dump", url, "--kind", "user_data", "--key", "42", cwd=place.folder)
    assert one.returncode == 0, one.stderr
    assert codec.from_text(one.stdout) == USERS[42]

    # check: every record decodes.
    checked = botstate("check", url, cwd=place.folder)
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.strip() == f"checked {RECORDS} records in {url}: all decode"

    # set and delete repair one record each.
    value = '{"name": "Ada", "tags": {"$set": ["c"]}, "seen": {"$date": "2024-06-01"}}'
    repaired = botstate(
        "set", url, "--kind", "user_data", "--key", "42", "--json", value, cwd=place.folder
    )
    assert repaired.returncode == 0, repaired.stderr
    assert repaired.stdout.strip() == f"replaced user_data[42] in {url}"
    deleted = botstate("delete", url, "--kind", "user_data", "--key", "7", cwd=place.folder)
    assert deleted.returncode == 0, deleted.stderr
    assert deleted.stdout.strip() == f"deleted user_data[7] from {url}"
    expected = {
        **EXPECTED,
        "user_data": {42: {"name": "Ada", "tags": {"c"}, "seen": date(2024, 6, 1)}},
    }
    assert contents(url) == expected

    # migrate to SQLite and back into a new store of the same kind.
    middle = f"sqlite://{place.folder}/middle.db"
    back = place.url("back")
    for origin, destination in ((url, middle), (middle, back)):
        result = botstate("migrate", origin, destination, cwd=place.folder)
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        assert lines[0] == (
            f"copied {RECORDS - 1} records from {origin} to {destination} (1 user_data, "
            "1 chat_data, 1 bot_data, 1 callback_data, 3 conversations, 1 fsm)"
        )
        assert lines[-1] == (
            f"verified: the destination holds the same {RECORDS - 1} records (count and "
            "content digests match)"
        )
    assert contents(back) == expected


def test_inspect_and_dump_show_records_for_people(tmp_path: Path) -> None:
    fill(f"sqlite://{tmp_path}/bot.db")
    text = botstate("inspect", "bot.db", cwd=tmp_path)
    assert text.returncode == 0, text.stderr
    assert text.stdout.startswith(
        "sqlite://bot.db\n  store       SQLite database, botstate format 3"
    )
    assert "  user_data              2" in text.stdout
    assert "  total                  9" in text.stdout
    assert "    'signup': 2 keys" in text.stdout
    assert "largest records" in text.stdout
    assert "  in use      no" in text.stdout
    assert not ANSI.search(text.stdout + text.stderr)

    conversation = botstate(
        "dump", "bot.db", "--kind", "conversations", "--key", '["signup",[7,7]]', cwd=tmp_path
    )
    assert conversation.stdout.strip() == "1"
    single = botstate("dump", "bot.db", "--kind", "bot_data", "--format", "repr", cwd=tmp_path)
    assert single.stdout.strip() == "{'signups': 2}"
    kind = botstate("dump", "bot.db", "--kind", "conversations", "--format", "repr", cwd=tmp_path)
    assert kind.stdout.splitlines() == [
        "conversations['feedback'][(42,)] = 'waiting'",
        "conversations['signup'][(42, 42)] = 2",
        "conversations['signup'][(7, 7)] = 1",
    ]
    missing = botstate("dump", "bot.db", "--kind", "user_data", "--key", "5", cwd=tmp_path)
    assert missing.returncode == 1
    assert missing.stderr == "botstate dump: error: sqlite://bot.db holds no user_data[5]\n"


def test_dump_names_the_store_and_record_it_cannot_read_and_shows_the_rest(
    tmp_path: Path,
) -> None:
    import sqlite3

    fill(f"sqlite://{tmp_path}/bot.db")
    with sqlite3.connect(tmp_path / "bot.db") as connection:
        connection.execute(
            "UPDATE botstate_records SET value = x'800599' WHERE kind = 'user_data' AND key = '7'"
        )
    connection.close()
    dumped = botstate("dump", "bot.db", "--kind", "user_data", cwd=tmp_path)
    assert dumped.returncode == 1
    assert dumped.stderr.startswith("botstate dump: error: sqlite://bot.db: user_data[7]: ")
    assert [json.loads(line)["key"] for line in dumped.stdout.splitlines()] == [42]


def test_inspect_lists_the_damaged_records_a_bot_set_aside(tmp_path: Path) -> None:
    import sqlite3

    fill(f"sqlite://{tmp_path}/bot.db")
    with sqlite3.connect(tmp_path / "bot.db") as connection:
        connection.execute(
            "UPDATE botstate_records SET value = x'800599' WHERE kind = 'user_data' AND key = '7'"
        )
    connection.close()

    async def bot_writes_user_7_again() -> None:
        persistence = SQLitePersistence(tmp_path / "bot.db", on_corrupt="skip")
        await persistence.get_user_data()
        await persistence.update_user_data(7, {"fresh": True})
        await persistence.close()

    asyncio.run(bot_writes_user_7_again())
    shown = botstate("inspect", "bot.db", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "set aside (damaged records a bot replaced" in shown.stdout
    assert re.search(r"\n +3 B  user_data/7/\d+\.\d+\n", shown.stdout), shown.stdout
    as_json = json.loads(botstate("inspect", "bot.db", "--json", cwd=tmp_path).stdout)
    assert [entry["bytes"] for entry in as_json["set_aside"]] == [3]


@pytest.mark.parametrize("destination", ["new.db", "new.pickle", "new.json"])
def test_a_migration_from_an_unreadable_source_leaves_no_new_store_behind(
    tmp_path: Path, destination: str
) -> None:
    whole = pickle.dumps({"user_data": {1: {"a": 1}}, "chat_data": {}, "bot_data": {}})
    (tmp_path / "bad.pickle").write_bytes(whole[:-3])
    (tmp_path / "kept.db").write_bytes(b"")
    failed = botstate("migrate", "bad.pickle", destination, "--trust", cwd=tmp_path)
    assert failed.returncode == 1
    assert "bad.pickle cannot be decoded" in failed.stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == ["bad.pickle", "kept.db"]


def test_set_stores_new_records_and_reads_standard_input(tmp_path: Path) -> None:
    fill(f"sqlite://{tmp_path}/bot.db")

    def set_state(value: str) -> subprocess.CompletedProcess[str]:
        conversation = ["--kind", "conversations", "--key", '["signup",[9,9]]']
        return botstate("set", "bot.db", *conversation, "--json", value, cwd=tmp_path)

    new = set_state("3")
    assert new.stdout.strip() == "stored new conversations['signup'][(9, 9)] in sqlite://bot.db"
    piped = botstate(
        "set", "bot.db", "--kind", "bot_data", "--json", "-", cwd=tmp_path, stdin='{"signups": 0}'
    )
    assert piped.returncode == 0, piped.stderr
    for kind, key, value in [("bot_data", [], "[1]"), ("user_data", ["--key", "5"], '"text"')]:
        wrong = botstate("set", "bot.db", "--kind", kind, *key, "--json", value, cwd=tmp_path)
        assert wrong.returncode == 2
        assert f"{kind} records are JSON objects" in wrong.stderr
    state = set_state("{}")
    assert state.returncode == 2
    assert "a conversation state is a number, text or another hashable value" in state.stderr
    again = botstate("delete", "bot.db", "--kind", "user_data", "--key", "5", cwd=tmp_path)
    assert again.returncode == 1
    assert again.stderr == (
        "botstate delete: error: sqlite://bot.db holds no user_data[5]; nothing deleted\n"
    )
    stored = contents(f"sqlite://{tmp_path}/bot.db")
    assert stored["bot_data"] == {"signups": 0}
    assert stored["conversations"]["signup"] == {(42, 42): 2, (7, 7): 1, (9, 9): 3}


@pytest.mark.parametrize("name", ["sqlite", "redis", "postgres"])
def test_check_reports_each_undecodable_record_and_goes_on(tmp_path: Path, name: str) -> None:
    place = Place(name, tmp_path, [])
    if name != "sqlite":
        servers.require(name)
    url = place.url()
    try:
        fill(url)
        store = from_url(url).store
        assert isinstance(store, RecordStore)
        store.open()
        store.write_rows(
            [Row("user_data", "42", b"not a pickle"), Row("chat_data", "x1", b"\x80\x05K\x01.")],
            [],
        )
        store.close()

        result = botstate("check", url, cwd=tmp_path)
        assert result.returncode == 1
        failures = [line for line in result.stdout.splitlines() if line.startswith("FAILED")]
        assert len(failures) == 2
        assert failures[0].startswith("FAILED user_data[42]: ")
        assert "not a readable pickle" in failures[0]
        assert failures[1].startswith("FAILED chat_data key 'x1': ")
        assert result.stdout.strip().endswith(f"checked {RECORDS + 1} records in {url}: 2 failed")
        if name != "sqlite":
            return

        # dump shows the other records and names the bad ones on stderr; inspect counts them.
        dumped = botstate("dump", url, cwd=tmp_path)
        assert dumped.returncode == 1
        assert len(dumped.stdout.splitlines()) == RECORDS - 1
        assert "user_data[42]: not a readable pickle" in dumped.stderr
        inspected = botstate("inspect", url, cwd=tmp_path)
        assert inspected.returncode == 0, inspected.stderr
        assert "chat_data key 'x1'" in inspected.stdout
    finally:
        for server_name in place.server_names:
            servers.remove(name, server_name)


def test_check_fails_a_file_that_cannot_be_decoded(tmp_path: Path) -> None:
    (tmp_path / "bot.pickle").write_bytes(b"\x80\x05 broken")
    result = botstate("check", "bot.pickle", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout.startswith("FAILED bot.pickle cannot be decoded as pickle")
    assert result.stdout.strip().endswith("checked 0 records in pickle://bot.pickle: 1 failed")

    # In the one-file-per-kind layout, the other files are checked all the same.
    fill(f"pickle://{tmp_path}/multi?single_file=false")
    (tmp_path / "multi_chat_data").write_bytes(b"\x80\x05 broken")
    multi = botstate("check", "multi", cwd=tmp_path)
    assert multi.returncode == 1
    assert multi.stdout.startswith("FAILED multi_chat_data cannot be decoded as pickle")
    assert multi.stdout.strip().endswith(": 1 failed")
    assert f"checked {RECORDS - 1} records" in multi.stdout


def test_a_bot_waits_for_a_repair_and_then_gives_up(tmp_path: Path) -> None:
    fill(f"sqlite://{tmp_path}/bot.db")
    repair = open_store(f"sqlite://{tmp_path}/bot.db", mode="change")
    try:
        bot = SQLitePersistence(tmp_path / "bot.db", lock_timeout=0.2)
        with pytest.raises(StoreLockedError, match="is being changed by a botstate command"):
            asyncio.run(bot.get_user_data())
    finally:
        repair.close()
    assert asyncio.run(_users(f"sqlite://{tmp_path}/bot.db")) == USERS


# -- repairs while a bot runs ----------------------------------------------------------------


HOLDER = """
import asyncio, sys
from botstate import from_url

async def main():
    persistence = from_url(sys.argv[1])
    await persistence.get_user_data()
    print("ready", flush=True)
    sys.stdin.read()
    await persistence.close()

asyncio.run(main())
"""


@pytest.mark.parametrize("name", ["pickle-multi", "json", "sqlite"])
def test_repairs_are_refused_while_a_bot_has_the_store_open(tmp_path: Path, name: str) -> None:
    url = Place(name, tmp_path, []).url()
    fill(url)
    bot = subprocess.Popen(
        [sys.executable, "-c", HOLDER, url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert bot.stdout is not None
        assert bot.stdout.readline().strip() == "ready"
        refused = botstate(
            "set", url, "--kind", "user_data", "--key", "1", "--json", "{}", cwd=tmp_path
        )
        assert refused.returncode == 1
        assert "is in use by another process" in refused.stderr
        assert "stop it, then run this again" in refused.stderr
        assert (
            "in use      yes, by another process" in botstate("inspect", url, cwd=tmp_path).stdout
        )
        # Reading is allowed while the bot runs.
        assert botstate("dump", url, cwd=tmp_path).returncode == 0
    finally:
        assert bot.stdin is not None
        bot.stdin.close()
        bot.wait(timeout=30)
    assert contents(url)["user_data"] == USERS

    allowed = botstate(
        "set", url, "--kind", "user_data", "--key", "1", "--json", "{}", cwd=tmp_path
    )
    assert allowed.returncode == 0, allowed.stderr


# -- migrate ------------------------------------------------------------------------------------


def test_migrate_refuses_a_non_empty_destination_unless_told(tmp_path: Path) -> None:
    fill(f"sqlite://{tmp_path}/a.db")
    store_users(f"sqlite://{tmp_path}/a.db", {1: {"from": "a"}})
    b = f"pickle://{tmp_path}/b.pickle"
    fill(b)
    store_users(b, {99: {"only": "b"}, 7: {"from": "b"}})

    refused = botstate("migrate", "a.db", b, cwd=tmp_path)
    assert refused.returncode == 2
    assert refused.stderr.strip() == (
        f"botstate migrate: error: {b} is not empty (3 user_data, 1 chat_data, 1 bot_data, 1 "
        "callback_data, 3 conversations, 1 fsm); pass --overwrite to replace those kinds or "
        "--merge to copy over them"
    )
    assert contents(b)["user_data"][99] == {"only": "b"}

    merged = botstate("migrate", "a.db", b, "--merge", "--kinds", "user_data", cwd=tmp_path)
    assert merged.returncode == 0, merged.stderr
    assert "kept 1 records of the destination that the source does not have" in merged.stdout
    users = contents(b)["user_data"]
    assert users[99] == {"only": "b"}
    assert users[7] == {"name": "Bob"}
    assert users[1] == {"from": "a"}

    overwritten = botstate(
        "migrate", "a.db", b, "--overwrite", "--kinds", "user_data,bot_data", cwd=tmp_path
    )
    assert overwritten.returncode == 0, overwritten.stderr
    assert "deleted 5 records the destination held before (--overwrite)" in overwritten.stdout
    assert set(contents(b)["user_data"]) == {1, 7, 42}

    both = botstate("migrate", "a.db", b, "--overwrite", "--merge", cwd=tmp_path)
    assert both.returncode == 2
    assert "choose one of --overwrite and --merge" in both.stderr
    itself = botstate("migrate", "a.db", f"sqlite://{tmp_path}/a.db", "--merge", cwd=tmp_path)
    assert itself.returncode == 2
    assert "is both the source and the destination" in itself.stderr


@pytest.mark.parametrize("command", ["inspect", "check", "dump"])
def test_a_pipe_named_by_url_is_refused_not_waited_on(tmp_path: Path, command: str) -> None:
    os.mkfifo(tmp_path / "fifo.pickle")
    started = time.monotonic()
    refused = botstate(command, "pickle://fifo.pickle", cwd=tmp_path)
    assert refused.returncode == 1
    shown = refused.stdout + refused.stderr
    assert "fifo.pickle cannot be read: it is not a regular file" in shown
    assert time.monotonic() - started < 60  # the helper's own timeout is 120 s


@pytest.mark.parametrize("server", ["redis", "postgres"])
def test_one_server_store_named_two_ways_is_not_migrated_onto_itself(
    tmp_path: Path, server: str
) -> None:
    servers.require(server)
    name = servers.unique_name(server)
    if server == "redis":
        first = f"redis://127.0.0.1:6379/0?prefix={name}"
        second = f"redis://127.0.0.1/0?prefix={name}"  # the default port left out
    else:
        first = f"postgresql://127.0.0.1:5432/test?table={name}"
        second = f"postgresql://127.0.0.1/test?table={name}"
    try:
        fill(first)
        before = contents(first)
        again = botstate("migrate", first, second, "--overwrite", cwd=tmp_path)
        assert again.returncode == 2, again.stdout
        assert "is both the source and the destination" in again.stderr
        assert contents(first) == before
    finally:
        servers.remove(server, name)


def test_migrate_to_a_new_file_named_by_its_ending(tmp_path: Path) -> None:
    fill(f"sqlite://{tmp_path}/bot.db")
    for target, scheme in (
        ("new.pickle", "pickle"),
        ("new.json", "json"),
        ("new.sqlite", "sqlite"),
    ):
        result = botstate("migrate", "bot.db", target, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert f" to {scheme}://{target} " in result.stdout
        assert contents(f"{scheme}://{tmp_path}/{target}") == EXPECTED
    unknown = botstate("migrate", "bot.db", "new.txt", cwd=tmp_path)
    assert unknown.returncode == 2
    assert "new.txt does not exist; give a URL such as sqlite:///path/bot.db" in unknown.stderr


def test_a_value_the_destination_cannot_store_leaves_it_untouched(tmp_path: Path) -> None:
    fill(f"pickle://{tmp_path}/bot.pickle")
    odd = "class Odd:\n    def __reduce__(self):\n        return (Odd, ())\n"
    store_with_own_module(tmp_path, odd, "bot.pickle", "update_user_data(5, {'odd': Odd()})")

    result = botstate(
        "migrate", "bot.pickle", f"json://{tmp_path}/out.json", "--trust", cwd=tmp_path
    )
    assert result.returncode == 1
    assert "1 records cannot be stored in" in result.stderr
    assert "user_data[5]: cannot encode mybot_module.Odd at ['odd'] as JSON" in result.stderr
    assert not (tmp_path / "out.json").exists()


# -- interrupted migrations ---------------------------------------------------------------------


def big_sqlite(path: Path, users: int) -> None:
    store = SQLiteStore(path)
    store.open()
    rows = [
        Row("user_data", str(i), pickle.dumps({"n": i, "pad": "x" * 40})) for i in range(users)
    ]
    store.write_rows(rows, [])
    store.close()


def run_until_progress(arguments: list[str], cwd: Path, kill_at: int) -> tuple[int, str]:
    """Run the console script with stderr on a terminal, and SIGKILL it once its progress bar
    passes *kill_at* percent (if it gets there). Returns its exit status and what it showed."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [*botstate_command(), *arguments], cwd=cwd, stdout=subprocess.PIPE, stderr=follower
    )
    os.close(follower)
    shown = ""
    try:
        while True:
            ready, _, _ = select.select([leader], [], [], 60)
            if not ready:
                break
            try:
                chunk = os.read(leader, 4096)
            except OSError:
                break  # the process closed the terminal
            if not chunk:
                break
            shown += chunk.decode(errors="replace")
            percents = [int(p) for p in re.findall(r"(\d+)%", shown)]
            if percents and kill_at <= percents[-1] < 100:
                process.send_signal(signal.SIGKILL)
                break
    finally:
        os.close(leader)
    return process.wait(timeout=60), shown


@pytest.mark.parametrize("name", ["sqlite", "pickle-multi", "redis", "postgres"])
def test_a_killed_migration_leaves_the_destination_marked_incomplete(
    tmp_path: Path, name: str
) -> None:
    if name in ("redis", "postgres"):
        servers.require(name)
    big_sqlite(tmp_path / "big.db", 5000)
    place = Place(name, tmp_path, [])
    destination = place.url("copy")
    try:
        status, shown = run_until_progress(["migrate", "big.db", destination], tmp_path, 20)
        assert status == -signal.SIGKILL, shown
        assert "copying" in shown

        # A bot refuses the store; inspect and check report it.
        with pytest.raises(
            CorruptDataError,
            match=r"is incomplete: a 'botstate migrate' into it did not finish "
            r"\(from sqlite://big\.db, started ",
        ):
            contents(destination)
        inspected = botstate("inspect", destination, cwd=tmp_path)
        assert inspected.returncode == 0, inspected.stderr
        assert (
            "INCOMPLETE  a migration into it did not finish (from sqlite://big.db"
            in inspected.stdout
        )
        checked = botstate("check", destination, cwd=tmp_path)
        assert checked.returncode == 1
        assert checked.stdout.startswith("INCOMPLETE a migration into it did not finish")
        if name == "pickle-multi":
            marks = list(tmp_path.glob("copy*incomplete*"))
            assert len(marks) == 1
            assert stat.S_IMODE(marks[0].stat().st_mode) == 0o600
            # Killed before its single write: no file yet, but the mark.
            again = botstate("migrate", "big.db", destination, cwd=tmp_path)
            assert again.returncode == 2
            assert f"{destination} is not empty (marked incomplete)" in again.stderr

        # Running it again with --overwrite finishes the job.
        finished = botstate("migrate", "big.db", destination, "--overwrite", cwd=tmp_path)
        assert finished.returncode == 0, finished.stderr
        assert "verified: the destination holds the same 5000 records" in finished.stdout
        assert len(asyncio.run(_users(destination))) == 5000
        assert botstate("check", destination, cwd=tmp_path).returncode == 0
    finally:
        for server_name in place.server_names:
            servers.remove(name, server_name)


async def _users(url: str) -> dict[int, Any]:
    persistence = from_url(url)
    try:
        return await persistence.get_user_data()
    finally:
        await persistence.close()


def test_a_killed_migration_into_a_single_file_leaves_it_untouched(tmp_path: Path) -> None:
    big_sqlite(tmp_path / "big.db", 5000)
    fill(f"pickle://{tmp_path}/old.pickle")
    before = (tmp_path / "old.pickle").read_bytes()
    status, shown = run_until_progress(
        ["migrate", "big.db", "old.pickle", "--overwrite"], tmp_path, 20
    )
    assert status == -signal.SIGKILL, shown
    assert (tmp_path / "old.pickle").read_bytes() == before
    assert botstate("check", "old.pickle", cwd=tmp_path).returncode == 0


def test_output_to_a_pipe_has_no_progress_bar_and_no_colour(tmp_path: Path) -> None:
    big_sqlite(tmp_path / "big.db", 3000)
    result = botstate("migrate", "big.db", "copy.db", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert not ANSI.search(result.stdout)
    assert "copying" not in result.stdout
    # On a terminal the same copy shows one.
    status, shown = run_until_progress(["migrate", "big.db", "again.db"], tmp_path, 101)
    assert status == 0
    assert "copying" in shown
    assert "100%" in shown


# -- python-telegram-bot and aiogram --------------------------------------------------------------


PTB_WRITER = """
import asyncio, sys
import telegram.ext
from telegram import Message
from telegram.ext import ExtBot
from botstate.testing import OfflineRequest, text_update

async def main():
    bot = ExtBot(OfflineRequest.TOKEN, request=OfflineRequest(), arbitrary_callback_data=True)
    persistence = telegram.ext.PicklePersistence(sys.argv[1], single_file=sys.argv[2] == "1")
    persistence.set_bot(bot)
    await persistence.get_user_data()
    chat = {"id": -100, "type": "group", "title": "g"}
    user = {"id": 5, "is_bot": False, "first_name": "Eve"}
    message = Message.de_json(text_update(9, "hello", chat=chat, user=user)["message"], bot)
    await persistence.update_user_data(2**40, {"message": message, "set": {1, 2}})
    await persistence.update_chat_data(-100, {"title": "x", "when": (2024, 1, 2)})
    await persistence.update_bot_data({"b": 1})
    keyboards = [("kb", 1700000000.25, {"b": {"page": 2}})]
    await persistence.update_callback_data((keyboards, {"q": "kb"}))
    await persistence.update_conversation("conv", (1, 2), 3)
    await persistence.flush()

asyncio.run(main())
"""

PTB_READER = """
import asyncio, json, sys
import telegram.ext
from telegram.ext import ExtBot
from botstate.testing import OfflineRequest

async def main():
    bot = ExtBot(OfflineRequest.TOKEN, request=OfflineRequest(), arbitrary_callback_data=True)
    persistence = telegram.ext.PicklePersistence(sys.argv[1], single_file=sys.argv[2] == "1")
    persistence.set_bot(bot)
    users = await persistence.get_user_data()
    message = users[2**40]["message"]
    print(repr({
        "user_data": {k: {**v, "message": message.to_dict()} for k, v in users.items()},
        "bot_is_attached": message.get_bot() is bot,
        "chat_data": await persistence.get_chat_data(),
        "bot_data": await persistence.get_bot_data(),
        "callback_data": await persistence.get_callback_data(),
        "conversations": await persistence.get_conversations("conv"),
    }))

asyncio.run(main())
"""


@pytest.mark.parametrize("single_file", [True, False])
def test_a_python_telegram_bot_pickle_file_to_sqlite_and_back_is_equal(
    tmp_path: Path, single_file: bool
) -> None:
    flag = "1" if single_file else "0"
    subprocess.run(
        [sys.executable, "-c", PTB_WRITER, "ptb.pickle", flag], cwd=tmp_path, check=True
    )
    layout = "" if single_file else "?single_file=false"
    ptb = f"pickle://{tmp_path}/ptb.pickle{layout}"
    back = f"pickle://{tmp_path}/back.pickle{layout}"

    # Restricted loading reads python-telegram-bot's files as they are.
    assert botstate("check", ptb, cwd=tmp_path).returncode == 0
    dumped = botstate("dump", ptb, "--kind", "user_data", "--key", str(2**40), cwd=tmp_path)
    assert dumped.returncode == 0, dumped.stderr
    assert '"$telegram": [\n      "telegram:Message"' in dumped.stdout

    for origin, destination in ((ptb, "state.db"), ("state.db", back)):
        result = botstate("migrate", origin, destination, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert "copied 5 records" in result.stdout

    def read(name: str) -> str:
        return subprocess.run(
            [sys.executable, "-c", PTB_READER, name, flag],
            cwd=tmp_path,
            check=True,
            capture_output=True,
            text=True,
        ).stdout

    original = read("ptb.pickle")
    assert "'bot_is_attached': True" in original
    assert read("back.pickle") == original


def test_a_store_written_through_aiogram(tmp_path: Path) -> None:
    from aiogram.fsm.storage.base import StorageKey

    from botstate.aiogram import AiogramStorage

    async def write() -> None:
        storage = AiogramStorage.from_url(f"sqlite://{tmp_path}/fsm.db")
        for user in (1, 2):
            key = StorageKey(bot_id=700000001, chat_id=-100, user_id=user, thread_id=7)
            await storage.set_state(key, "Form:age")
            await storage.update_data(key, {"name": f"user {user}", "age": user * 10})
        await storage.close()

    asyncio.run(write())
    inspected = botstate("inspect", "fsm.db", "--json", cwd=tmp_path)
    assert json.loads(inspected.stdout)["kinds"]["fsm"]["records"] == 2
    dumped = botstate("dump", "fsm.db", "--kind", "fsm", cwd=tmp_path)
    first = json.loads(dumped.stdout.splitlines()[0])
    assert first["key"] == [700000001, -100, 1, 7, None, "default"]
    assert first["value"] == {"state": "Form:age", "data": {"name": "user 1", "age": 10}}
    assert botstate("check", "fsm.db", cwd=tmp_path).returncode == 0
    assert botstate("migrate", "fsm.db", "fsm.json", cwd=tmp_path).returncode == 0
    fsm_key = ["--kind", "fsm", "--key", '[700000001,-100,2,7,null,"default"]']
    value = '{"state": null, "data": {"age": 21}}'
    repaired = botstate("set", "fsm.json", *fsm_key, "--json", value, cwd=tmp_path)
    assert repaired.returncode == 0, repaired.stderr
    refused = botstate("set", "fsm.json", *fsm_key, "--json", '{"age": 21}', cwd=tmp_path)
    assert refused.returncode == 2
    assert 'an fsm record is {"state": "Form:name" or null, "data": {...}}' in refused.stderr

    async def read() -> tuple[object, object]:
        storage = AiogramStorage.from_url(f"json://{tmp_path}/fsm.json")
        key = StorageKey(bot_id=700000001, chat_id=-100, user_id=2, thread_id=7)
        try:
            return await storage.get_state(key), await storage.get_data(key)
        finally:
            await storage.close()

    assert asyncio.run(read()) == (None, {"age": 21})


# -- safety -------------------------------------------------------------------------------------


def test_restricted_loading_refuses_unknown_classes_until_allowed(tmp_path: Path) -> None:
    states = "import enum\n\nclass Step(enum.Enum):\n    NAME = 1\n    AGE = 2\n"
    store_with_own_module(
        tmp_path, states, "sqlite://bot.db", "update_conversation('signup', (1, 1), Step.AGE)"
    )

    refused = botstate("check", "bot.db", cwd=tmp_path)
    assert refused.returncode == 1
    assert refused.stdout.startswith(
        "REFUSED conversations['signup'][(1, 1)]: refused to load mybot_module.Step"
    )
    dumped = botstate("dump", "bot.db", cwd=tmp_path)
    assert dumped.returncode == 1
    assert "pass --allow MODULE:NAME for its classes, or --trust" in dumped.stderr

    for option in (["--allow", "mybot_module:Step"], ["--allow", "mybot_module"]):
        allowed = botstate("dump", "bot.db", *option, cwd=tmp_path)
        assert allowed.returncode == 0, allowed.stderr
        assert '"$enum":"mybot_module:Step.AGE"' in allowed.stdout.replace(" ", "")
    # --trust loads any pickle; the JSON notation still names only allowed classes.
    trusted = botstate("dump", "bot.db", "--trust", "--format", "repr", cwd=tmp_path)
    assert trusted.returncode == 0, trusted.stderr
    assert "conversations['signup'][(1, 1)] = <Step.AGE: 2>" in trusted.stdout
    # The inventory of a database needs no decoding at all.
    assert botstate("inspect", "bot.db", cwd=tmp_path).returncode == 0


def test_a_pickle_that_would_run_code_is_refused_before_it_runs(tmp_path: Path) -> None:
    # Calls builtins.open('pwned', 'w') while loading.
    (tmp_path / "bot.pickle").write_bytes(b"\x80\x02c__builtin__\nopen\n(Vpwned\nVw\ntR.")
    for command in ("inspect", "dump", "check"):
        result = botstate(command, "bot.pickle", cwd=tmp_path)
        assert result.returncode == 1
        assert "refused to load builtins.open" in result.stdout + result.stderr
    migrated = botstate("migrate", "bot.pickle", "out.db", cwd=tmp_path)
    assert migrated.returncode == 1
    assert not (tmp_path / "pwned").exists()


# -- conventions --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command", ["inspect", "dump", "migrate", "check", "set", "delete", "demo"]
)
def test_every_command_has_help_with_an_example(tmp_path: Path, command: str) -> None:
    result = botstate(command, "--help", cwd=tmp_path)
    assert result.returncode == 0
    assert "Example" in result.stdout
    assert f"Usage: botstate {command}" in result.stdout


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            ["inspect"],
            "botstate inspect: error: Missing argument 'URL'. (see 'botstate inspect --help')",
        ),
        (["dump", "x.db", "--colour"], "botstate dump: error: No such option"),
        (["inspect", "nothing.db"], "botstate inspect: error: nothing.db does not exist"),
        (["inspect", "ftp://x"], "botstate inspect: error: unknown store URL 'ftp://x'"),
        (["inspect", "memory://"], "memory:// holds nothing outside the process that made it"),
        (
            ["set", "bot.db", "--kind", "user_data", "--json", "{}"],
            "user_data needs --key, e.g. --key 42",
        ),
        (
            ["set", "bot.db", "--kind", "user_data", "--key", "x", "--json", "{}"],
            "user_data key 'x' is not a decimal integer",
        ),
        (
            ["set", "bot.db", "--kind", "bot_data", "--json", "{nope"],
            "botstate set: error: --json: not valid JSON",
        ),
        (["dump", "bot.db", "--key", "4"], "--key needs --kind"),
        (["migrate", "bot.db", "b.db", "--kinds", "users"], "unknown kind 'users'"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(
    tmp_path: Path, arguments: list[str], message: str
) -> None:
    fill(f"sqlite://{tmp_path}/bot.db")
    result = botstate(*arguments, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert message in result.stderr
    assert result.stdout == ""


def test_passwords_are_masked_in_every_message(tmp_path: Path) -> None:
    port = servers.closed_port()
    for url in (
        f"redis://:hunter2secret@127.0.0.1:{port}/0?prefix=x",
        f"postgresql://bot:hunter2secret@127.0.0.1:{port}/test?timeout=1",
    ):
        result = botstate("inspect", url, "--debug", cwd=tmp_path)
        assert result.returncode == 1
        assert "hunter2secret" not in result.stdout + result.stderr
        assert ":***@127.0.0.1" in result.stderr
        assert "Traceback" in result.stderr  # --debug shows it, masked too
        plain = botstate("inspect", url, cwd=tmp_path)
        assert len(plain.stderr.splitlines()) == 1
        assert "server cannot be reached" in plain.stderr


def test_a_server_url_without_its_driver_names_the_extra(tmp_path: Path) -> None:
    script = (
        "import sys; sys.modules['redis'] = None; from botstate.cli import main; "
        "main(['inspect', 'redis://127.0.0.1:6379/0'])"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert result.returncode == 2
    assert "redis:// URLs need the redis driver" in result.stderr
    assert "pip install 'botstate[redis]'" in result.stderr
