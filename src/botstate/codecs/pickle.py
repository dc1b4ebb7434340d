"""Pickle codec with the bot placeholder python-telegram-bot's pickle files use.

The pickler replaces the persistence's bot by a placeholder, so stored bytes never hold the
bot's token, and the unpickler puts the current bot back. The placeholder strings are the ones
python-telegram-bot's own ``PicklePersistence`` writes, so files move between the two libraries.
python-telegram-bot's ``TelegramObject`` instances are stored by class and state and come back
with the current bot attached.
"""

from __future__ import annotations

import contextlib
import io
import logging
import pickle
import sys
from typing import Any, Final

from botstate.codecs.base import Codec
from botstate.errors import CorruptDataError, EncodingError

__all__ = ["BOT_PLACEHOLDER", "OTHER_BOT_PLACEHOLDER", "BotPickler", "BotUnpickler", "PickleCodec"]

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


class PickleCodec(Codec):
    """Python's pickle, with the bot placeholder.

    Pickle keeps every Python type, but loading a pickle can run code: load only data your own
    bot wrote.

    Args:
        protocol: The pickle protocol to write. Defaults to the highest one.
    """

    __slots__ = ("protocol",)

    name = "pickle"

    def __init__(self, protocol: int = pickle.HIGHEST_PROTOCOL) -> None:
        self.protocol = protocol

    def encode(self, value: object, *, bot: Any = None) -> bytes:
        try:
            if bot is None and "telegram" not in sys.modules:
                # Nothing to replace: the C pickler alone is several times faster.
                return pickle.dumps(value, protocol=self.protocol)
            buffer = io.BytesIO()
            if type(bot) not in _BUILT_IN_TYPES:
                # Most values hold no bot; try the fast pickler first.
                with contextlib.suppress(_BotFound):
                    _PlainDataPickler(buffer, bot, self.protocol).dump(value)
                    return buffer.getvalue()
                buffer = io.BytesIO()
            BotPickler(buffer, bot, self.protocol).dump(value)
        except Exception as exc:
            raise EncodingError(f"cannot pickle {type(value).__name__}: {exc}") from exc
        return buffer.getvalue()

    def decode(self, data: bytes, *, bot: Any = None) -> object:
        if _PLACEHOLDER_MARK not in data:
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
        return BotUnpickler(file, bot)

    def __repr__(self) -> str:
        return f"PickleCodec(protocol={self.protocol})"
