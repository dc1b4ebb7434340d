"""JSONPersistence's files: layout, readable content, bad input and URLs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from botstate import (
    CorruptDataError,
    EncodingError,
    JSONCodec,
    JSONPersistence,
    PicklePersistence,
    UnsafeDataError,
    from_url,
)
from botstate.codecs.json import MAX_DEPTH

SUPERGROUP = -1001234567890


async def test_one_file_holds_the_five_kinds_as_readable_json(tmp_path: Path) -> None:
    persistence = JSONPersistence(tmp_path / "bot.json")
    await persistence.update_user_data(42, {"name": "Ada", "langs": ("en", "de")})
    await persistence.update_chat_data(SUPERGROUP, {"title": "Team"})
    await persistence.update_bot_data({"users": 1})
    await persistence.update_conversation("signup", (SUPERGROUP, 42), "AGE")

    text = (tmp_path / "bot.json").read_text()
    assert text.startswith('{\n  "user_data": {\n    "$dict": [\n')
    assert json.loads(text) == {
        "user_data": {"$dict": [[42, {"name": "Ada", "langs": {"$tuple": ["en", "de"]}}]]},
        "chat_data": {"$dict": [[SUPERGROUP, {"title": "Team"}]]},
        "bot_data": {"users": 1},
        "callback_data": None,
        "conversations": {"signup": {"$dict": [[{"$tuple": [SUPERGROUP, 42]}, "AGE"]]}},
    }
    assert persistence.filepath == tmp_path / "bot.json"


async def test_multi_file_layout_writes_one_json_file_per_kind(tmp_path: Path) -> None:
    persistence = JSONPersistence(tmp_path / "bot", single_file=False)
    await persistence.update_user_data(1, {"u": 1})
    await persistence.update_bot_data({"b": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bot_bot_data", "bot_user_data"]
    assert json.loads((tmp_path / "bot_user_data").read_text()) == {"$dict": [[1, {"u": 1}]]}
    assert json.loads((tmp_path / "bot_bot_data").read_text()) == {"b": 1}
    assert (await JSONPersistence(tmp_path / "bot", single_file=False).get_user_data()) == {
        1: {"u": 1}
    }


async def test_a_file_that_is_not_json_is_an_error_and_stays_untouched(tmp_path: Path) -> None:
    path = tmp_path / "bot.json"
    path.write_text('{"user_data": {"$dict": [[1, ')
    persistence = JSONPersistence(path)
    with pytest.raises(CorruptDataError, match=r"bot\.json cannot be decoded as json: not valid"):
        await persistence.get_user_data()
    with pytest.raises(CorruptDataError, match=r"bot\.json"):
        await persistence.update_user_data(1, {"a": 1})
    assert path.read_text() == '{"user_data": {"$dict": [[1, '


async def test_a_class_outside_the_allow_list_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "bot.json"
    path.write_text('{"bot_data": {"x": {"$enum": "mybot.states:Step.AGE"}}}')
    with pytest.raises(UnsafeDataError, match=r"bot\.json .*refused to load mybot\.states\.Step"):
        await JSONPersistence(path).get_bot_data()


def test_a_json_persistence_takes_only_a_json_codec(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="JSONPersistence writes json files; codec Pickle"):
        JSONPersistence(tmp_path / "bot.json", codec="pickle")
    with pytest.raises(ValueError, match="PicklePersistence writes pickle files; codec JSON"):
        PicklePersistence(tmp_path / "bot.pickle", codec=JSONCodec())


async def test_json_urls_and_json_files_found_by_content(tmp_path: Path) -> None:
    persistence = from_url(f"json://{tmp_path}/bot.json")
    assert isinstance(persistence, JSONPersistence)
    await persistence.update_user_data(1, {"a": 1})
    multi = from_url(f"json://{tmp_path}/multi?single_file=false")
    assert isinstance(multi, JSONPersistence)
    assert multi.single_file is False
    await multi.update_callback_data(([], {}))
    await multi.update_conversation("c", (1,), 1)

    found = from_url(tmp_path / "bot.json")
    assert isinstance(found, JSONPersistence)
    assert await found.get_user_data() == {1: {"a": 1}}
    found_multi = from_url(tmp_path / "multi")
    assert isinstance(found_multi, JSONPersistence)
    assert found_multi.single_file is False
    assert await found_multi.get_conversations("c") == {(1,): 1}


async def test_a_record_nested_to_the_limit_is_stored_in_its_file(tmp_path: Path) -> None:
    deepest: list[object] = []
    for _ in range(MAX_DEPTH - 1):
        deepest = [deepest]
    persistence = JSONPersistence(tmp_path / "bot.json")
    await persistence.update_user_data(1, deepest)
    await persistence.update_conversation("c", (1,), deepest)
    with pytest.raises(EncodingError, match=f"nested more than {MAX_DEPTH} levels"):
        await persistence.update_user_data(2, [deepest])
    await persistence.close()

    reopened = JSONPersistence(tmp_path / "bot.json")
    assert await reopened.get_user_data() == {1: deepest}
    assert await reopened.get_conversations("c") == {(1,): deepest}
