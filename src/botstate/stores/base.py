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
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Final, Generic, Literal, NamedTuple, TypeVar, cast

from botstate.codecs import Codec
from botstate.errors import CorruptDataError, FormatVersionError, UnsafeDataError
from botstate.kinds import Kind, RecordKey, describe, key_from_text, key_to_text

__all__ = [
    "INCOMPLETE",
    "Change",
    "DAMAGED_KIND",
    "Delete",
    "Loaded",
    "OnConflict",
    "OnCorrupt",
    "RecordStore",
    "Row",
    "Store",
    "Written",
    "copy_value",
    "damaged_origin",
    "handler_of",
    "incomplete_error",
    "stale_version",
]

_log = logging.getLogger(__name__)

#: What a record store does with a record it cannot decode: stop the load with
#: :class:`~botstate.errors.CorruptDataError` (``"raise"``, the default), or leave that record
#: out, log a warning naming it and keep its stored bytes (``"skip"``).
OnCorrupt = Literal["raise", "skip"]

#: What a shared store does with a write based on a version another process has replaced:
#: write it anyway and report it, so the newest write wins (``"keep"``, the default), or leave
#: the stored record alone and report it (``"raise"``; the persistence raises
#: :class:`~botstate.errors.ConflictError`).
OnConflict = Literal["keep", "raise"]

#: The stamp entry by which ``botstate migrate`` marks a record store it has not finished
#: filling; its value says from where and since when.
INCOMPLETE = "incomplete_migration"


def incomplete_error(location: str, note: str) -> CorruptDataError:
    """The error of opening a store that an interrupted migration left incomplete."""
    return CorruptDataError(
        f"{location} is incomplete: a 'botstate migrate' into it did not finish ({note}). Run "
        "the migration again with --overwrite; 'botstate inspect' shows what it holds.",
        location=location,
    )


def handler_of(key: RecordKey) -> str | None:
    """The handler name of a conversation record's key; None for other kinds."""
    if isinstance(key, tuple) and len(key) == 2:
        return key[0]
    return None


def copy_value(value: object, bot: Any) -> Any:
    """Deep-copy *value*, keeping references to *bot* (bots refuse to be copied)."""
    memo: dict[int, Any] = {} if bot is None else {id(bot): bot}
    return copy.deepcopy(value, memo)


@dataclass(frozen=True, slots=True)
class Change:
    """One record to write (``data`` holds its encoded value) or delete (``data`` is None).

    ``value`` is a private copy decoded from ``data``, which snapshot stores keep in memory.
    ``base`` is the stored version the new value was derived from, as the persistence knows it
    (0: the record was not stored); None when it does not know. Shared stores compare it with
    the stored version to detect a write based on a stale record; other stores ignore it.

    ``strict`` makes the change a compare-and-set: a conflict leaves the stored record alone
    whatever the store's ``on_conflict``. Only stores whose :attr:`Store.checks_versions` is
    True receive strict changes.
    """

    kind: Kind
    key: RecordKey
    value: object
    data: bytes | None
    base: int | None = None
    strict: bool = False


_K = TypeVar("_K")


@dataclass(frozen=True, slots=True)
class Written(Generic[_K]):
    """What a shared store, or one that checks versions, reports about a write; other stores
    return None from ``write``.

    Attributes:
        versions: The stored version of each record after the write (0 for a deleted one).
        conflicts: The records whose stored version was not the change's ``base``, with the
            version found.
        refused: Those of ``conflicts`` that were left unchanged (``on_conflict="raise"``, or
            a strict change).
    """

    versions: dict[tuple[Kind, _K], int]
    conflicts: dict[tuple[Kind, _K], int]
    refused: frozenset[tuple[Kind, _K]] = frozenset()


class Loaded(NamedTuple):
    """One record as loaded: its decoded value and, for record stores, its stored bytes.

    A named tuple rather than a frozen dataclass: a load makes one per stored record, and a
    tuple is several times cheaper to make.
    """

    key: RecordKey
    value: object
    data: bytes | None = None
    version: int | None = None


class Row(NamedTuple):
    """One stored row of a record store, before decoding (a named tuple, as :class:`Loaded`).

    For a row to write, ``base`` and ``strict`` are those of its :class:`Change`. A row read
    back whose store found it damaged (a checksum that does not match) says why in ``damage``.
    """

    kind: Kind
    key: str
    data: bytes
    version: int = 0
    base: int | None = None
    strict: bool = False
    damage: str | None = None


@dataclass(frozen=True, slots=True)
class Delete:
    """One row of a record store to delete; ``base`` and ``strict`` as for :class:`Row`."""

    kind: Kind
    key: str
    base: int | None = None
    strict: bool = False


def stale_version(base: int | None, stored: Row | None, data: bytes | None) -> int | None:
    """The stored version when a write based on *base* meets another one there, else None.

    *stored* is the row as stored (None: not stored); *data* the bytes to write (None: a
    delete). There is no conflict when the base is unknown or is the stored version (0: not
    stored), nor when the write finds what it would leave: its own value (a write tried again
    after its answer was lost) or, for a delete, no record. Stores that check in Python use
    this; the Redis script and the PostgreSQL statements apply the same rule on the server.
    """
    version = 0 if stored is None else stored.version
    if base is None or base == version:
        return None
    if data is None:
        finds_its_result = stored is None
    else:
        finds_its_result = stored is not None and stored.data == data
    return None if finds_its_result else version


class Store(ABC):
    """Base of every store.

    Args:
        codec: The codec that encodes values.
    """

    #: True when other processes may write the same data, so refreshes must look again.
    shared: ClassVar[bool] = False

    #: True when :meth:`write` makes strict changes (:attr:`Change.strict`) a compare-and-set,
    #: atomic across processes, and reports the refused ones in :class:`Written`. Record
    #: versions of such a store never repeat, not even for a record deleted and created again.
    checks_versions: ClassVar[bool] = False

    #: Whether a store marked incomplete by an interrupted migration may be opened; only the
    #: tools that report or finish such a store set it.
    accept_incomplete: bool = False

    def __init__(self, codec: Codec) -> None:
        self.codec = codec

    @property
    @abstractmethod
    def location(self) -> str:
        """The file path or URL (password masked) of the store, for messages."""

    def open(self) -> None:  # noqa: B027 (optional hook)
        """Prepare the store (connect, create the schema); called once before other calls."""

    @abstractmethod
    def load(self, kind: Kind, bot: Any, handler: str | None = None) -> Iterable[Loaded]:
        """Return every stored record of *kind*, decoded, as new objects.

        The records may come one by one as they are read, so that a large store is never held
        in memory twice; iterate over them once.

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
    def write(self, changes: Sequence[Change], bot: Any) -> Written[RecordKey] | None:
        """Durably apply *changes*, all or nothing, then return.

        Returns:
            For shared stores and stores that check versions, the new versions and the
            conflicts found; else None.

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


#: The kind under which a record store keeps the bytes of records that could not be decoded
#: (with ``on_corrupt="skip"``) once their key is written again. Its keys read
#: ``<kind>/<key text>/<unix time>``; the persistence never loads it.
DAMAGED_KIND: Final = "damaged"


def damaged_origin(key: str) -> tuple[Kind, str]:
    """The (kind, key text) a record of :data:`DAMAGED_KIND` was set aside from."""
    kind, _, rest = key.partition("/")
    text, _, _ = rest.rpartition("/")
    return cast("Kind", kind), text


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
    def write_rows(self, upserts: Sequence[Row], deletes: Sequence[Delete]) -> Written[str] | None:
        """Durably apply *upserts* and *deletes* in one transaction.

        Shared stores and stores that check versions return a :class:`Written` keyed by
        ``(kind, key text)``.
        """

    def check_stamp(self, meta: Mapping[str, str], format_version: int) -> None:
        """Check the format and codec a store was stamped with when it was created.

        Args:
            meta: The stamp as stored: ``format_version`` and ``codec``.
            format_version: The newest format this release reads.

        Raises:
            FormatVersionError: When a newer botstate wrote the store.
            CorruptDataError: When the stamp is unreadable or names another codec.
        """
        try:
            version = int(meta.get("format_version", ""))
        except ValueError:
            raise CorruptDataError(
                f"{self.location}: the botstate format stamp has no valid format_version",
                location=self.location,
            ) from None
        if version > format_version:
            raise FormatVersionError(
                f"{self.location} was written in botstate format {version}; this release reads "
                f"format {format_version} and older. Upgrade botstate to open it.",
                location=self.location,
            )
        note = meta.get(INCOMPLETE)
        if note and not self.accept_incomplete:
            raise incomplete_error(self.location, note)
        stored_codec = meta.get("codec")
        if stored_codec != self.codec.name:
            raise CorruptDataError(
                f"{self.location} holds records encoded with codec {stored_codec!r}, not "
                f"{self.codec.name!r}; open it with codec={stored_codec!r} (or move the data "
                "with 'botstate migrate')",
                location=self.location,
            )

    def read_meta(self) -> dict[str, str] | None:
        """Return the stamp (``format_version``, ``codec``, ...) without opening the store,
        creating nothing; None when the store holds no botstate stamp. For tools."""
        raise NotImplementedError(f"{type(self).__name__} keeps no stamp")

    def write_meta(self, entries: Mapping[str, str | None]) -> None:
        """Set stamp entries of an opened store; None removes one. For tools."""
        raise NotImplementedError(f"{type(self).__name__} keeps no stamp")

    def count(self, kind: Kind) -> int:
        """The number of stored records of *kind*; stores that can count faster override it."""
        return sum(1 for _ in self.rows(kind))

    def row(self, kind: Kind, key: str) -> Row | None:
        """Return the stored row of one record, or None. Stores with an index override this."""
        for row in self.rows(kind, key):
            if row.key == key:
                return row
        return None

    def load(self, kind: Kind, bot: Any, handler: str | None = None) -> Iterator[Loaded]:
        prefix = "" if handler is None else key_to_text(kind, (handler, ()))[:-3]
        return self._decoded(kind, self.rows(kind, prefix), bot)

    def load_record(self, kind: Kind, key: RecordKey, bot: Any) -> Loaded | None:
        row = self.row(kind, key_to_text(kind, key))
        if row is None:
            return None
        return next(self._decoded(kind, [row], bot), None)

    def _decoded(self, kind: Kind, rows: Iterable[Row], bot: Any) -> Iterator[Loaded]:
        """Decode *rows* one by one, applying the ``on_corrupt`` rule to those that fail."""
        decode = self.codec.decode
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
                if row.damage is not None:
                    raise CorruptDataError(row.damage)
                value = decode(row.data, bot=bot)
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
                # A refusal of the allow-list stays recognisable as one.
                error = UnsafeDataError if isinstance(exc, UnsafeDataError) else CorruptDataError
                raise error(
                    f"{self.location}: cannot decode {what}: {exc}",
                    location=self.location,
                    kind=kind,
                    key=key,
                ) from exc
            yield Loaded(key, value, row.data, row.version)

    def _set_aside_damaged(self, keys: Iterable[tuple[Kind, str]]) -> list[Row]:
        """Rows keeping the bytes of skipped records that this write replaces or deletes.

        A record skipped by ``on_corrupt="skip"`` is written again when its user next talks to
        the bot; its undecodable bytes then move to kind :data:`DAMAGED_KIND`, in the same
        transaction, so they are never lost.
        """
        rows = []
        for kind, text in keys:
            if (kind, text) not in self.skipped:
                continue
            old = self.row(kind, text)
            if old is None:
                continue
            aside = f"{kind}/{text}/{time.time():.6f}"
            _log.warning(
                "%s: %s could not be decoded and is now replaced; its old bytes are kept as "
                "%s record %r",
                self.location,
                describe(kind, key_from_text(kind, text)),
                DAMAGED_KIND,
                aside,
            )
            rows.append(Row(cast("Kind", DAMAGED_KIND), aside, old.data))
        return rows

    def write(self, changes: Sequence[Change], bot: Any) -> Written[RecordKey] | None:
        upserts = []
        deletes = []
        keys: dict[tuple[Kind, str], RecordKey] = {}
        skipped = set(self.skipped)
        for change in changes:
            text = key_to_text(change.kind, change.key)
            keys[(change.kind, text)] = change.key
            base, strict = change.base, change.strict
            if (change.kind, text) in skipped:
                # A record that could not be read is replaced on purpose (its bytes are set
                # aside below): whatever version it has is not a conflict.
                base, strict = None, False
            if change.data is None:
                deletes.append(Delete(change.kind, text, base, strict))
            else:
                upserts.append(Row(change.kind, text, change.data, 0, base, strict))
        set_aside = self._set_aside_damaged(keys)
        written = self.write_rows(upserts + set_aside, deletes)
        for row in set_aside:
            self.skipped.remove(damaged_origin(row.key))
        if written is None:
            return None

        # The store speaks of key texts; the persistence of keys. Rows set aside are the
        # store's own business.
        def by_key(entries: Mapping[tuple[Kind, str], int]) -> dict[tuple[Kind, RecordKey], int]:
            return {
                (kind, keys[(kind, text)]): value
                for (kind, text), value in entries.items()
                if (kind, text) in keys
            }

        return Written(
            versions=by_key(written.versions),
            conflicts=by_key(written.conflicts),
            refused=frozenset(
                (kind, keys[(kind, text)])
                for kind, text in written.refused
                if (kind, text) in keys
            ),
        )
