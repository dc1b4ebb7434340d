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

python-telegram-bot deep-copies user, chat and bot data before handing it to any persistence,
and one value that cannot be copied (a lock, a socket, a generator) then stops the application's
saving for good. :func:`copy_safe_context_types` makes that copy unable to fail, so such a value
is reported as an :class:`~botstate.errors.EncodingError` on every save instead::

    context_types = copy_safe_context_types()
    persistence = SQLitePersistence("bot.db", context_types=context_types)
    application = (
        Application.builder().token(TOKEN).context_types(context_types)
        .persistence(persistence).build()
    )

This module also stores ``TelegramObject`` instances for the pickle codec: by class and state,
coming back with the current bot attached.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar, cast

import telegram
import telegram.ext

from botstate.base import BasePersistence
from botstate.copysafe import CopySafe, CopySafeDict

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "CopySafe",
    "CopySafeDict",
    "copy_safe_context_types",
    "for_application",
    "reduce_telegram_object",
    "restore_telegram_object",
]

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


def copy_safe_context_types(
    context_types: telegram.ext.ContextTypes[Any, Any, Any, Any] | None = None,
) -> telegram.ext.ContextTypes[Any, Any, Any, Any]:
    """Return *context_types* with user, chat and bot data whose deep copy never fails.

    Where *context_types* (default: python-telegram-bot's defaults) uses ``dict``, the result
    uses :class:`~botstate.copysafe.CopySafeDict`; a class of your own must derive from
    :class:`~botstate.copysafe.CopySafe`. Give the result to the application builder's
    ``context_types()`` and to the persistence's ``context_types``: the persistence then gives
    stored data back as these classes, so values loaded at start-up are covered too.

    Raises:
        TypeError: If a data class of *context_types* is neither ``dict`` nor a
            :class:`~botstate.copysafe.CopySafe` subclass.
    """
    base = context_types if context_types is not None else telegram.ext.ContextTypes()
    classes: dict[str, type[Any]] = {}
    for kind in ("bot_data", "chat_data", "user_data"):
        cls: type[Any] = getattr(base, kind)
        if cls is dict:
            cls = CopySafeDict
        elif not issubclass(cls, CopySafe):
            raise TypeError(
                f"the {kind} class {cls.__qualname__} cannot be made copy-safe from outside; "
                f"declare it as 'class {cls.__name__}(botstate.telegram.CopySafe, ...)'"
            )
        classes[kind] = cls
    return telegram.ext.ContextTypes(context=base.context, **classes)


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
