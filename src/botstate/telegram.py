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

Several processes, one store
----------------------------

python-telegram-bot refreshes ``user_data``, ``chat_data`` and ``bot_data`` from the persistence
before each update, but reads conversation states once, at start-up, and writes every change
only each ``update_interval``. When consecutive messages of one chat reach different processes
(webhook workers behind a load balancer, replicas), :func:`share_state` closes both gaps with two
handlers in groups of their own, python-telegram-bot's documented way to run code around the
other handlers::

    application = Application.builder().token(TOKEN).persistence(
        RedisPersistence("redis://127.0.0.1:6379/0", prefix="mybot")
    ).build()
    application.add_handler(conversation_handler)
    share_state(application)

* before all other handlers (group :data:`REFRESH_GROUP`), the state of each persistent
  ``ConversationHandler`` for the update's conversation key is loaded from the store when
  another process stored a newer one (and removed when another process ended it);
* after all other handlers (group :data:`STORE_GROUP`), the application's changes are stored
  at once, so the next update of the chat sees them whichever process gets it.

A handler that stops the update with ``ApplicationHandlerStop`` also skips the second step;
its changes are then stored with the next update or interval. The states of non-blocking
handlers still running are stored when they finish, with the next update or interval.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Final, TypeVar, cast

import telegram
import telegram.ext
from telegram.ext import ConversationHandler, TypeHandler

from botstate.base import BasePersistence
from botstate.copysafe import CopySafe, CopySafeDict
from botstate.kinds import ConversationKey

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "REFRESH_GROUP",
    "STORE_GROUP",
    "CopySafe",
    "CopySafeDict",
    "copy_safe_context_types",
    "for_application",
    "reduce_telegram_object",
    "restore_telegram_object",
    "share_state",
]

_log = logging.getLogger(__name__)

#: The handler group in which :func:`share_state` refreshes conversation states: before any
#: group an application would use.
REFRESH_GROUP: Final = -(2**31)

#: The handler group in which :func:`share_state` stores the application's changes: after any
#: group an application would use.
STORE_GROUP: Final = 2**31 - 1

_Application = telegram.ext.Application[Any, Any, Any, Any, Any, Any]

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


def share_state(application: _Application, *, store_after_update: bool = True) -> None:
    """Make *application* one of several processes that share its persistence's store.

    Adds a handler in :data:`REFRESH_GROUP` that brings the state of every persistent
    ``ConversationHandler`` up to date for each update, and, unless *store_after_update* is
    False, one in :data:`STORE_GROUP` that stores the application's changes after the update
    (python-telegram-bot otherwise waits for ``update_interval``). See the module documentation.

    Call it once, after building the application; handlers added later are covered too.

    Raises:
        TypeError: If the application's persistence is not a botstate persistence.
    """
    persistence = application.persistence
    if not hasattr(persistence, "refresh_conversation"):
        raise TypeError(
            "share_state needs an application built with a botstate persistence, such as "
            f"RedisPersistence or PostgresPersistence; it has {type(persistence).__name__}"
        )

    async def refresh(update: telegram.Update, context: Any) -> None:
        for handler in _persistent_conversations(application.handlers.values()):
            key = _conversation_key(handler, update)
            if key is not None:
                await _refresh_state(persistence, handler, key)

    async def store(update: telegram.Update, context: Any) -> None:
        # python-telegram-bot marks the update's user and chat for storing only after the
        # last group; this handler runs in the last group, so it marks them itself.
        chat, user = update.effective_chat, update.effective_user
        application.mark_data_for_update_persistence(
            chat_ids=None if chat is None else chat.id, user_ids=None if user is None else user.id
        )
        await application.update_persistence()

    application.add_handler(TypeHandler(telegram.Update, refresh, block=True), REFRESH_GROUP)
    if store_after_update:
        application.add_handler(TypeHandler(telegram.Update, store, block=True), STORE_GROUP)


def _persistent_conversations(groups: Any) -> Iterator[ConversationHandler[Any]]:
    """Every persistent conversation handler among *groups*, nested ones included."""
    for handlers in groups:
        for handler in handlers:
            if not isinstance(handler, ConversationHandler):
                continue
            if handler.persistent and handler.name:
                yield handler
            nested = [*handler.entry_points, *handler.fallbacks]
            nested += [h for state in handler.states.values() for h in state]
            yield from _persistent_conversations([nested])


def _conversation_key(
    handler: ConversationHandler[Any], update: telegram.Update
) -> ConversationKey | None:
    """The key *handler* files *update* under, or None when it would not look at it."""
    key: list[int | str] = []
    if handler.per_chat:
        if update.effective_chat is None:
            return None
        key.append(update.effective_chat.id)
    if handler.per_user:
        if update.effective_user is None:
            return None
        key.append(update.effective_user.id)
    if handler.per_message:
        query = update.callback_query
        if query is None:
            return None
        if query.inline_message_id:
            key.append(query.inline_message_id)
        elif query.message is not None:
            key.append(query.message.message_id)
        else:
            return None
    return tuple(key)


async def _refresh_state(
    persistence: Any, handler: ConversationHandler[Any], key: ConversationKey
) -> None:
    # python-telegram-bot keeps the states in a private mapping of the handler, filled from
    # the persistence at start-up; botstate updates it in place, without marking it changed.
    states: Any = getattr(handler, "_conversations", None)
    if not hasattr(states, "update_no_track"):
        _log.warning(
            "conversation %r keeps its states in a way this botstate release does not know; "
            "its states are not refreshed from the store",
            handler.name,
        )
        return
    current = states.get(key)
    if current is not None and not _is_settled(current):
        return  # A non-blocking step is still running; its own result comes next.
    fresh = await persistence.refresh_conversation(handler.name, key, current)
    if fresh is current:
        return
    if fresh is None:
        states.data.pop(key, None)
    else:
        states.update_no_track({key: fresh})


def _is_settled(state: object) -> bool:
    """False for the placeholder python-telegram-bot keeps while a non-blocking step runs."""
    return type(state).__name__ != "PendingState"
