"""The kinds of data a persistence stores, and how their keys are written down.

A record is addressed by its kind and key:

============== ============================================ =========================
kind           key in Python                                key as text (record stores)
============== ============================================ =========================
user_data      the user id, an ``int``                      ``"42"``
chat_data      the chat id, an ``int``                      ``"-1001234567890"``
bot_data       ``None`` (one record)                        ``""``
callback_data  ``None`` (one record)                        ``""``
conversations  ``(handler name, conversation key tuple)``   ``'["name",[42,"x"]]'``
fsm            :data:`FSMKey`, aiogram's storage key        ``'[7,-100,42,null,null,"default"]'``
============== ============================================ =========================

The first five are python-telegram-bot's. ``fsm`` holds aiogram's finite-state-machine records
(:mod:`botstate.aiogram`), one per storage key, with the key's six fields in aiogram's order:
bot id, chat id, user id, thread id, business connection id, destiny.

The text form keeps Python types: an int part of a conversation key comes back an int, a str
part a str, and a missing thread or business connection id comes back None.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Final, Literal, cast

__all__ = [
    "KINDS",
    "ConversationKey",
    "FSMKey",
    "Kind",
    "RecordKey",
    "check_key",
    "describe",
    "key_from_text",
    "key_to_text",
]

Kind = Literal["user_data", "chat_data", "bot_data", "callback_data", "conversations", "fsm"]

#: Every kind, in the order files and listings show them.
KINDS: Final[tuple[Kind, ...]] = (
    "user_data",
    "chat_data",
    "bot_data",
    "callback_data",
    "conversations",
    "fsm",
)

#: Kinds holding one record per id.
KEYED_KINDS: Final[frozenset[str]] = frozenset({"user_data", "chat_data"})

#: Kinds holding exactly one record, addressed by the key ``None``.
SINGLE_KINDS: Final[frozenset[str]] = frozenset({"bot_data", "callback_data"})

ConversationKey = tuple[int | str, ...]
#: (bot id, chat id, user id, thread id or None, business connection id or None, destiny).
FSMKey = tuple[int, int, int, int | None, str | None, str]
RecordKey = int | tuple[str, ConversationKey] | FSMKey | None

# The type each field of an FSMKey may have, in order.
_FSM_KEY_TYPES: Final = (
    (int,),
    (int,),
    (int,),
    (int, type(None)),
    (str, type(None)),
    (str,),
)

# The JSON decoder's C scanner: reads one value at a position and says where it ended.
_scan_json: Callable[[str, int], tuple[Any, int]]
_scan_json = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def check_key(kind: str, key: object) -> None:
    """Raise ``TypeError`` when *key* is not a valid key of *kind*."""
    if kind in KEYED_KINDS:
        if type(key) is not int:
            raise TypeError(f"{kind} keys must be int ids, got {type(key).__name__} {key!r}")
    elif kind in SINGLE_KINDS:
        if key is not None:
            raise TypeError(f"{kind} is a single record; its key is None, got {key!r}")
    elif kind == "conversations":
        if not (
            isinstance(key, tuple)
            and len(key) == 2
            and isinstance(key[0], str)
            and isinstance(key[1], tuple)
            and all(type(part) in (int, str) for part in key[1])
        ):
            raise TypeError(
                "conversation records are keyed by (handler name, tuple of int or str), "
                f"got {key!r}"
            )
    elif kind == "fsm":
        if not (
            isinstance(key, tuple)
            and len(key) == len(_FSM_KEY_TYPES)
            and all(type(part) in types for part, types in zip(key, _FSM_KEY_TYPES, strict=True))
        ):
            raise TypeError(
                "fsm records are keyed by (bot id, chat id, user id, thread id or None, "
                f"business connection id or None, destiny), got {key!r}"
            )
    else:
        raise ValueError(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")


def describe(kind: str, key: object) -> str:
    """Name a record the way messages show it: ``user_data[42]``, ``bot_data``,
    ``conversations['signup'][(42, 42)]``."""
    if kind in SINGLE_KINDS or key is None:
        return kind
    if kind == "conversations" and isinstance(key, tuple) and len(key) == 2:
        return f"{kind}[{key[0]!r}][{key[1]!r}]"
    return f"{kind}[{key!r}]"


def key_to_text(kind: str, key: RecordKey) -> str:
    """Write a record key as text that :func:`key_from_text` reads back with its types."""
    check_key(kind, key)
    if kind in KEYED_KINDS:
        return str(key)
    if kind in SINGLE_KINDS:
        return ""
    fields: list[object]
    if kind == "fsm":
        fields = list(cast("FSMKey", key))
    else:
        name, parts = cast("tuple[str, ConversationKey]", key)
        fields = [name, list(parts)]
    return json.dumps(fields, separators=(",", ":"), ensure_ascii=False)


def key_from_text(kind: str, text: str) -> RecordKey:
    """Read a key written by :func:`key_to_text`; raise ``ValueError`` on anything else."""
    if kind in KEYED_KINDS:
        # int() also accepts "4_2" and " 42"; a stored key is always plain decimal.
        stripped = text[1:] if text.startswith("-") else text
        if not stripped.isdecimal() or not stripped.isascii():
            raise ValueError(f"{kind} key {text!r} is not a decimal integer")
        return int(text)
    if kind in SINGLE_KINDS:
        if text:
            raise ValueError(f"{kind} is a single record, found key {text!r}")
        return None
    if kind == "conversations":
        try:
            # The C scanner alone: json.loads adds a whitespace check costing more than the scan.
            (name, parts), end = _scan_json(text, 0)
            if end != len(text):
                raise ValueError(f"extra data after position {end}")
            parts = tuple(parts)
        except (ValueError, TypeError, StopIteration) as exc:
            raise ValueError(f"conversation key {text!r} is not [name, [parts...]]") from exc
        key = (name, parts)
        try:
            check_key(kind, key)
        except TypeError as exc:
            raise ValueError(str(exc)) from exc
        return key
    if kind == "fsm":
        try:
            fsm_key = tuple(json.loads(text))
        except (ValueError, TypeError) as exc:
            raise ValueError(f"fsm key {text!r} is not a JSON list of six fields") from exc
        try:
            check_key(kind, fsm_key)
        except TypeError as exc:
            raise ValueError(str(exc)) from exc
        return cast("FSMKey", fsm_key)
    raise ValueError(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
