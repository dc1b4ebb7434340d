"""The persistence contract: :class:`PersistenceInput` and the abstract :class:`BasePersistence`.

The method names, arguments and meanings are those python-telegram-bot 22 gives its own
``telegram.ext.BasePersistence``, so that a botstate persistence can be handed to
``telegram.ext.Application`` unchanged. When python-telegram-bot is installed, every botstate
persistence is registered as a virtual subclass of its ``BasePersistence`` (see
:mod:`botstate.telegram`), which is what ``Application`` checks.
"""

from __future__ import annotations

import importlib.util
import logging
from abc import ABC, abstractmethod
from typing import Any, Generic, NamedTuple, TypeVar

from botstate.kinds import ConversationKey

__all__ = ["BD", "CD", "UD", "BasePersistence", "CallbackData", "PersistenceInput"]

_log = logging.getLogger(__name__)

UD = TypeVar("UD")
CD = TypeVar("CD")
BD = TypeVar("BD")

#: The shape of python-telegram-bot's callback data cache: a list of
#: ``(keyboard uuid, access time, {button uuid: data})`` and a dict of
#: ``{callback query id: keyboard uuid}``.
CallbackData = tuple[list[tuple[str, float, dict[str, Any]]], dict[str, str]]


class PersistenceInput(NamedTuple):
    """Which kinds of data a persistence stores.

    A kind switched off is neither loaded nor written: its getter returns an empty container and
    its ``update_*`` calls do nothing.

    Args:
        bot_data: Store ``bot_data``. Defaults to True.
        chat_data: Store ``chat_data``. Defaults to True.
        user_data: Store ``user_data``. Defaults to True.
        callback_data: Store the callback-button data cache. Defaults to True.
    """

    bot_data: bool = True
    chat_data: bool = True
    user_data: bool = True
    callback_data: bool = True


class BasePersistence(ABC, Generic[UD, CD, BD]):
    """Abstract base of every botstate persistence.

    python-telegram-bot's ``Application`` calls these methods: the getters once at start-up,
    ``update_*`` and ``drop_*`` for every touched id after each interval, ``refresh_*`` before
    each handler runs, and :meth:`flush` when it stops. Other code should not call them while an
    ``Application`` owns the persistence.

    The class is generic over the types of one user's data (``UD``), one chat's data (``CD``)
    and the bot-wide data (``BD``).

    Args:
        store_data: Which kinds to store. Defaults to all of them.
        update_interval: Seconds between two runs of the application's persistence update.
            Defaults to 60.

    Attributes:
        store_data: Which kinds are stored.
        bot: The bot given to :meth:`set_bot`, or None before that.
    """

    __slots__ = ("_update_interval", "bot", "store_data")

    def __init__(
        self, store_data: PersistenceInput | None = None, update_interval: float = 60
    ) -> None:
        if update_interval <= 0:
            raise ValueError(f"update_interval must be positive, got {update_interval!r}")
        self.store_data: PersistenceInput = store_data or PersistenceInput()
        self._update_interval = float(update_interval)
        self.bot: Any = None
        _register_with_installed_frameworks()

    @property
    def update_interval(self) -> float:
        """Seconds the application waits between two persistence updates. Read-only."""
        return self._update_interval

    @update_interval.setter
    def update_interval(self, _: object) -> None:
        raise AttributeError(
            "update_interval is read-only; pass update_interval= when creating the persistence"
        )

    def set_bot(self, bot: Any) -> None:
        """Set the bot whose references are replaced by a placeholder when data is stored.

        Args:
            bot: The application's bot.

        Raises:
            TypeError: If callback data is stored and *bot* is not a
                ``telegram.ext.ExtBot`` (only that class keeps a callback data cache).
        """
        if self.store_data.callback_data and not hasattr(bot, "callback_data_cache"):
            raise TypeError(
                "callback_data can only be stored with a telegram.ext.ExtBot; pass "
                "store_data=PersistenceInput(callback_data=False) to use another bot class"
            )
        self.bot = bot

    @abstractmethod
    async def get_user_data(self) -> dict[int, UD]:
        """Return every stored user's data, keyed by user id.

        Returns:
            A new dict; editing it or its values never changes what is stored. Empty when
            nothing is stored or ``user_data`` is not stored.
        """

    @abstractmethod
    async def get_chat_data(self) -> dict[int, CD]:
        """Return every stored chat's data, keyed by chat id.

        Returns:
            A new dict; editing it or its values never changes what is stored. Empty when
            nothing is stored or ``chat_data`` is not stored.
        """

    @abstractmethod
    async def get_bot_data(self) -> BD:
        """Return the stored bot-wide data.

        Returns:
            A copy of the stored object, or a new one from the context types' ``bot_data``
            factory (``dict`` by default) when nothing is stored.
        """

    @abstractmethod
    async def get_callback_data(self) -> CallbackData | None:
        """Return the stored callback data cache, or None when nothing was stored."""

    @abstractmethod
    async def get_conversations(self, name: str) -> dict[ConversationKey, object]:
        """Return the stored states of the conversation handler called *name*.

        Args:
            name: The handler's name.

        Returns:
            A new dict of conversation key to state; empty when none is stored.
        """

    @abstractmethod
    async def update_conversation(
        self, name: str, key: ConversationKey, new_state: object | None
    ) -> None:
        """Store the state of one conversation.

        Args:
            name: The handler's name.
            key: The conversation key, a tuple of ints and strings.
            new_state: The new state. None removes the conversation from the store.
        """

    @abstractmethod
    async def update_user_data(self, user_id: int, data: UD) -> None:
        """Store one user's data.

        Args:
            user_id: The user's id.
            data: The user's data. The persistence may keep a reference to it: pass a copy if
                you change it afterwards (python-telegram-bot passes a deep copy).

        Raises:
            EncodingError: If *data* cannot be encoded; what was stored before stays.
        """

    @abstractmethod
    async def update_chat_data(self, chat_id: int, data: CD) -> None:
        """Store one chat's data. See :meth:`update_user_data`."""

    @abstractmethod
    async def update_bot_data(self, data: BD) -> None:
        """Store the bot-wide data. See :meth:`update_user_data`."""

    @abstractmethod
    async def update_callback_data(self, data: CallbackData) -> None:
        """Store python-telegram-bot's callback data cache. See :meth:`update_user_data`."""

    @abstractmethod
    async def drop_chat_data(self, chat_id: int) -> None:
        """Remove one chat's data from the store for good.

        Args:
            chat_id: The chat's id.
        """

    @abstractmethod
    async def drop_user_data(self, user_id: int) -> None:
        """Remove one user's data from the store for good.

        Args:
            user_id: The user's id.
        """

    @abstractmethod
    async def refresh_user_data(self, user_id: int, user_data: UD) -> None:
        """Bring *user_data*, the application's object, up to date in place.

        Called before each handler. Stores shared by several processes load a newer stored
        version into *user_data*; single-process stores have nothing newer and do nothing.

        Args:
            user_id: The user's id.
            user_data: The application's object for that user, edited in place.
        """

    @abstractmethod
    async def refresh_chat_data(self, chat_id: int, chat_data: CD) -> None:
        """Bring *chat_data* up to date in place. See :meth:`refresh_user_data`."""

    @abstractmethod
    async def refresh_bot_data(self, bot_data: BD) -> None:
        """Bring *bot_data* up to date in place. See :meth:`refresh_user_data`."""

    @abstractmethod
    async def flush(self) -> None:
        """Make every update received so far durable.

        python-telegram-bot calls this when the application stops. With ``on_flush=True`` it is
        the only call that writes.
        """


_registered = False


def _register_with_installed_frameworks() -> None:
    """Make botstate persistences pass python-telegram-bot's ``isinstance`` check.

    Done on first construction rather than on ``import botstate`` so that importing botstate
    stays free of python-telegram-bot's import cost when no persistence is made.
    """
    global _registered  # noqa: PLW0603
    if _registered:
        return
    _registered = True
    if importlib.util.find_spec("telegram") is None:
        return
    try:
        import botstate.telegram  # noqa: F401  (registers on import)
    except ImportError as exc:
        # A different distribution may own the name "telegram"; botstate then runs without
        # the python-telegram-bot integration rather than failing.
        _log.debug("python-telegram-bot integration not loaded: %s", exc)
