"""Containers whose deep copy never fails, for python-telegram-bot applications.

python-telegram-bot deep-copies each changed user's data, each changed chat's data and
``bot_data`` before it hands them to the persistence. When one part of such a value refuses to
be copied (a lock, a socket, an open file, a generator), that copy raises inside the
application itself: the records of the cycle not handed over yet are never saved, and the
application's periodic saving task ends, so every later save is skipped without a word.

The classes here copy everything they can and keep each part that cannot be copied as it is
(the very same object) instead of failing the whole copy. The copy then always reaches the
persistence, which reports the part that cannot be stored with an
:class:`~botstate.errors.EncodingError` naming the record and the path inside it, stores the
other records of the cycle and keeps the last stored version of the bad one. The application
hands that error to its error handlers on every cycle that writes the record.

:func:`botstate.telegram.copy_safe_context_types` sets these classes up for an application.
"""

from __future__ import annotations

import copy
from typing import Any

__all__ = ["CopySafe", "CopySafeDict", "copy_or_share"]


def copy_or_share(value: object, memo: dict[int, Any]) -> Any:
    """Deep-copy *value*; each part of it that cannot be copied is kept as the same object.

    Plain dicts, lists, tuples, sets and frozensets are looked into, so only the parts that
    fail are shared; any other object that fails to copy is shared whole. *memo* is
    :func:`copy.deepcopy`'s memo, so objects referenced twice are copied once.
    """
    mark = len(memo)
    try:
        return copy.deepcopy(value, memo)
    except Exception:
        # The failed attempt may have left half-built copies in the memo; a later reference to
        # the same object must not pick one of them up.
        for key in list(memo)[mark:]:
            del memo[key]

    kind = type(value)
    if kind is dict:
        assert isinstance(value, dict)
        copied: dict[Any, Any] = {}
        memo[id(value)] = copied
        for key, item in value.items():
            copied[copy_or_share(key, memo)] = copy_or_share(item, memo)
        return copied
    if kind is list:
        assert isinstance(value, list)
        items: list[Any] = []
        memo[id(value)] = items
        items.extend(copy_or_share(item, memo) for item in value)
        return items
    if kind in (tuple, set, frozenset):
        assert isinstance(value, (tuple, set, frozenset))
        return kind(copy_or_share(item, memo) for item in value)
    return value


class CopySafe:
    """Mixin for a ``bot_data``, ``user_data`` or ``chat_data`` class of your own whose deep
    copy must never fail: ``class BotData(CopySafe): ...``.

    The copy holds a copy of each instance attribute (and of each item, for a ``dict``
    subclass), made by :func:`copy_or_share`; ``__init__`` is not called, as with
    :func:`copy.deepcopy`. A class that defines its own copy or pickle methods
    (``__deepcopy__``, ``__reduce__``, ``__getstate__``) should not use this mixin.
    """

    __slots__ = ()

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        cls = type(self)
        new: Any = cls.__new__(cls)
        memo[id(self)] = new
        if isinstance(self, dict):
            for key, item in dict.items(self):
                dict.__setitem__(new, copy_or_share(key, memo), copy_or_share(item, memo))
        attributes = getattr(self, "__dict__", None)
        if attributes:
            vars(new).update({name: copy_or_share(v, memo) for name, v in attributes.items()})
        for name in _slot_names(cls):
            try:
                item = object.__getattribute__(self, name)
            except AttributeError:
                continue
            object.__setattr__(new, name, copy_or_share(item, memo))
        return new


class CopySafeDict(CopySafe, dict[Any, Any]):
    """A ``dict`` whose deep copy never fails; see the module documentation.

    It is stored as a plain ``dict``, so stores and files hold nothing botstate-specific, and a
    persistence whose ``context_types`` name this class gives stored dicts back as this class.
    """

    __slots__ = ()

    def __copy__(self) -> CopySafeDict:
        return type(self)(self)

    def __reduce_ex__(self, protocol: Any) -> Any:
        return (dict, (), None, None, iter(self.items()))


def _slot_names(cls: type) -> list[str]:
    names = []
    for klass in cls.__mro__:
        slots = klass.__dict__.get("__slots__", ())
        for declared in (slots,) if isinstance(slots, str) else slots:
            if declared in ("__dict__", "__weakref__"):
                continue
            name = declared
            if declared.startswith("__") and not declared.endswith("__"):
                name = f"_{klass.__name__.lstrip('_')}{declared}"  # as Python mangles it
            if name not in names:
                names.append(name)
    return names
