"""Pickle codec with the bot placeholder python-telegram-bot's pickle files use.

The pickler replaces the persistence's bot by a placeholder, so stored bytes never hold the
bot's token, and the unpickler puts the current bot back. The placeholder strings are the ones
python-telegram-bot's own ``PicklePersistence`` writes, so files move between the two libraries.
python-telegram-bot's ``TelegramObject`` instances are stored by class and state and come back
with the current bot attached.

A pickle names the functions that rebuild it, and loading it calls them: a pickle can run any
command. ``PickleCodec(trusted=False)`` (also by the name ``"pickle-restricted"``) loads only
globals its :class:`~botstate.codecs.allow.AllowList` allows and refuses anything else with
:class:`~botstate.errors.UnsafeDataError` naming the global, before it is imported or called.
Its format is the same: it reads and writes what ``"pickle"`` reads and writes.

In restricted mode the live bot never enters the unpickler: a placeholder loads as a stand-in
that is swapped for the bot once loading is done, so a crafted pickle cannot change the bot's
attributes (its API address, for instance). The swap covers stored TelegramObjects and bots
kept in dicts, lists, tuples and plain objects; a bot used as a dict key or set member stays a
stand-in.
"""

from __future__ import annotations

import contextlib
import enum
import importlib
import io
import logging
import pickle
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any, Final

from botstate.codecs.allow import AllowEntry, AllowList
from botstate.codecs.base import Codec
from botstate.errors import CorruptDataError, EncodingError, UnsafeDataError

__all__ = [
    "BOT_PLACEHOLDER",
    "OTHER_BOT_PLACEHOLDER",
    "BotPickler",
    "BotUnpickler",
    "PickleCodec",
    "RestrictedUnpickler",
]

_log = logging.getLogger(__name__)

#: Persistent id standing for the persistence's own bot. A format fact shared with
#: python-telegram-bot's pickle files.
BOT_PLACEHOLDER: Final = "a known bot replaced by PTB's PicklePersistence"
#: Persistent id standing for any other bot instance; it loads as None.
OTHER_BOT_PLACEHOLDER: Final = "an unknown bot replaced by PTB's PicklePersistence"
# Both placeholders end so; data without these bytes holds no placeholder.
_PLACEHOLDER_MARK: Final = b"replaced by PTB's PicklePersistence"
# The classes whose objects the C pickler writes without asking reducer_override, so a bot of
# one of them (an odd bot, but the contract allows any object) is found by persistent_id only.
# None is not among them: BotPickler never takes None for the bot either.
_BUILT_IN_TYPES: Final = frozenset(
    (bool, int, float, str, bytes, bytearray, list, tuple, dict, set, frozenset)
)


def _telegram_classes() -> tuple[type | None, type | None]:
    """Return (telegram.Bot, telegram.TelegramObject) when python-telegram-bot is loaded.

    When it is not imported, no value can hold one of its objects, so there is nothing to
    replace and python-telegram-bot is not imported just to find that out.
    """
    module = sys.modules.get("telegram")
    if module is None:
        return None, None
    return getattr(module, "Bot", None), getattr(module, "TelegramObject", None)


class _BotFound(Exception):
    """Raised by :class:`_PlainDataPickler` on meeting a bot: the value needs placeholders."""


class _PlainDataPickler(pickle.Pickler):
    """A pickler for values that hold no bot, with python-telegram-bot's objects reduced.

    The C pickler calls ``reducer_override`` only for objects of classes other than the built-in
    containers and scalars, while it calls ``persistent_id`` for every object. User and chat
    data are mostly dicts, lists, strings and numbers, so leaving ``persistent_id`` out makes
    pickling them several times faster. On meeting a bot it raises :class:`_BotFound` and the
    value is pickled again by :class:`BotPickler`; otherwise the bytes are the ones
    :class:`BotPickler` writes.
    """

    def __init__(self, file: io.BytesIO, bot: Any, protocol: int) -> None:
        super().__init__(file, protocol=protocol)
        self._bot = bot
        self._bot_class, self._telegram_object_class = _telegram_classes()

    def reducer_override(self, obj: object) -> Any:
        if obj is self._bot or (self._bot_class is not None and isinstance(obj, self._bot_class)):
            raise _BotFound
        if self._telegram_object_class is not None and isinstance(
            obj, self._telegram_object_class
        ):
            from botstate.telegram import reduce_telegram_object

            return reduce_telegram_object(obj)
        return NotImplemented


class BotPickler(_PlainDataPickler):
    """A pickler that stores *bot* as a placeholder and other bots as a second placeholder."""

    def persistent_id(self, obj: object) -> str | None:
        if obj is self._bot and obj is not None:
            return BOT_PLACEHOLDER
        if self._bot_class is not None and isinstance(obj, self._bot_class):
            _log.warning(
                "a bot other than the persistence's own is stored as a placeholder; "
                "it will load as None"
            )
            return OTHER_BOT_PLACEHOLDER
        return None


class BotUnpickler(pickle.Unpickler):
    """An unpickler that puts *bot* in the place of the placeholder :class:`BotPickler` wrote."""

    def __init__(self, file: io.BytesIO, bot: Any) -> None:
        super().__init__(file)
        self._bot = bot

    def persistent_load(self, pid: object) -> Any:
        if pid == BOT_PLACEHOLDER:
            return self._bot
        if pid == OTHER_BOT_PLACEHOLDER:
            _log.warning("a stored reference to another bot instance is loaded as None")
            return None
        raise CorruptDataError(f"unknown placeholder {pid!r} in pickled data")


class _BotStandIn:
    """What a bot placeholder loads as inside a restricted unpickler: an object without state,
    so the pickle's instructions cannot change it."""

    __slots__ = ()


# Module names of Python 2 pickles (protocols 0 to 2) for their Python 3 modules.
_RENAMED_MODULES: Final = {"__builtin__": "builtins", "copy_reg": "copyreg"}


class RestrictedUnpickler(BotUnpickler):
    """An unpickler that looks up only the globals *allow* allows.

    Some globals get a checked stand-in instead of the real function: ``getattr`` (used by
    pickles of ``zoneinfo.ZoneInfo`` and of some enums) fetches only enum members and attributes
    the list names; ``_codecs.encode`` (how protocols 0 to 2 write bytes) and ``bytearray`` only
    copy the text or bytes given, so a few bytes of pickle cannot ask for gigabytes of memory;
    python-telegram-bot's and botstate's TelegramObject rebuilders accept only TelegramObject
    classes and attach the real bot.
    """

    def __init__(self, file: io.BytesIO, bot: Any, allow: AllowList) -> None:
        super().__init__(file, bot)
        self._allow = allow
        self._stand_in = _BotStandIn()
        # Stand-ins handed out and those already replaced by the bot.
        self._given = 0
        self._replaced = 0
        self._guarded: dict[tuple[str, str], Callable[..., Any]] = {
            ("builtins", "getattr"): self._getattr,
            ("_codecs", "encode"): _latin1_bytes,
            ("builtins", "bytearray"): _copied_bytearray,
            ("botstate.telegram", "restore_telegram_object"): self._restore_telegram_object,
            ("telegram.ext._picklepersistence", "_reconstruct_to"): self._reconstruct_to,
        }

    def find_class(self, module: str, name: str) -> Any:
        module = _RENAMED_MODULES.get(module, module)
        guarded = self._guarded.get((module, name))
        if guarded is not None:
            return guarded
        return self._allow.resolve(module, name)

    def persistent_load(self, pid: object) -> Any:
        value = super().persistent_load(pid)
        if value is not None and value is self._bot:
            self._given += 1
            return self._stand_in
        return value

    def load(self) -> Any:
        value = super().load()
        if self._given > self._replaced:
            value = _put_back(value, self._stand_in, self._bot, set())
        return value

    def _real(self, bot: object) -> Any:
        if bot is self._stand_in:
            self._replaced += 1
            return self._bot
        return bot

    def _getattr(self, obj: object, name: str) -> Any:
        if isinstance(obj, type) and isinstance(name, str):
            if issubclass(obj, enum.Enum) and name in obj.__members__:
                return obj.__members__[name]
            return self._allow.resolve(obj.__module__, f"{obj.__qualname__}.{name}")
        raise UnsafeDataError(f"refused to load an attribute of a {type(obj).__name__}")

    def _telegram_class(self, cls: object) -> type:
        telegram = sys.modules.get("telegram")
        if not (
            telegram is not None
            and isinstance(cls, type)
            and issubclass(cls, telegram.TelegramObject)
            and not issubclass(cls, telegram.Bot)
        ):
            raise UnsafeDataError(f"refused to rebuild {cls!r} as a TelegramObject")
        return cls

    def _restore_telegram_object(self, cls: object, state: dict[str, object], bot: object) -> Any:
        from botstate.telegram import restore_telegram_object

        return restore_telegram_object(self._telegram_class(cls), state, self._real(bot))

    def _reconstruct_to(self, cls: object, state: dict[str, object]) -> Any:
        # python-telegram-bot's own rebuilder, with the real bot put back into the state.
        rebuild = importlib.import_module("telegram.ext._picklepersistence")._reconstruct_to
        if isinstance(state, dict) and "_bot" in state:
            state = {**state, "_bot": self._real(state["_bot"])}
        return rebuild(self._telegram_class(cls), state)


def _latin1_bytes(text: object, encoding: object = "utf-8") -> bytes:
    if not isinstance(text, str) or encoding != "latin1":
        raise UnsafeDataError(f"refused to load _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


def _copied_bytearray(source: object = b"", encoding: object = None) -> bytearray:
    if isinstance(source, (bytes, bytearray)) and encoding is None:
        return bytearray(source)
    if isinstance(source, str) and encoding in ("latin-1", "latin1"):
        return bytearray(source, "latin-1")
    raise UnsafeDataError("refused to load bytearray of anything but bytes or latin-1 text")


def _put_back(value: Any, stand_in: object, bot: Any, seen: set[int]) -> Any:
    """Replace *stand_in* by *bot* in dicts, lists, tuples and plain objects inside *value*."""
    if value is stand_in:
        return bot
    if id(value) in seen:
        return value
    seen.add(id(value))
    if isinstance(value, dict):
        for key, item in list(value.items()):
            value[key] = _put_back(item, stand_in, bot, seen)
    elif isinstance(value, list):
        value[:] = [_put_back(item, stand_in, bot, seen) for item in value]
    elif type(value) is tuple:
        return tuple(_put_back(item, stand_in, bot, seen) for item in value)
    elif isinstance(getattr(value, "__dict__", None), dict):
        attributes = vars(value)
        for name, item in list(attributes.items()):
            attributes[name] = _put_back(item, stand_in, bot, seen)
    return value


class PickleCodec(Codec):
    """Python's pickle, with the bot placeholder.

    Pickle keeps every Python type, but loading a pickle can run code. Trusted (the default),
    it loads anything: use it only for data your own bot wrote and nobody else can write.
    Restricted (``trusted=False``), it loads only the globals of its allow-list and refuses the
    rest with :class:`~botstate.errors.UnsafeDataError`; it also refuses to write a value it
    could not load back.

    Args:
        protocol: The pickle protocol to write. Defaults to the highest one.
        trusted: True (default) loads any pickle; False restricts loading to *allow*.
        allow: Only with ``trusted=False``: classes and functions to allow besides the
            defaults (see :mod:`botstate.codecs.allow`), e.g. ``["mybot.states"]``.

    Raises:
        ValueError: When *allow* is given to a trusted codec.
    """

    __slots__ = ("allow", "protocol", "trusted")

    name = "pickle"

    def __init__(
        self,
        protocol: int = pickle.HIGHEST_PROTOCOL,
        *,
        trusted: bool = True,
        allow: Iterable[AllowEntry] | AllowList = (),
    ) -> None:
        self.protocol = protocol
        self.trusted = trusted
        self.allow = allow if isinstance(allow, AllowList) else AllowList(allow)
        if trusted and self.allow.entries:
            raise ValueError("allow= applies to restricted loading only; pass trusted=False too")

    def encode(self, value: object, *, bot: Any = None) -> bytes:
        try:
            if bot is None and "telegram" not in sys.modules:
                # Nothing to replace: the C pickler alone is several times faster.
                data = pickle.dumps(value, protocol=self.protocol)
            else:
                data = self._pickle_with_bot(value, bot)
        except Exception as exc:
            raise EncodingError(f"cannot pickle {type(value).__name__}: {exc}") from exc
        if not self.trusted:
            # What a restricted codec writes, it must be able to read back.
            try:
                self.decode(data, bot=bot)
            except CorruptDataError as exc:
                raise EncodingError(
                    f"cannot pickle {type(value).__name__} for restricted loading: {exc}"
                ) from exc
        return data

    def encode_snapshot(self, value: object, *, bot: Any = None) -> bytes:
        """Pickle a whole image, letting the event loop run while it is pickled.

        The C pickler holds the interpreter lock for as long as it pickles built-in containers,
        which for a file of 100,000 users would stall the bot's event loop for most of a
        second. The large dicts of the image are therefore pickled item by item from a
        generator that hands the lock over now and then; they still load as plain dicts.
        """
        return self.encode(_streamed(value, depth=3), bot=bot)

    def _pickle_with_bot(self, value: object, bot: Any) -> bytes:
        buffer = io.BytesIO()
        if type(bot) not in _BUILT_IN_TYPES:
            # Most values hold no bot; try the fast pickler first.
            with contextlib.suppress(_BotFound):
                _PlainDataPickler(buffer, bot, self.protocol).dump(value)
                return buffer.getvalue()
            buffer = io.BytesIO()
        BotPickler(buffer, bot, self.protocol).dump(value)
        return buffer.getvalue()

    def decode(self, data: bytes, *, bot: Any = None) -> object:
        if self.trusted and _PLACEHOLDER_MARK not in data:
            # No placeholder inside: the plain C unpickler gives the same result, faster.
            # On failure the full unpickler below runs again, for the precise error.
            try:
                return pickle.loads(data)
            except Exception:
                pass
        try:
            return self._unpickler(io.BytesIO(data), bot).load()
        except CorruptDataError:
            raise
        except Exception as exc:
            raise CorruptDataError(f"not a readable pickle ({type(exc).__name__}: {exc})") from exc

    def _unpickler(self, file: io.BytesIO, bot: Any) -> BotUnpickler:
        if self.trusted:
            return BotUnpickler(file, bot)
        return RestrictedUnpickler(file, bot, self.allow)

    def __repr__(self) -> str:
        if self.trusted:
            return f"PickleCodec(protocol={self.protocol})"
        return (
            f"PickleCodec(protocol={self.protocol}, trusted=False, "
            f"allow={list(self.allow.entries)!r})"
        )


# Dicts with more items than this are pickled item by item by encode_snapshot.
_STREAMED_ABOVE: Final = 512
# How many items are pickled between two hand-overs of the interpreter lock.
_ITEMS_BETWEEN_YIELDS: Final = 256


class _StreamedDict:
    """Stands for a large dict while it is pickled; loads back as that dict.

    Its reduction is ``dict()`` followed by the dict's items, taken from a generator: the
    pickler calls into it for every batch of items, and it sleeps for no time every
    :data:`_ITEMS_BETWEEN_YIELDS` items, which lets a waiting thread take the lock.
    """

    __slots__ = ("mapping",)

    def __init__(self, mapping: dict[Any, Any]) -> None:
        self.mapping = mapping

    def __reduce__(self) -> tuple[Any, ...]:
        return (dict, (), None, None, _handing_over(self.mapping.items()))


def _handing_over(items: Iterable[tuple[Any, Any]]) -> Iterable[tuple[Any, Any]]:
    for number, item in enumerate(items, 1):
        if number % _ITEMS_BETWEEN_YIELDS == 0:
            time.sleep(0)
        yield item


def _streamed(value: object, depth: int) -> object:
    """*value* with its large dicts wrapped in :class:`_StreamedDict`.

    Small dicts down to *depth* levels are looked into (the image's sections, the
    conversation handlers); a large dict is wrapped whole, its values left as they are.
    """
    if type(value) is not dict or depth == 0:
        return value
    if len(value) > _STREAMED_ABOVE:
        return _StreamedDict(value)
    return {key: _streamed(item, depth - 1) for key, item in value.items()}
