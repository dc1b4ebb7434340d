"""JSON codec: readable text, safe to load, that gives back exactly the values stored.

Plain JSON loses types: integer ids come back as strings, tuples as lists, and sets cannot be
written at all. This codec writes each value JSON has no type for as an object with a single
key starting with ``$``, the *notation*:

* ``None``, ``bool``, ``int``, ``str``: themselves. ``float``: a number, or ``{"$float": "nan"}``
  (also ``"inf"``, ``"-inf"``).
* ``list``: an array. ``tuple``: ``{"$tuple": [...]}``. ``set`` and ``frozenset``:
  ``{"$set": [...]}`` and ``{"$frozenset": [...]}``, items in a stable order.
* ``dict`` whose keys are all strings, none starting with ``$``: an object. Any other dict:
  ``{"$dict": [[key, value], ...]}`` in the dict's order, so an int key ``7`` and a str key
  ``"7"`` stay two keys.
* ``bytes``: ``{"$bytes": "<base64>"}``.
* ``datetime``, ``date``, ``time``: ``{"$datetime": "2024-05-01T09:30:00+02:00"}``,
  ``{"$date": "2024-05-01"}``, ``{"$time": "09:30:00"}``, in ISO 8601. A time zone is kept: a
  fixed offset (``datetime.timezone``) as the offset, a ``zoneinfo.ZoneInfo`` as the offset
  followed by its key in brackets (``"2024-05-01T09:30:00+02:00[Europe/Berlin]"``, as RFC 9557
  writes it). Other ``tzinfo`` classes, and ``timezone`` objects with a custom name, are
  refused rather than written as something else.
* ``timedelta``: ``{"$timedelta": [days, seconds, microseconds]}``. ``Decimal``:
  ``{"$decimal": "1.10"}``. ``UUID``: ``{"$uuid": "..."}``.
* ``Enum`` member: ``{"$enum": "mybot.states:Step.AGE"}`` (by value,
  ``{"$enum": ["module:Class", value]}``, for a combination of flags).
* An object of a plain class (defined in Python, all its state in ``__dict__``, no custom
  pickling methods, no built-in base class; dataclasses are plain):
  ``{"$object": ["mybot.models:Cart", {attributes}]}``.
* A python-telegram-bot ``TelegramObject``: ``{"$telegram": ["telegram:Message", {...}]}`` with
  the object's Bot API JSON (``to_json``). It is rebuilt with ``de_json`` and the current bot
  attached. Dates inside it keep whole seconds, the precision of the Bot API.
* The persistence's bot: ``{"$bot": null}``; the current bot takes its place when loading. No
  other bot is stored.

Enum, plain and TelegramObject classes are named by module and name, and loading imports them
only when the codec's :class:`~botstate.codecs.allow.AllowList` allows them (python-telegram-bot's
classes are allowed by default): JSON data alone never makes botstate import a module.

A value of any other type raises :class:`~botstate.errors.EncodingError` naming its type and its
path inside the value, e.g. ``['cart'][3]``; nothing lossy is ever written. A value reached
twice is written twice and loads as two equal copies; a value that contains itself is refused.
Values may nest up to :data:`MAX_DEPTH` JSON levels.

For tools, :meth:`JSONCodec.to_text` writes any value in this notation, indented, and
:meth:`JSONCodec.from_text` reads such text back (``botstate dump`` and ``botstate set --json``)::

    codec = JSONCodec(allow=["mybot.states"])
    text = codec.to_text({42: {"step": Step.AGE}})
    assert codec.from_text(text) == {42: {"step": Step.AGE}}
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
import math
import re
import sys
from collections.abc import Callable, Iterable
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any, Final, TypeVar, cast
from uuid import UUID
from zoneinfo import ZoneInfo

from botstate.codecs.allow import AllowEntry, AllowList
from botstate.codecs.base import Codec
from botstate.copysafe import CopySafeDict
from botstate.errors import BotStateError, CorruptDataError, EncodingError, UnsafeDataError

__all__ = ["MAX_DEPTH", "JSONCodec"]

#: How deeply JSON arrays and objects may nest in a record. Reading JSON recurses once per
#: level, so a limit well below Python's recursion limit keeps everything written readable.
MAX_DEPTH: Final = 400

# Levels a whole file (or a tool's text) may add around its records: the kinds, a $dict of
# records, a handler's conversations. A record that was accepted never fails in its file.
_WRAPPING: Final = 8

# Py_TPFLAGS_HEAPTYPE: set for classes created by a class statement, unset for built-in types.
_HEAP_TYPE: Final = 1 << 9

# Methods that change how pickle, and so the meaning of an object's state, works.
_CUSTOM_STATE: Final = frozenset(
    {
        "__reduce__",
        "__reduce_ex__",
        "__getstate__",
        "__setstate__",
        "__getnewargs__",
        "__getnewargs_ex__",
    }
)

# What json.dumps takes and json.loads gives: dicts, lists, str, int, float, bool, None.
_Json = Any


class JSONCodec(Codec):
    """Typed, lossless JSON; see the module documentation for the notation.

    Args:
        allow: Classes besides python-telegram-bot's whose Enum members and plain objects may
            be stored and loaded, e.g. ``["mybot.states"]``; see
            :mod:`botstate.codecs.allow` for the forms. Writing an object of a class not
            allowed raises :class:`~botstate.errors.EncodingError`; loading one raises
            :class:`~botstate.errors.UnsafeDataError`.
        indent: Indentation of whole files written by a snapshot store (JSONPersistence).
            Records in databases are always written compactly. None writes files compactly.
    """

    __slots__ = ("allow", "indent")

    name = "json"

    def __init__(
        self, allow: Iterable[AllowEntry] | AllowList = (), *, indent: int | None = 2
    ) -> None:
        self.allow = allow if isinstance(allow, AllowList) else AllowList(allow)
        self.indent = indent

    def encode(self, value: object, *, bot: Any = None) -> bytes:
        return self._write(value, bot, None, MAX_DEPTH)

    def encode_snapshot(self, value: object, *, bot: Any = None) -> bytes:
        return self._write(value, bot, self.indent, MAX_DEPTH + _WRAPPING)

    def decode(self, data: bytes, *, bot: Any = None) -> object:
        return self._read(data, bot)

    def to_text(self, value: object, *, bot: Any = None, indent: int | None = 2) -> str:
        """Return *value* as JSON text in botstate's notation, for people to read.

        Raises:
            EncodingError: For a part the codec does not store, naming its type and path.
        """
        return self._write(value, bot, indent, MAX_DEPTH + _WRAPPING).decode("utf-8")

    def from_text(self, text: str, *, bot: Any = None) -> object:
        """Return the value that JSON text in botstate's notation holds.

        Raises:
            CorruptDataError: For text that is not JSON or holds bad notation.
            UnsafeDataError: For a class the allow-list does not allow.
        """
        return self._read(text, bot)

    def _write(self, value: object, bot: Any, indent: int | None, limit: int) -> bytes:
        try:
            tree = _Writer(self.allow, bot, limit).value(value, 0)
        except _Refusal as refusal:
            raise refusal.error() from refusal.cause
        except RecursionError as exc:
            raise EncodingError(
                f"cannot encode {_type_name(value)} as JSON: it is nested too deeply"
            ) from exc
        text = _dumps(value, tree, indent, ascii_only=False)
        try:
            return text.encode("utf-8")
        except UnicodeEncodeError:
            # A lone surrogate has no UTF-8 form; JSON's \u escape keeps it.
            return _dumps(value, tree, indent, ascii_only=True).encode("ascii")

    def _read(self, data: bytes | str, bot: Any) -> object:
        reader = _Reader(self.allow, bot)
        try:
            return json.loads(data, object_hook=reader.hook, parse_constant=_no_constant)
        except CorruptDataError:
            raise
        except RecursionError as exc:
            raise CorruptDataError("the JSON is nested too deeply to read") from exc
        except ValueError as exc:
            raise CorruptDataError(f"not valid JSON: {exc}") from exc

    def __repr__(self) -> str:
        return f"JSONCodec(allow={list(self.allow.entries)!r}, indent={self.indent!r})"


def _dumps(value: object, tree: _Json, indent: int | None, ascii_only: bool) -> str:
    try:
        return json.dumps(
            tree,
            ensure_ascii=ascii_only,
            allow_nan=False,
            indent=indent,
            separators=(",", ":") if indent is None else (",", ": "),
        )
    except (ValueError, RecursionError) as exc:
        # An int too long to write as decimal digits, or a caller already deep in its stack.
        raise EncodingError(f"cannot encode {_type_name(value)} as JSON: {exc}") from exc


def _no_constant(name: str) -> object:
    raise CorruptDataError(f"JSON holds {name}, which botstate writes as {{'$float': ...}}")


def _type_name(value: object) -> str:
    cls = type(value)
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


# -- writing ------------------------------------------------------------------------------------


class _Refusal(Exception):
    """A part of a value that cannot be written, with its path (innermost step first)."""

    def __init__(self, value: object, reason: str, cause: BaseException | None = None) -> None:
        super().__init__(reason)
        self.type_name = _type_name(value)
        self.reason = reason
        self.cause = cause
        self.steps: list[str] = []

    def error(self) -> EncodingError:
        path = "".join(reversed(self.steps))
        where = f" at {path}" if path else ""
        return EncodingError(
            f"cannot encode {self.type_name}{where} as JSON: {self.reason}", path=path
        )


_UNSUPPORTED: Final = (
    "the JSON codec does not store this type; store it as one the codec keeps "
    "(see docs/formats.md), or use codec='pickle'"
)


class _Writer:
    """One encoding: turns a value into what ``json.dumps`` writes, in botstate's notation."""

    __slots__ = ("allow", "bot", "limit", "open")

    def __init__(self, allow: AllowList, bot: Any, limit: int) -> None:
        self.allow = allow
        self.bot = bot
        self.limit = limit
        # The containers being written, by id: meeting one again means a cycle.
        self.open: set[int] = set()

    def value(self, value: Any, depth: int) -> _Json:
        kind = type(value)
        if kind is str or kind is int or kind is bool or value is None:
            return value
        if kind is float:
            return value if math.isfinite(value) else {"$float": repr(value)}
        scalar = _SCALARS.get(kind)
        if scalar is not None:
            tag, write = scalar
            return {tag: write(value)}
        if depth >= self.limit:
            raise _Refusal(value, f"it is nested more than {self.limit} levels deep")
        if id(value) in self.open:
            raise _Refusal(value, "it contains itself")
        self.open.add(id(value))
        try:
            container = _CONTAINERS.get(kind)
            if container is not None:
                return container(self, value, depth)
            return self.other(value, depth)
        finally:
            self.open.discard(id(value))

    def write_list(self, value: Iterable[object], depth: int) -> list[_Json]:
        out: list[_Json] = []
        try:
            for item in value:
                out.append(item if type(item) in _NATIVE else self.value(item, depth + 1))
        except _Refusal as refusal:
            refusal.steps.append(f"[{len(out)}]")
            raise
        return out

    def write_tuple(self, value: tuple[object, ...], depth: int) -> _Json:
        return {"$tuple": self.write_list(value, depth + 1)}

    def write_set(self, value: set[object] | frozenset[object], depth: int) -> _Json:
        out: list[_Json] = []
        item: object = None
        try:
            for item in value:
                out.append(self.value(item, depth + 2))
        except _Refusal as refusal:
            refusal.steps.append(f"{{{item!r}}}")
            raise
        # Sorted, so that equal sets are equal text whatever the process's hash seed.
        out.sort(key=repr)
        return {"$set" if type(value) is set else "$frozenset": out}

    def write_dict(self, value: dict[Any, object], depth: int, attributes: bool = False) -> _Json:
        key: object = None
        in_key = False
        try:
            if _plain_keys(value):
                plain = {}
                for key, item in value.items():
                    plain[key] = item if type(item) in _NATIVE else self.value(item, depth + 1)
                return plain
            pairs = []
            for key, item in value.items():
                in_key = True
                written_key = self.value(key, depth + 3)
                in_key = False
                pairs.append([written_key, self.value(item, depth + 3)])
        except _Refusal as refusal:
            step = f".{key}" if attributes else f"[{key!r}]"
            refusal.steps.append(step + (" (key)" if in_key else ""))
            raise
        return {"$dict": pairs}

    def other(self, value: object, depth: int) -> _Json:
        if value is self.bot and value is not None:
            return {"$bot": None}
        if isinstance(value, enum.Enum):
            return self.write_enum(value, depth)
        telegram = sys.modules.get("telegram")
        if telegram is not None and isinstance(value, telegram.TelegramObject):
            return self.write_telegram_object(value, depth, telegram)
        cls = type(value)
        if _plain_class(cls):
            ref = self.reference(value, f"{cls.__module__}:{cls.__qualname__}")
            return {"$object": [ref, self.write_dict(vars(value), depth + 2, attributes=True)]}
        raise _Refusal(value, _UNSUPPORTED)

    def write_enum(self, value: enum.Enum, depth: int) -> _Json:
        cls = type(value)
        ref = self.reference(value, f"{cls.__module__}:{cls.__qualname__}")
        name = value._name_
        if name is not None and cls.__members__.get(name) is value:
            return {"$enum": f"{ref}.{name}"}
        # A combination of flags has no member name of its own.
        return {"$enum": [ref, self.value(value._value_, depth + 2)]}

    def write_telegram_object(self, value: Any, depth: int, telegram: Any) -> _Json:
        cls = type(value)
        if isinstance(value, telegram.Bot):
            raise _Refusal(value, "a bot other than the persistence's own is never stored")
        # The public name (telegram:Message) rather than the private module it lives in.
        public = getattr(telegram, cls.__name__, None) is cls
        ref = self.reference(
            value, f"telegram:{cls.__name__}" if public else f"{cls.__module__}:{cls.__qualname__}"
        )
        try:
            payload = json.loads(value.to_json())
        except Exception as exc:
            reason = f"python-telegram-bot cannot write it as JSON: {exc}"
            raise _Refusal(value, reason, exc) from exc
        return {"$telegram": [ref, self.value(payload, depth + 2)]}

    def reference(self, value: object, ref: str) -> str:
        """Return *ref*, the name of *value*'s class, once the allow-list accepts the class."""
        cls = type(value)
        if "<locals>" in cls.__qualname__:
            raise _Refusal(value, "its class is defined inside a function, where none can find it")
        if not self.allow.allows_class(cls):
            raise _Refusal(
                value,
                f"its class is not in the codec's allow-list; allow it with "
                f"JSONCodec(allow=['{cls.__module__}'])",
            )
        return ref


def _plain_keys(value: dict[Any, object]) -> bool:
    """True when every key is a str that does not start with ``$``.

    Both checks run in C: the types as a set, and a search of the keys joined by NUL for a NUL
    followed by ``$`` (a key holding a NUL itself may give a false alarm, costing only
    readability: the dict is then written as pairs).
    """
    if not value:
        return True
    return set(map(type, value)) == {str} and "\0$" not in "\0" + "\0".join(value)


def _zone(value: datetime | time) -> str:
    """The text after the ISO form that names *value*'s zone: ``""`` or ``"[Area/City]"``."""
    zone = value.tzinfo
    if zone is None:
        return ""
    if type(zone) is timezone:
        offset = zone.utcoffset(None)
        if zone.tzname(None) == timezone(offset).tzname(None):
            return ""
        raise _Refusal(
            value,
            f"its time zone is named {zone.tzname(None)!r}, which JSON does not keep; use "
            "datetime.timezone(offset) without a name, or a zoneinfo.ZoneInfo",
        )
    if type(zone) is ZoneInfo and zone.key is not None:
        return f"[{zone.key}]"
    raise _Refusal(
        value,
        f"its time zone ({_type_name(zone)}) cannot be written exactly; use datetime.timezone "
        "or zoneinfo.ZoneInfo",
    )


def _write_datetime(value: datetime) -> str:
    return value.isoformat() + _zone(value)


def _write_time(value: time) -> str:
    return value.isoformat() + _zone(value)


def _write_bytes(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


def _write_timedelta(value: timedelta) -> list[int]:
    return [value.days, value.seconds, value.microseconds]


# Types JSON writes as they are (float is not among them: NaN and infinities are not JSON).
_NATIVE: Final = frozenset({str, int, bool, type(None)})

# Exact type -> (tag, function writing its argument). Subclasses are not these types.
_SCALARS: Final[dict[type, tuple[str, Callable[[Any], _Json]]]] = {
    bytes: ("$bytes", _write_bytes),
    datetime: ("$datetime", _write_datetime),
    date: ("$date", date.isoformat),
    time: ("$time", _write_time),
    timedelta: ("$timedelta", _write_timedelta),
    Decimal: ("$decimal", str),
    UUID: ("$uuid", str),
}

_CONTAINERS: Final[dict[type, Callable[[_Writer, Any, int], _Json]]] = {
    list: _Writer.write_list,
    tuple: _Writer.write_tuple,
    dict: _Writer.write_dict,
    # python-telegram-bot's data under copy-safe context types: stored as the plain dict it is.
    CopySafeDict: _Writer.write_dict,
    set: _Writer.write_set,
    frozenset: _Writer.write_set,
}


# Class -> whether it is plain; filled as classes are met.
_PLAIN: dict[type, bool] = {}


def _plain_class(cls: type) -> bool:
    """True for a class defined in Python whose instances keep all their state in __dict__."""
    plain = _PLAIN.get(cls)
    if plain is None:
        plain = _PLAIN[cls] = _is_plain(cls)
    return plain


def _is_plain(cls: type) -> bool:
    if issubclass(cls, enum.Enum) or not cls.__dictoffset__:
        return False
    for base in cls.__mro__[:-1]:
        # A built-in base (dict, Exception, ...) keeps state outside __dict__.
        if not base.__flags__ & _HEAP_TYPE:
            return False
        attributes = vars(base)
        slots = attributes.get("__slots__", ())
        if set([slots] if isinstance(slots, str) else slots) - {"__dict__", "__weakref__"}:
            return False
        if not _CUSTOM_STATE.isdisjoint(attributes):
            return False
    return True


# -- reading ------------------------------------------------------------------------------------


class _Reader:
    """One decoding: turns notation objects back into values as ``json.loads`` meets them."""

    __slots__ = ("allow", "bot")

    def __init__(self, allow: AllowList, bot: Any) -> None:
        self.allow = allow
        self.bot = bot

    def hook(self, obj: dict[str, Any]) -> object:
        if len(obj) != 1:
            for key in obj:
                if key[:1] == "$":
                    raise CorruptDataError(f"an object mixes the notation key {key!r} with others")
            return obj
        ((tag, argument),) = obj.items()
        if tag[:1] != "$":
            return obj
        read = _READERS.get(tag)
        if read is None:
            raise CorruptDataError(f"unknown notation {tag!r}")
        try:
            return read(self, argument)
        except BotStateError:
            raise
        except Exception as exc:
            raise CorruptDataError(f"bad {tag} notation: {exc}") from exc

    def find_class(self, ref: object) -> type:
        if not isinstance(ref, str) or ":" not in ref:
            raise TypeError(f"a class is named 'module:Name', not {ref!r}")
        module, _, name = ref.partition(":")
        found = self.allow.resolve(module, name)
        if not isinstance(found, type):
            raise UnsafeDataError(f"refused to load {module}.{name}: it is not a class")
        return found

    def read_enum(self, argument: object) -> object:
        if isinstance(argument, str):
            ref, _, name = argument.rpartition(".")
            members = self.find_enum(ref).__members__
            if name not in members:
                raise ValueError(f"{ref} has no member {name!r}")
            return members[name]
        named, value = _pair(argument)
        return self.find_enum(named)(value)

    def find_enum(self, ref: object) -> type[enum.Enum]:
        cls = self.find_class(ref)
        if not issubclass(cls, enum.Enum):
            raise TypeError(f"{ref} is not an Enum")
        return cls

    def read_object(self, argument: object) -> object:
        ref, state = _pair(argument)
        cls = self.find_class(ref)
        if not _plain_class(cls):
            raise UnsafeDataError(
                f"refused to load {ref} as a plain object: its class keeps state outside "
                "__dict__ or defines how it is rebuilt"
            )
        if not isinstance(state, dict) or not all(type(name) is str for name in state):
            raise TypeError("the attributes are not an object of names")
        obj = cast("Any", cls).__new__(cls)
        vars(obj).update(state)
        return obj

    def read_telegram_object(self, argument: object) -> object:
        ref, payload = _pair(argument)
        cls = self.find_class(ref)
        telegram = sys.modules.get("telegram")
        if (
            telegram is None
            or not issubclass(cls, telegram.TelegramObject)
            or issubclass(cls, telegram.Bot)
        ):
            raise UnsafeDataError(f"refused to load {ref}: it is not a TelegramObject")
        if not isinstance(payload, dict):
            raise TypeError("the Bot API data is not an object")
        return cast("Any", cls).de_json(payload, self.bot)

    def read_bot(self, argument: object) -> object:
        if argument is not None:
            raise TypeError("the bot placeholder takes null")
        return self.bot


def _pair(argument: object) -> tuple[object, object]:
    if not isinstance(argument, list) or len(argument) != 2:
        raise TypeError("expected a pair [name, value]")
    return argument[0], argument[1]


def _array(argument: object) -> list[Any]:
    if not isinstance(argument, list):
        raise TypeError(f"expected an array, got {type(argument).__name__}")
    return argument


def _string(argument: object) -> str:
    if not isinstance(argument, str):
        raise TypeError(f"expected a string, got {type(argument).__name__}")
    return argument


def _read_dict(argument: object) -> dict[object, object]:
    result = {}
    for pair in _array(argument):
        key, value = _pair(pair)
        result[key] = value  # an unhashable key (a JSON array) raises TypeError
    return result


def _read_float(argument: object) -> float:
    if argument not in ("nan", "inf", "-inf"):
        raise ValueError("expected 'nan', 'inf' or '-inf'")
    return float(_string(argument))


def _read_bytes(argument: object) -> bytes:
    try:
        return base64.b64decode(_string(argument), validate=True)
    except binascii.Error as exc:
        raise ValueError(f"not base64: {exc}") from exc


def _split_zone(text: str) -> tuple[str, ZoneInfo | None]:
    if not text.endswith("]"):
        return text, None
    text, _, key = text[:-1].partition("[")
    return text, ZoneInfo(key)


_Moment = TypeVar("_Moment", datetime, time)

# An offset with fractions of a second, which fromisoformat of Python 3.10 and 3.11 drops.
_FINE_OFFSET: Final = re.compile(r"([+-])(\d\d):(\d\d):(\d\d)\.(\d{6})$")


def _from_iso(cls: type[_Moment], text: str) -> _Moment:
    """``cls.fromisoformat(text)``, keeping an offset's fractions of a second."""
    fine = _FINE_OFFSET.search(text)
    if fine is None:
        return cls.fromisoformat(text)
    sign, hours, minutes, seconds, micros = fine.groups()
    offset = timedelta(
        hours=int(hours), minutes=int(minutes), seconds=int(seconds), microseconds=int(micros)
    )
    value = cls.fromisoformat(text[: fine.start()])
    return value.replace(tzinfo=timezone(-offset if sign == "-" else offset))


def _read_datetime(argument: object) -> datetime:
    text, zone = _split_zone(_string(argument))
    value = _from_iso(datetime, text)
    if zone is None:
        return value
    # The offset written tells which of two equal wall times (fold) in the zone it was.
    offset = value.utcoffset()
    for fold in (0, 1):
        result = value.replace(tzinfo=zone, fold=fold)
        if offset is None or result.utcoffset() == offset:
            return result
    raise ValueError(f"the offset {offset} does not occur in {zone.key} at that time")


def _read_time(argument: object) -> time:
    text, zone = _split_zone(_string(argument))
    value = _from_iso(time, text)
    return value if zone is None else value.replace(tzinfo=zone)


def _read_timedelta(argument: object) -> timedelta:
    parts = _array(argument)
    if len(parts) != 3 or not all(type(part) is int for part in parts):
        raise TypeError("expected [days, seconds, microseconds]")
    return timedelta(*parts)


_READERS: Final[dict[str, Callable[[_Reader, Any], object]]] = {
    "$tuple": lambda reader, argument: tuple(_array(argument)),
    "$set": lambda reader, argument: set(_array(argument)),
    "$frozenset": lambda reader, argument: frozenset(_array(argument)),
    "$dict": lambda reader, argument: _read_dict(argument),
    "$float": lambda reader, argument: _read_float(argument),
    "$bytes": lambda reader, argument: _read_bytes(argument),
    "$datetime": lambda reader, argument: _read_datetime(argument),
    "$date": lambda reader, argument: date.fromisoformat(_string(argument)),
    "$time": lambda reader, argument: _read_time(argument),
    "$timedelta": lambda reader, argument: _read_timedelta(argument),
    "$decimal": lambda reader, argument: Decimal(_string(argument)),
    "$uuid": lambda reader, argument: UUID(_string(argument)),
    "$enum": _Reader.read_enum,
    "$object": _Reader.read_object,
    "$telegram": _Reader.read_telegram_object,
    "$bot": _Reader.read_bot,
}
