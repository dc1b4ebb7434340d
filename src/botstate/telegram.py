"""python-telegram-bot integration.

Importing this module (botstate does it the first time a persistence is made, when
python-telegram-bot is installed) registers :class:`botstate.BasePersistence` as a virtual
subclass of ``telegram.ext.BasePersistence``. ``Application`` then accepts any botstate
persistence as it is::

    from telegram.ext import Application
    from botstate import SQLitePersistence

    application = (
        Application.builder().token(TOKEN).persistence(SQLitePersistence("bot.db")).build()
    )

Type checkers do not follow virtual subclasses; :func:`for_application` returns the same object
typed as python-telegram-bot's ``BasePersistence`` for code checked with mypy.

This module also stores ``TelegramObject`` instances for the pickle codec: by class and state,
coming back with the current bot attached.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar, cast

import telegram
import telegram.ext

from botstate.base import BasePersistence

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["for_application", "reduce_telegram_object", "restore_telegram_object"]

_UD = TypeVar("_UD")
_CD = TypeVar("_CD")
_BD = TypeVar("_BD")

telegram.ext.BasePersistence.register(BasePersistence)  # type: ignore[type-abstract]


def for_application(
    persistence: BasePersistence[_UD, _CD, _BD],
) -> telegram.ext.BasePersistence[_UD, _CD, _BD]:
    """Return *persistence* unchanged, typed as ``telegram.ext.BasePersistence``.

    Only needed to satisfy a static type checker; at run time ``Application`` accepts a
    botstate persistence directly.
    """
    return cast("telegram.ext.BasePersistence[_UD, _CD, _BD]", persistence)


def reduce_telegram_object(
    obj: Any,
) -> tuple[Callable[..., telegram.TelegramObject], tuple[Any, ...]]:
    """Pickle reduction of a ``TelegramObject``: its class, its state and its bot.

    The bot is kept as an argument so the pickler replaces it by the placeholder; the state is
    the object's own ``__getstate__``, which python-telegram-bot keeps loadable across releases.
    """
    try:
        bot = obj.get_bot()
    except RuntimeError:
        bot = None
    return restore_telegram_object, (type(obj), obj.__getstate__(), bot)


def restore_telegram_object(
    cls: type[telegram.TelegramObject], state: dict[str, object], bot: telegram.Bot | None
) -> telegram.TelegramObject:
    """Rebuild an object stored by :func:`reduce_telegram_object`, with *bot* attached."""
    obj = cls.__new__(cls)
    obj.__setstate__(state)
    obj.set_bot(bot)
    return obj
