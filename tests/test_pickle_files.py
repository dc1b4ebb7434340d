"""PicklePersistence's files: layout, atomic writes, modes, and what happens on bad input."""

from __future__ import annotations

import json
import os
import pickle
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from botstate import ConflictError, CorruptDataError, PicklePersistence, WriteError
from botstate._atomic import TEMP_MARK

GOOD = {
    "user_data": {1: {"a": 1}},
    "chat_data": {},
    "bot_data": {},
    "callback_data": None,
    "conversations": {},
}


def good_file(path: Path) -> bytes:
    data = pickle.dumps(GOOD)
    path.write_bytes(data)
    return data


async def test_one_file_holds_the_five_kinds_in_python_telegram_bots_layout(
    tmp_path: Path,
) -> None:
    persistence = PicklePersistence(tmp_path / "bot.pickle")
    await persistence.update_user_data(1, {"u": 1})
    await persistence.update_conversation("c", (1,), "S")
    content = pickle.loads((tmp_path / "bot.pickle").read_bytes())
    assert content == {
        "user_data": {1: {"u": 1}},
        "chat_data": {},
        "callback_data": None,
        "conversations": {"c": {(1,): "S"}},
    }
    assert persistence.filepath == tmp_path / "bot.pickle"


async def test_multi_file_layout_writes_one_file_per_kind(tmp_path: Path) -> None:
    persistence = PicklePersistence(tmp_path / "bot", single_file=False)
    await persistence.update_user_data(1, {"u": 1})
    await persistence.update_bot_data({"b": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bot_bot_data", "bot_user_data"]
    assert pickle.loads((tmp_path / "bot_user_data").read_bytes()) == {1: {"u": 1}}
    assert pickle.loads((tmp_path / "bot_bot_data").read_bytes()) == {"b": 1}


async def test_changing_single_file_after_construction_moves_everything(tmp_path: Path) -> None:
    persistence = PicklePersistence(tmp_path / "bot")
    await persistence.update_user_data(1, {"u": 1})
    await persistence.update_chat_data(2, {"c": 2})
    persistence.single_file = False
    await persistence.update_bot_data({"b": 3})

    multi = PicklePersistence(tmp_path / "bot", single_file=False)
    assert await multi.get_user_data() == {1: {"u": 1}}
    assert await multi.get_chat_data() == {2: {"c": 2}}
    assert await multi.get_bot_data() == {"b": 3}

    multi.single_file = True
    await multi.update_user_data(4, {"u": 4})
    single = PicklePersistence(tmp_path / "bot")
    assert await single.get_user_data() == {1: {"u": 1}, 4: {"u": 4}}
    assert await single.get_chat_data() == {2: {"c": 2}}


async def test_new_files_are_private_and_replaced_files_keep_their_mode(tmp_path: Path) -> None:
    persistence = PicklePersistence(tmp_path / "bot.pickle")
    await persistence.update_user_data(1, {"u": 1})
    assert stat.S_IMODE((tmp_path / "bot.pickle").stat().st_mode) == 0o600

    (tmp_path / "bot.pickle").chmod(0o640)
    await persistence.update_user_data(1, {"u": 2})
    assert stat.S_IMODE((tmp_path / "bot.pickle").stat().st_mode) == 0o640


async def test_writes_leave_no_temporary_files(tmp_path: Path) -> None:
    persistence = PicklePersistence(tmp_path / "bot.pickle")
    for n in range(5):
        await persistence.update_user_data(n, {"n": n})
    assert [p.name for p in tmp_path.iterdir()] == ["bot.pickle"]


async def test_a_temporary_file_left_by_a_killed_writer_is_removed_by_the_next_writer_only(
    tmp_path: Path,
) -> None:
    good_file(tmp_path / "bot.pickle")
    leftover = tmp_path / f"bot.pickle{TEMP_MARK}abc123"
    leftover.write_bytes(b"half a pick")

    # A reader may run beside a live writer whose temporary file this could be.
    reader = PicklePersistence(tmp_path / "bot.pickle")
    assert await reader.get_user_data() == {1: {"a": 1}}
    assert leftover.exists()

    writer = PicklePersistence(tmp_path / "bot.pickle")
    await writer.update_user_data(2, {"b": 2})
    assert not leftover.exists()
    assert await PicklePersistence(tmp_path / "bot.pickle").get_user_data() == {
        1: {"a": 1},
        2: {"b": 2},
    }


async def test_a_failed_write_keeps_the_previous_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    persistence = PicklePersistence(tmp_path / "bot.pickle")
    await persistence.update_user_data(1, {"v": 1})
    before = (tmp_path / "bot.pickle").read_bytes()

    # The file system refuses the final rename (a full or failing disk).
    def failing_replace(source: str, target: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(WriteError, match=r"bot\.pickle.*No space left on device"):
        await persistence.update_user_data(1, {"v": 2})
    monkeypatch.undo()
    assert (tmp_path / "bot.pickle").read_bytes() == before
    assert not list(tmp_path.glob(f"*{TEMP_MARK}*"))

    # The failed record is written with the next successful batch.
    await persistence.update_user_data(2, {"v": 1})
    assert await PicklePersistence(tmp_path / "bot.pickle").get_user_data() == {
        1: {"v": 2},
        2: {"v": 1},
    }


async def test_a_file_changed_by_someone_else_is_not_written_over(tmp_path: Path) -> None:
    persistence = PicklePersistence(tmp_path / "bot.pickle")
    await persistence.update_user_data(1, {"v": 1})

    # A backup is restored while the bot runs.
    restored = pickle.dumps({**GOOD, "user_data": {i: {"restored": i} for i in range(100)}})
    (tmp_path / "bot.pickle").write_bytes(restored)
    with pytest.raises(ConflictError, match=r"bot\.pickle was changed by another process"):
        await persistence.update_user_data(2, {"v": 2})
    assert (tmp_path / "bot.pickle").read_bytes() == restored

    # A restarted bot uses the file as it is now.
    restarted = PicklePersistence(tmp_path / "bot.pickle")
    assert len(await restarted.get_user_data()) == 100
    await restarted.update_user_data(500, {"v": 2})
    assert len(await PicklePersistence(tmp_path / "bot.pickle").get_user_data()) == 101


async def test_a_symlinked_store_is_written_through_the_link(tmp_path: Path) -> None:
    (tmp_path / "shared").mkdir()
    real = tmp_path / "shared" / "real.pickle"
    good_file(real)
    link = tmp_path / "bot.pickle"
    link.symlink_to(real)

    persistence = PicklePersistence(link)
    await persistence.update_user_data(2, {"b": 2})
    assert link.is_symlink()
    assert pickle.loads(real.read_bytes())["user_data"] == {1: {"a": 1}, 2: {"b": 2}}


# -- bad input ---------------------------------------------------------------------------------


def truncated(path: Path) -> None:
    path.write_bytes(pickle.dumps(GOOD)[:-7])


def garbage(path: Path) -> None:
    path.write_bytes(os.urandom(64) + b"\x00\xff not a pickle")


def empty(path: Path) -> None:
    path.write_bytes(b"")


def folder(path: Path) -> None:
    path.mkdir()
    (path / "inside.txt").write_text("kept")


def json_file(path: Path) -> None:
    path.write_text(json.dumps({"user_data": {"1": {"a": 1}}}))


def sqlite_file(path: Path) -> None:
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE t (x)")
    connection.commit()
    connection.close()


def another_pickle(path: Path) -> None:
    path.write_bytes(pickle.dumps(["a", "list", "of", "things"]))


def wrong_section(path: Path) -> None:
    path.write_bytes(pickle.dumps({"user_data": ["not", "a", "dict"], "chat_data": {}}))


def keys_not_ids(path: Path) -> None:
    path.write_bytes(pickle.dumps({**GOOD, "user_data": {"user_data": {1: {}}}}))


def snapshot(path: Path) -> object:
    if path.is_dir():
        return sorted((p.name, p.read_bytes()) for p in path.iterdir())
    return path.read_bytes()


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (truncated, "cannot be decoded"),
        (garbage, "cannot be decoded"),
        (empty, "cannot be decoded"),
        (folder, "cannot be read"),
        (json_file, "cannot be decoded"),
        (sqlite_file, "cannot be decoded"),
        (another_pickle, "holds a list, not persistence data"),
        (wrong_section, "user_data is a list"),
        (keys_not_ids, "user_data has the key 'user_data', not an int id"),
    ],
)
@pytest.mark.parametrize("single_file", [True, False])
async def test_unreadable_files_raise_and_are_left_untouched(
    tmp_path: Path, damage: object, problem: str, single_file: bool
) -> None:
    path = tmp_path / ("bot.pickle" if single_file else "bot_user_data")
    if not single_file and damage in (another_pickle, wrong_section):
        # A file of one kind holds that kind alone: a list where user_data belongs.
        path.write_bytes(pickle.dumps(["not", "a", "dict"]))
        problem = "user_data is a list"
    else:
        damage(path)  # type: ignore[operator]
    before = snapshot(path)

    persistence = PicklePersistence(
        tmp_path / ("bot.pickle" if single_file else "bot"), single_file=single_file
    )
    with pytest.raises(CorruptDataError, match=problem) as caught:
        await persistence.get_user_data()
    assert str(path) in str(caught.value)
    assert caught.value.location == str(path)

    # Writing is refused too: botstate never replaces what it could not read.
    with pytest.raises(CorruptDataError):
        await persistence.update_user_data(1, {"new": True})
    with pytest.raises(CorruptDataError):
        await persistence.flush()
    assert snapshot(path) == before


async def test_a_large_file_loads_as_plain_dicts_everywhere(tmp_path: Path) -> None:
    from botstate.codecs import get_codec

    persistence = PicklePersistence(tmp_path / "bot.pickle")
    await persistence.update_bot_data({"b": 1})
    await persistence.flush()
    # Large sections are pickled item by item so that the event loop keeps running; they
    # must still load as plain dicts, in python-telegram-bot's reader and the restricted one.
    import asyncio

    await asyncio.gather(
        *(persistence.update_user_data(user, {"n": user}) for user in range(2000)),
        *(persistence.update_conversation("c", (user, user), 1) for user in range(2000)),
    )
    data = (tmp_path / "bot.pickle").read_bytes()
    for content in (pickle.loads(data), get_codec("pickle-restricted").decode(data)):
        assert isinstance(content, dict)
        assert type(content["user_data"]) is dict
        assert len(content["user_data"]) == 2000
        assert type(content["conversations"]["c"]) is dict
        assert content["conversations"]["c"][(5, 5)] == 1


def test_a_temporary_file_being_written_by_a_live_process_is_left_alone(tmp_path: Path) -> None:
    from botstate._atomic import remove_stale_temporaries

    good_file(tmp_path / "bot.pickle")
    in_progress = tmp_path / f"bot.pickle{TEMP_MARK}live"
    left_over = tmp_path / f"bot.pickle{TEMP_MARK}dead"
    left_over.write_bytes(b"half")
    # Another process is writing this one, and holds its lock while it does.
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, sys, time\n"
            "f = open(sys.argv[1], 'wb')\n"
            "fcntl.flock(f, fcntl.LOCK_EX)\n"
            "print('locked', flush=True)\n"
            "time.sleep(60)\n",
            str(in_progress),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        remove_stale_temporaries(tmp_path / "bot.pickle")
        assert in_progress.exists()
        assert not left_over.exists()
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.parametrize("layout", ["single", "multi"])
@pytest.mark.parametrize("thing", ["device", "pipe"])
async def test_a_device_or_pipe_in_the_files_place_is_refused_at_once(
    tmp_path: Path, layout: str, thing: str
) -> None:
    from botstate import JSONPersistence

    path = tmp_path / "bot"
    target = path if layout == "single" else tmp_path / "bot_user_data"
    if thing == "device":
        target.symlink_to("/dev/zero")  # reading it would never end
    else:
        os.mkfifo(target)  # opening it for reading would wait for a writer
    for persistence_class in (PicklePersistence, JSONPersistence):
        persistence = persistence_class(path, single_file=layout == "single")
        with pytest.raises(CorruptDataError, match=r"it is not a regular file") as caught:
            await persistence.get_user_data()
        assert str(target) in str(caught.value)
        with pytest.raises(CorruptDataError):
            await persistence.update_user_data(1, {"a": 1})
    assert target.is_symlink() if thing == "device" else stat.S_ISFIFO(target.lstat().st_mode)


def test_the_command_line_names_a_folder_or_device_for_what_it_is(tmp_path: Path) -> None:
    from botstate.urls import guess_url

    (tmp_path / "folder.pickle").mkdir()
    with pytest.raises(ValueError, match=r"folder\.pickle is a folder"):
        guess_url(tmp_path / "folder.pickle")
    with pytest.raises(ValueError, match=r"/dev/null is not a regular file"):
        guess_url(Path("/dev/null"))
