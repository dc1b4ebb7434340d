"""Record keys as text: read back with their types, anything else refused."""

from __future__ import annotations

import pytest

from botstate.kinds import RecordKey, key_from_text, key_to_text


@pytest.mark.parametrize(
    "key",
    [("signup", (42, 42)), ("signup", ()), ("ça va", (-1001234567890, "x", 7)), ('a"b', ("[",))],
)
def test_conversation_keys_come_back_with_their_types(key: RecordKey) -> None:
    assert key_from_text("conversations", key_to_text("conversations", key)) == key


@pytest.mark.parametrize(
    "text",
    ['["a",[1]]x', ' ["a",[1]]', '["a",[1]] ', '["a"]', '["a",[1],2]', "", "[", "{}"],
)
def test_conversation_key_text_of_another_shape_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"conversation key .* is not \[name, \[parts\.\.\.\]\]"):
        key_from_text("conversations", text)


@pytest.mark.parametrize("text", ["[1,[2]]", '["a",[1.5]]', '["a",[[1]]]'])
def test_conversation_key_parts_of_another_type_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="conversation records are keyed by"):
        key_from_text("conversations", text)
