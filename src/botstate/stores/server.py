"""What the Redis and PostgreSQL stores have in common, written once.

Both are record stores on a server that several bot processes share. This module holds the
parts that do not depend on the driver:

* :class:`ServerStore`: the base class, with ``shared = True``, the password-free location, the
  ``on_conflict`` and ``ttl`` options, and :meth:`ServerStore._retrying`, which repeats an
  operation that lost its connection with a bounded, doubling delay;
* :func:`group_of`: which records expire together;
* :func:`ttl_per_kind`: the ``ttl`` option, checked and spelled out per kind.

Why the stores use the drivers' blocking APIs: a persistence runs its store on one worker
thread of its own, so that encoding, decoding and I/O never hold up the event loop. A blocking
client on that thread keeps one code path for every store (files, SQLite, servers), costs one
thread hand-off per cycle as SQLite does, and leaves no connection tied to an event loop that
the application may close and reopen. An asyncio client would have to run on the application's
loop while the codec runs on the worker, splitting every load and write in two hops.
"""

from __future__ import annotations

import logging
import math
import time
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Final, TypeVar, cast

from botstate.codecs import Codec
from botstate.errors import StoreUnavailableError
from botstate.kinds import KINDS, ConversationKey, Kind, key_from_text
from botstate.stores.base import Delete, OnConflict, OnCorrupt, RecordStore, Row
from botstate.urls import mask_url

__all__ = ["Ttl", "ServerStore", "group_of", "ttl_per_kind"]

_log = logging.getLogger(__name__)

_T = TypeVar("_T")

#: The ``ttl`` option: seconds for users and chats, seconds per kind, or None for no expiry.
Ttl = float | Mapping[str, float] | None

#: The kinds a plain number of seconds applies to: the records of users and chats, aiogram's
#: states and data (``fsm``) included. ``bot_data`` and ``callback_data`` expire only when
#: named: unchanged records are not written again, so a bot whose ``bot_data`` stays the same
#: for longer than a plain ``ttl`` would lose it.
_PER_ID_KINDS: Final[tuple[Kind, ...]] = ("user_data", "chat_data", "conversations", "fsm")

#: The first delay before a connection is tried again, in seconds.
FIRST_BACKOFF: Final = 0.05


def ttl_per_kind(ttl: Ttl) -> dict[Kind, float]:
    """Spell out the ``ttl`` option as seconds per kind; kinds without expiry are left out.

    Raises:
        ValueError: For an unknown kind or a time that is not a positive number.
    """
    if ttl is None:
        return {}
    given = dict.fromkeys(_PER_ID_KINDS, ttl) if isinstance(ttl, (int, float)) else dict(ttl)
    result: dict[Kind, float] = {}
    for kind, seconds in given.items():
        if kind not in KINDS:
            raise ValueError(f"ttl names unknown kind {kind!r}; expected some of {KINDS}")
        if not isinstance(seconds, (int, float)) or not math.isfinite(seconds) or seconds <= 0:
            raise ValueError(
                f"ttl of {kind} must be a positive number of seconds, not {seconds!r}"
            )
        result[kind] = float(seconds)
    return result


def group_of(kind: str, key: str) -> str | None:
    """The id whose records expire together with this one; None for a record of its own.

    A user's data, a chat's data and the conversation states whose key starts with that id
    belong together: in a private chat the chat id is the user's id, so a user's data, the
    chat's data and the conversation with them are one group. A conversation key starts with
    the chat id for per-chat handlers (python-telegram-bot's default) and with the user id for
    per-user ones. ``bot_data``, ``callback_data`` and conversations keyed by neither (only a
    message id) are records of their own.

    So is each aiogram key (kind ``fsm``): its state and data are one record, which expires on
    its own deadline, as aiogram's own storages expire each key. Tying it to the chat's group
    would keep a form that one member of a busy group left alone for as long as the others
    write.
    """
    if kind in ("user_data", "chat_data"):
        return key
    if kind == "conversations":
        try:
            _, parts = cast("tuple[str, ConversationKey]", key_from_text(kind, key))
        except ValueError:
            return None
        if parts and type(parts[0]) is int:
            return str(parts[0])
    return None


class ServerStore(RecordStore):
    """Base of the stores on a database server shared by several processes.

    Args:
        codec: The codec that encodes each record.
        url: The server's URL, for messages; its password never appears in them.
        on_corrupt: ``"raise"`` or ``"skip"`` for records that cannot be decoded.
        on_conflict: ``"keep"`` (the newest write wins, with a warning) or ``"raise"``.
        ttl: Seconds without a write after which records expire; see :func:`ttl_per_kind`.
        retries: How many times an operation that lost its connection is tried again.
        max_backoff: The longest wait between two tries, in seconds.
    """

    shared = True
    checks_versions = True

    def __init__(
        self,
        codec: Codec,
        url: str,
        *,
        on_corrupt: OnCorrupt = "raise",
        on_conflict: OnConflict = "keep",
        ttl: Ttl = None,
        retries: int = 2,
        max_backoff: float = 1.0,
    ) -> None:
        super().__init__(codec, on_corrupt)
        if on_conflict not in ("keep", "raise"):
            raise ValueError(f"on_conflict must be 'keep' or 'raise', got {on_conflict!r}")
        if retries < 0 or max_backoff < 0:
            raise ValueError("retries and max_backoff must not be negative")
        self.on_conflict: OnConflict = on_conflict
        self.ttl = ttl_per_kind(ttl)
        self.retries = retries
        self.max_backoff = max_backoff
        self._url = mask_url(url)
        self._password = urllib.parse.urlsplit(url).password or ""

    @property
    def location(self) -> str:
        return self._url

    def refuses(self, change: Row | Delete) -> bool:
        """Whether a conflict leaves the record of *change* alone: a strict change, or
        ``on_conflict="raise"``."""
        return change.strict or self.on_conflict == "raise"

    #: The driver's exceptions that mean the connection failed or was lost.
    connection_errors: tuple[type[BaseException], ...] = ()

    def _reconnect(self) -> None:
        """Drop connections that may be broken, so the next try opens new ones."""

    def _refused(self, exc: BaseException) -> bool:
        """Whether *exc* says the server refused the login: trying again cannot help."""
        return False

    def _lost(self, exc: BaseException) -> bool:
        """Whether *exc*, one of :attr:`connection_errors`, means the connection failed (and
        trying again may help) rather than that the server refused the work."""
        return True

    def _retrying(self, what: str, operation: Callable[[], _T]) -> _T:
        """Run *operation*; when its connection fails, try again after a bounded backoff.

        Every operation of these stores may run twice: reads trivially, and a write that was
        committed but whose answer was lost finds its own data stored and writes it again.

        Raises:
            StoreUnavailableError: When the last try failed too; names the URL, never the
                password.
        """
        delay = FIRST_BACKOFF
        for attempt in range(self.retries + 1):
            try:
                return operation()
            except self.connection_errors as exc:
                if not self._lost(exc):
                    raise
                reason = self._scrub(exc)
                if self._refused(exc):
                    raise StoreUnavailableError(
                        f"{self.location}: {what} failed, the server refused the login "
                        f"({reason}). Check the user name and password in the URL."
                    ) from None
                if attempt == self.retries:
                    raise StoreUnavailableError(
                        f"{self.location}: {what} failed, the server cannot be reached "
                        f"({reason}). Check that it runs and accepts connections; a write is "
                        "committed whole or not at all and tried again with the next one."
                    ) from None
                _log.warning(
                    "%s: %s lost its connection (%s); trying again in %.2f s",
                    self.location,
                    what,
                    reason,
                    delay,
                )
                self._reconnect()
                time.sleep(delay)
                delay = min(delay * 2, self.max_backoff)
        raise AssertionError("unreachable")  # pragma: no cover

    def _scrub(self, exc: BaseException) -> str:
        """The message of a driver error, with the password taken out if a driver put it in."""
        text = str(exc).strip() or type(exc).__name__
        return text.replace(self._password, "***") if self._password else text

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.location!r}, codec={self.codec!r})"
