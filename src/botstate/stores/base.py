"""What a store is: the part of a persistence that owns durability.

A store loads the records of one kind and durably applies a batch of upserts and deletes. It
knows nothing of ``store_data``, copies, change detection or batching: :class:`~botstate.
persistence.Persistence` does that once for every store.

Two families share this interface:

* :class:`RecordStore`: one stored row per record (memory, SQLite, Redis, PostgreSQL). Each
  record is encoded on its own, so a cycle costs what its changed records cost.
* Snapshot stores (:mod:`botstate.stores.files`): the whole state is one encoded image, which is
  how python-telegram-bot's pickle files are laid out.

Every method except the constructor runs on the persistence's worker thread, one at a time, so a
store may block and needs no locking of its own for calls from one persistence.
"""

from __future__ import annotations

import copy
import logging
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from botstate.codecs import Codec
from botstate.errors import CorruptDataError
from botstate.kinds import Kind, RecordKey, describe, key_from_text, key_to_text

__all__ = [
    "Change",
    "Loaded",
    "OnCorrupt",
    "RecordStore",
    "Row",
    "Store",
    "copy_value",
    "handler_of",
]

_log = logging.getLogger(__name__)

#: What a record store does with a record it cannot decode: stop the load with
#: :class:`~botstate.errors.CorruptDataError` (``"raise"``, the default), or leave that record
#: out, log a warning naming it and keep its stored bytes (``"skip"``).
OnCorrupt = Literal["raise", "skip"]


def handler_of(key: RecordKey) -> str | None:
    """The handler name of a conversation record's key; None for other kinds."""
    return key[0] if isinstance(key, tuple) else None


def copy_value(value: object, bot: Any) -> Any:
    """Deep-copy *value*, keeping references to *bot* (bots refuse to be copied)."""
    memo: dict[int, Any] = {} if bot is None else {id(bot): bot}
    return copy.deepcopy(value, memo)


@dataclass(frozen=True, slots=True)
class Change:
    """One record to write (``data`` holds its encoded value) or delete (``data`` is None)."""

    kind: Kind
    key: RecordKey
    value: object
    data: bytes | None


@dataclass(frozen=True, slots=True)
class Loaded:
    """One record as loaded: its decoded value and, for record stores, its stored bytes."""

    key: RecordKey
    value: object
    data: bytes | None = None
    version: int | None = None


@dataclass(frozen=True, slots=True)
class Row:
    """One stored row of a record store, before decoding."""

    kind: Kind
    key: str
    data: bytes
    version: int = 0


class Store(ABC):
    """Base of every store.

    Args:
        codec: The codec that encodes values.
    """

    #: True when other processes may write the same data, so refreshes must look again.
    shared: ClassVar[bool] = False

    def __init__(self, codec: Codec) -> None:
        self.codec = codec

    @property
    @abstractmethod
    def location(self) -> str:
        """The file path or URL (password masked) of the store, for messages."""

    def open(self) -> None:  # noqa: B027 (optional hook)
        """Prepare the store (connect, create the schema); called once before other calls."""

    @abstractmethod
    def load(self, kind: Kind, bot: Any, handler: str | None = None) -> list[Loaded]:
        """Return every stored record of *kind*, decoded, as new objects.

        Args:
            kind: The kind to load.
            bot: The bot that replaces the placeholder in decoded values.
            handler: For ``conversations``, only that handler's records.

        Raises:
            CorruptDataError: When stored data cannot be read or decoded.
        """

    def load_record(self, kind: Kind, key: RecordKey, bot: Any) -> Loaded | None:
        """Return one stored record, decoded, or None when it is not stored.

        The default loads the whole kind; stores that can look up one record override it.
        """
        for record in self.load(kind, bot, handler_of(key)):
            if record.key == key:
                return record
        return None

    @abstractmethod
    def write(self, changes: Sequence[Change], bot: Any) -> None:
        """Durably apply *changes*, all or nothing, then return.

        Raises:
            WriteError: When the write failed; what was stored before is unchanged.
        """

    def stored_data(self, kind: Kind, key: RecordKey, bot: Any) -> bytes | None:
        """Return the encoded form of the stored record, when the store can give it cheaply.

        Snapshot stores use it for change detection of records whose bytes they never saw.
        """
        return None

    def close(self) -> None:  # noqa: B027 (optional hook)
        """Release connections and files. The store may be opened again afterwards."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.location!r}, codec={self.codec!r})"


class RecordStore(Store):
    """A store that keeps one row per record: ``(kind, key as text, encoded value, version)``.

    Subclasses implement :meth:`rows` and :meth:`write_rows`; decoding, key parsing and the
    ``on_corrupt`` rule are written here once.

    Args:
        codec: The codec that encodes each record.
        on_corrupt: ``"raise"`` (default) or ``"skip"``; see :data:`OnCorrupt`.
    """

    def __init__(self, codec: Codec, on_corrupt: OnCorrupt = "raise") -> None:
        super().__init__(codec)
        if on_corrupt not in ("raise", "skip"):
            raise ValueError(f"on_corrupt must be 'raise' or 'skip', got {on_corrupt!r}")
        self.on_corrupt: OnCorrupt = on_corrupt
        #: Records left out by the last loads with ``on_corrupt="skip"``, as (kind, key text).
        self.skipped: list[tuple[str, str]] = []

    @abstractmethod
    def rows(self, kind: Kind, key_prefix: str = "") -> Iterable[Row]:
        """Yield the stored rows of *kind* whose key text starts with *key_prefix*."""

    @abstractmethod
    def write_rows(self, upserts: Sequence[Row], deletes: Sequence[tuple[Kind, str]]) -> None:
        """Durably apply *upserts* and *deletes* in one transaction."""

    def row(self, kind: Kind, key: str) -> Row | None:
        """Return the stored row of one record, or None. Stores with an index override this."""
        for row in self.rows(kind, key):
            if row.key == key:
                return row
        return None

    def load(self, kind: Kind, bot: Any, handler: str | None = None) -> list[Loaded]:
        prefix = "" if handler is None else key_to_text(kind, (handler, ()))[:-3]
        return self._decoded(kind, self.rows(kind, prefix), bot)

    def load_record(self, kind: Kind, key: RecordKey, bot: Any) -> Loaded | None:
        row = self.row(kind, key_to_text(kind, key))
        if row is None:
            return None
        decoded = self._decoded(kind, [row], bot)
        return decoded[0] if decoded else None

    def _decoded(self, kind: Kind, rows: Iterable[Row], bot: Any) -> list[Loaded]:
        """Decode *rows*, applying the ``on_corrupt`` rule to those that fail."""
        loaded = []
        for row in rows:
            key: RecordKey | str = row.key
            try:
                if not isinstance(row.key, str) or not isinstance(row.data, bytes):
                    # Databases with loose column types hand back what a damaged row holds.
                    raise ValueError(
                        f"the stored row holds a {type(row.key).__name__} key and a "
                        f"{type(row.data).__name__} value, not text and bytes"
                    )
                key = key_from_text(kind, row.key)
                value = self.codec.decode(row.data, bot=bot)
            except (ValueError, CorruptDataError) as exc:
                what = describe(kind, key) if key is not row.key else f"{kind} key {row.key!r}"
                if self.on_corrupt == "skip":
                    _log.warning(
                        "%s: skipped %s, which cannot be decoded (%s); its stored bytes are kept",
                        self.location,
                        what,
                        exc,
                    )
                    self.skipped.append((kind, row.key))
                    continue
                raise CorruptDataError(
                    f"{self.location}: cannot decode {what}: {exc}",
                    location=self.location,
                    kind=kind,
                    key=key,
                ) from exc
            loaded.append(Loaded(key, value, row.data, row.version))
        return loaded

    def write(self, changes: Sequence[Change], bot: Any) -> None:
        upserts = []
        deletes = []
        for change in changes:
            text = key_to_text(change.kind, change.key)
            if change.data is None:
                deletes.append((change.kind, text))
            else:
                upserts.append(Row(change.kind, text, change.data))
        self.write_rows(upserts, deletes)
