"""What the ``botstate`` command line does, as functions: open any store for a tool, read its
records, summarise it, repair one record.

:mod:`botstate.cli` adds the arguments and the output; :mod:`botstate.migrate` copies stores.

Tools read data they may not have written. They decode it with the safe codec of the store's
format (:func:`botstate.codecs.safe_codec`): restricted pickle for pickle, JSON for JSON, with
the classes given to ``allow`` on top of the defaults; ``trust=True`` loads pickle without
restriction. A database, Redis prefix or PostgreSQL table says its format in its stamp, which
is read before the store is opened; a file store's format is its URL's.

Stored values hold the bot as a placeholder. Tools decode it as :data:`STORED_BOT` and encode
:data:`STORED_BOT` as the placeholder again, so a value keeps it through a dump, a repair or a
migration.

Which stores can tell that a bot has them open: SQLite databases and pickle and JSON files, by
the locks botstate's persistences hold on them (:mod:`botstate._locks`). The tools that change a
store (``set``, ``delete``, ``migrate`` into it) take an exclusive lock and are refused while a
bot holds one. Redis and PostgreSQL stores are made to be written by several processes at once
and cannot tell; a tool writes there as one more process does.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, cast

from botstate._locks import in_use
from botstate.codecs import Codec, JSONCodec, PickleCodec, safe_codec
from botstate.codecs.allow import AllowEntry
from botstate.errors import BotStateError, CorruptDataError, EncodingError
from botstate.kinds import (
    KINDS,
    SINGLE_KINDS,
    Kind,
    RecordKey,
    describe,
    key_from_text,
    key_to_text,
)
from botstate.stores.base import DAMAGED_KIND, INCOMPLETE, Change, RecordStore, Store
from botstate.stores.files import SnapshotFileStore
from botstate.stores.server import ServerStore
from botstate.stores.sqlite import SQLiteStore
from botstate.urls import from_url, guess_url, mask_url

__all__ = [
    "STORED_BOT",
    "TOOL_ALLOWED",
    "add_working_directory",
    "KindSummary",
    "Opened",
    "Record",
    "Summary",
    "ToolUsageError",
    "content_digest",
    "count_records",
    "delete_record",
    "open_store",
    "parse_key",
    "records",
    "same_store",
    "set_record",
    "summarize",
    "tool_codec",
]


class _StoredBot:
    """What the bot placeholder of stored values decodes to in the tools."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<the bot>"


#: The stand-in for the bot in values the tools decode; encoded as the bot placeholder again.
STORED_BOT: Final = _StoredBot()

#: Classes the tools load besides the codecs' defaults: the conversation states of
#: ``botstate demo``, so that its files open without ``--allow``.
TOOL_ALLOWED: Final = ("botstate.demo:Step",)


class ToolUsageError(ValueError):
    """The command was asked for something it cannot do as given (the CLI exits with 2)."""


Mode = Literal["read", "change", "create"]


@dataclass
class Opened:
    """A store opened for a tool.

    Attributes:
        url: The store's URL, password masked.
        store: The store, with the tool's codec.
        meta: The stamp of a record store, None for files and for a new record store.
        busy: Opened to read: whether another process had the store open when the tool opened
            it (None: it cannot be told, or not asked).
    """

    url: str
    store: Store
    meta: dict[str, str] | None
    busy: bool | None = None

    @property
    def description(self) -> str:
        """What the store is, for people: ``SQLite database``, ``pickle file``..."""
        store = self.store
        if isinstance(store, SnapshotFileStore):
            name = "JSON" if store.codec.name == "json" else store.codec.name
            return f"{name} file" if store.single_file else f"{name} files, one per kind"
        return _SERVER_NAMES.get(type(store).__name__, type(store).__name__)

    @property
    def identity(self) -> str:
        """Equal for two ``Opened`` on the same data."""
        if isinstance(self.store, (SnapshotFileStore, SQLiteStore)):
            return str(self.store.path.resolve())
        return self.store.location

    def files(self) -> list[Path]:
        """The files a local store keeps its data in (those that exist); [] for servers."""
        store = self.store
        if isinstance(store, SnapshotFileStore) and not store.single_file:
            candidates = [store.file_of(kind) for kind in KINDS]
        elif isinstance(store, (SnapshotFileStore, SQLiteStore)):
            candidates = [store.path]
        else:
            return []
        return [path for path in candidates if path.exists()]

    def in_use(self) -> bool | None:
        """Whether another process has this local store open; None when it cannot be told."""
        files = self.files()
        return in_use(files) if files else None

    def incomplete(self) -> str | None:
        """The note of an unfinished migration into this store, or None."""
        if isinstance(self.store, SnapshotFileStore):
            mark = self.store.incomplete_mark
            return mark.read_text(errors="replace").strip() if mark.exists() else None
        return (self.meta or {}).get(INCOMPLETE)

    def close(self) -> None:
        self.store.close()


_SERVER_NAMES: Final = {
    "SQLiteStore": "SQLite database",
    "RedisStore": "Redis",
    "PostgresStore": "PostgreSQL",
}


def tool_codec(format_name: str, *, trust: bool, allow: Iterable[AllowEntry]) -> Codec:
    """The codec a tool reads and writes *format_name* with: trusted pickle with *trust*, else
    the format's safe codec with the tool's allow-list."""
    if trust and format_name == "pickle":
        return PickleCodec()
    return safe_codec(format_name, (*TOOL_ALLOWED, *allow))


def open_store(
    url: str,
    *,
    mode: Mode = "read",
    trust: bool = False,
    allow: Iterable[AllowEntry] = (),
) -> Opened:
    """Open the store *url* names for a tool.

    Args:
        url: A store URL, or a path recognised by its contents (for ``mode="create"``, a new
            file named by its ending: ``bot.db``, ``bot.pickle``, ``bot.json``).
        mode: ``"read"``: the store must exist. ``"change"``: it must exist, and is locked
            against other processes. ``"create"``: it may be new, and is locked.
        trust: Load pickle without restriction.
        allow: Classes to load besides the codec's defaults.

    Raises:
        ToolUsageError: When the URL names nothing to work on.
        StoreLockedError: When another process has a store to change open.
        BotStateError: When the store cannot be opened.
    """
    opened = _unopened(url, new=mode == "create")
    store = opened.store
    store.accept_incomplete = True  # the tools report such a store rather than refuse it
    if isinstance(store, ServerStore):
        store.retries = 0  # a person waits: report a server that cannot be reached at once
    try:
        _open(opened, mode, trust, allow)
    except BaseException:
        store.close()
        raise
    return opened


def _open(opened: Opened, mode: Mode, trust: bool, allow: Iterable[AllowEntry]) -> None:
    store = opened.store

    # The format: a record store's stamp, read before anything is created; a file's URL.
    if isinstance(store, RecordStore):
        opened.meta = store.read_meta()
        if opened.meta is None and mode != "create":
            raise ToolUsageError(
                f"{opened.url} holds no botstate data"
                + (" (check the prefix or table in the URL)" if store.shared else "")
            )
    elif mode != "create" and not opened.files() and opened.incomplete() is None:
        raise ToolUsageError(f"{opened.url}: no such file")
    format_name = opened.meta.get("codec") if opened.meta else store.codec.name
    if format_name is None:
        raise CorruptDataError(
            f"{opened.url}: its botstate stamp names no codec; botstate leaves it as it is",
            location=opened.url,
        )
    store.codec = tool_codec(format_name, trust=trust, allow=allow)

    # A store to change is locked first: refused at once while a bot has it open.
    if mode == "read":
        opened.busy = opened.in_use()  # asked before this process takes a lock of its own
    elif isinstance(store, (SnapshotFileStore, SQLiteStore)):
        store.locks.exclusive = True
        if isinstance(store, SnapshotFileStore):
            for path in opened.files():
                store.locks.hold(path)
    if isinstance(store, RecordStore):
        store.open()
        if opened.meta is None:
            opened.meta = store.read_meta()


def same_store(url: str, other: str) -> bool:
    """Whether two URLs name the same store; the second may name a new one. Opens neither."""
    return _unopened(url, new=False).identity == _unopened(other, new=True).identity


def _unopened(url: str, new: bool) -> Opened:
    """The store *url* names, not opened yet."""
    text = url
    if "://" not in text:
        try:
            text = guess_url(Path(text), new=new)
        except ValueError as exc:
            raise ToolUsageError(str(exc)) from None
    if urllib.parse.urlsplit(text).scheme == "memory":
        raise ToolUsageError("memory:// holds nothing outside the process that made it")
    try:
        store = from_url(text).store
    except ValueError as exc:
        raise ToolUsageError(str(exc)) from None
    return Opened(mask_url(text), store, None)


# -- records ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Record:
    """One stored record as a tool sees it.

    Attributes:
        kind: Its kind.
        key_text: Its key as text (:func:`botstate.kinds.key_to_text`).
        key: Its key; None for a key text that cannot be read (see ``error``).
        size: Its size in bytes as stored; for file stores, encoded on its own (0 unless
            asked for).
        value: The decoded value (None when not decoded or on error).
        error: Why the key or value cannot be read, or None.
    """

    kind: Kind
    key_text: str
    key: RecordKey
    size: int = 0
    value: object = None
    error: BotStateError | None = None

    @property
    def name(self) -> str:
        """The record as messages name it: ``user_data[42]``."""
        if self.error is not None and self.key is None and self.kind not in SINGLE_KINDS:
            return f"{self.kind} key {self.key_text!r}"
        return describe(self.kind, self.key)


def records(
    opened: Opened, kinds: Iterable[Kind] = KINDS, *, decode: bool = True, measure: bool = False
) -> Iterator[Record]:
    """Yield every record of *kinds*, in the order of :data:`~botstate.kinds.KINDS`.

    A record store yields a record that cannot be read with its ``error`` and goes on. A file
    store decodes a whole file at once: a file that cannot be decoded raises.

    Args:
        opened: The store.
        kinds: The kinds to read.
        decode: Decode the values of a record store (a file store's always are).
        measure: Give the records of a file store their encoded size.

    Raises:
        CorruptDataError: When a file cannot be read or decoded.
    """
    store = opened.store
    wanted = set(kinds)
    for kind in (kind for kind in KINDS if kind in wanted):
        if isinstance(store, RecordStore):
            for row in store.rows(kind):
                yield _from_row(store, kind, row.key, row.data, decode, row.damage)
            continue
        for loaded in store.load(kind, STORED_BOT):
            size = 0
            if measure:
                try:
                    size = len(store.codec.encode(loaded.value, bot=STORED_BOT))
                except EncodingError:
                    size = 0
            yield Record(kind, key_to_text(kind, loaded.key), loaded.key, size, loaded.value)


def count_records(opened: Opened, kinds: Iterable[Kind] = KINDS) -> dict[Kind, int]:
    """The number of records of each of *kinds* (a file store reads its files for it)."""
    store = opened.store
    if isinstance(store, RecordStore):
        return {kind: store.count(kind) for kind in kinds}
    return {kind: sum(1 for _ in store.load(kind, STORED_BOT)) for kind in kinds}


def _from_row(
    store: RecordStore, kind: Kind, text: str, data: bytes, decode: bool, damage: str | None
) -> Record:
    try:
        key = key_from_text(kind, text)
    except ValueError as exc:
        return Record(kind, text, None, len(data), error=CorruptDataError(str(exc)))
    if damage is not None:
        return Record(kind, text, key, len(data), error=CorruptDataError(damage))
    if not decode:
        return Record(kind, text, key, len(data))
    try:
        value = store.codec.decode(data, bot=STORED_BOT)
    except CorruptDataError as exc:
        return Record(kind, text, key, len(data), error=exc)
    return Record(kind, text, key, len(data), value)


def parse_key(kind: Kind, text: str | None) -> RecordKey:
    """Read the ``--key`` of a command: ``42`` for users and chats,
    ``'["handler",[42,42]]'`` for conversations, nothing for ``bot_data`` and ``callback_data``.

    Raises:
        ToolUsageError: When the key is missing or is not a key of *kind*.
    """
    if kind in SINGLE_KINDS:
        if text:
            raise ToolUsageError(f"{kind} is a single record: leave out --key")
        return None
    if text is None:
        raise ToolUsageError(f"{kind} needs --key, e.g. {_KEY_EXAMPLES[kind]}")
    try:
        return key_from_text(kind, text)
    except ValueError as exc:
        raise ToolUsageError(f"{exc}; a {kind} key looks like {_KEY_EXAMPLES[kind]}") from None


_KEY_EXAMPLES: Final[Mapping[str, str]] = {
    "user_data": "--key 42",
    "chat_data": "--key -1001234567890",
    "conversations": "--key '[\"signup\",[42,42]]'",
    "fsm": "--key '[700000001,42,42,null,null,\"default\"]'",
}


# -- repairs ------------------------------------------------------------------------------------


def set_record(opened: Opened, kind: Kind, key: RecordKey, value: object) -> bool:
    """Store *value* as one record, replacing the stored one; return whether one was stored.

    Raises:
        ToolUsageError: When *value* cannot be a record of *kind*.
        EncodingError: When the store's codec cannot encode *value*.
    """
    _check_value(kind, value)
    existed = _exists(opened, kind, key)
    data = opened.store.codec.encode(value, bot=STORED_BOT)
    opened.store.write([Change(kind, key, value, data)], STORED_BOT)
    return existed


def delete_record(opened: Opened, kind: Kind, key: RecordKey) -> bool:
    """Delete one record; return False (and change nothing) when it is not stored."""
    if not _exists(opened, kind, key):
        return False
    opened.store.write([Change(kind, key, None, None)], STORED_BOT)
    return True


def _exists(opened: Opened, kind: Kind, key: RecordKey) -> bool:
    store = opened.store
    if isinstance(store, RecordStore):
        # The raw row: a record that cannot be decoded can still be replaced or deleted.
        return store.row(kind, key_to_text(kind, key)) is not None
    return store.load_record(kind, key, STORED_BOT) is not None


def _check_value(kind: Kind, value: object) -> None:
    """Refuse values the frameworks could not load back as a record of *kind*."""
    if kind in ("user_data", "chat_data", "bot_data") and not isinstance(value, dict):
        # python-telegram-bot's own data classes are dicts; a bot with another class for them
        # writes that class, which JSON cannot give.
        raise ToolUsageError(
            f"{kind} records are JSON objects ({{...}}), got {type(value).__name__}: "
            "python-telegram-bot refuses anything else when it loads them"
        )
    if kind == "conversations":
        try:
            hash(value)
        except TypeError:
            # python-telegram-bot looks states up in a dict: a list or object cannot be one.
            raise ToolUsageError(
                f"a conversation state is a number, text or another hashable value, got "
                f"{type(value).__name__}"
            ) from None
    if kind == "callback_data" and not (isinstance(value, (list, tuple)) and len(value) == 2):
        raise ToolUsageError(
            "callback_data is a pair [keyboards, queries]; see 'botstate dump --kind "
            "callback_data' for its shape"
        )
    if kind == "fsm" and not (
        isinstance(value, dict)
        and set(value) == {"state", "data"}
        and isinstance(value["state"], (str, type(None)))
        and isinstance(value["data"], dict)
    ):
        raise ToolUsageError('an fsm record is {"state": "Form:name" or null, "data": {...}}')


# -- summaries ----------------------------------------------------------------------------------


@dataclass
class KindSummary:
    """How many records of a kind are stored, and their bytes."""

    records: int = 0
    bytes: int = 0


@dataclass
class Summary:
    """What ``botstate inspect`` shows about a store."""

    url: str
    description: str
    codec: str
    format_version: str | None = None
    created: float | None = None
    last_write: float | None = None
    in_use: bool | None = None
    incomplete: str | None = None
    kinds: dict[str, KindSummary] = field(default_factory=dict)
    handlers: dict[str, int] = field(default_factory=dict)
    largest: list[tuple[str, int]] = field(default_factory=list)
    unreadable_keys: list[str] = field(default_factory=list)
    #: Bytes of damaged records a bot replaced (``on_corrupt="skip"``): key and size.
    set_aside: list[tuple[str, int]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """The summary as plain JSON data."""
        return {
            "url": self.url,
            "store": self.description,
            "codec": self.codec,
            "format_version": self.format_version,
            "created": self.created,
            "last_write": self.last_write,
            "in_use": self.in_use,
            "incomplete": self.incomplete,
            "kinds": {kind: vars(counts) for kind, counts in self.kinds.items()},
            "conversations": self.handlers,
            "largest": [{"record": name, "bytes": size} for name, size in self.largest],
            "unreadable_keys": self.unreadable_keys,
            "set_aside": [{"key": key, "bytes": size} for key, size in self.set_aside],
        }


def summarize(opened: Opened, largest: int = 5, in_use: bool | None = None) -> Summary:
    """Count and measure the records of a store. A record store's values are not decoded."""
    store = opened.store
    summary = Summary(
        opened.url,
        opened.description,
        store.codec.name,
        in_use=in_use,
        incomplete=opened.incomplete(),
        kinds={kind: KindSummary() for kind in KINDS},
    )
    info = getattr(store, "info", None)
    if info is not None:
        details = info()
        summary.format_version = details.get("format_version")
        summary.created = _seconds(details.get("created"))
        summary.last_write = _seconds(details.get("last_write"))
    else:
        files = opened.files()
        summary.last_write = max((path.stat().st_mtime for path in files), default=None)
        head = b""
        # Only a regular file: opening a pipe would wait; loading the records below says why.
        if files and files[0].is_file() and store.codec.name == "pickle":
            with contextlib.suppress(OSError), files[0].open("rb") as file:
                head = file.read(2)
            if len(head) == 2 and head[0] == 0x80:
                summary.description += f", pickle protocol {head[1]}"

    sizes: list[tuple[int, str]] = []
    for record in records(opened, decode=False, measure=True):
        counts = summary.kinds[record.kind]
        counts.records += 1
        counts.bytes += record.size
        if record.error is not None:
            summary.unreadable_keys.append(record.name)
            continue
        if record.kind == "conversations" and isinstance(record.key, tuple):
            name = str(record.key[0])
            summary.handlers[name] = summary.handlers.get(name, 0) + 1
        sizes.append((record.size, record.name))
    sizes.sort(key=lambda item: -item[0])
    summary.largest = [(name, size) for size, name in sizes[:largest]]
    if isinstance(store, RecordStore):
        aside = store.rows(cast("Kind", DAMAGED_KIND))
        summary.set_aside = [(row.key, len(row.data)) for row in aside]
    return summary


def _seconds(value: object) -> float | None:
    try:
        return None if value is None else float(str(value))
    except ValueError:
        return None


def content_digest(value: object, codec: JSONCodec) -> bytes:
    """A digest of *value* that is equal for equal values, whatever store they came from.

    The value's JSON notation where it has one (sets are written in a stable order), else its
    pickle.
    """
    try:
        data = codec.encode(value, bot=STORED_BOT)
    except EncodingError:
        data = b"pickle:" + PickleCodec().encode(value, bot=STORED_BOT)
    return hashlib.blake2b(data, digest_size=16).digest()


def add_working_directory() -> None:
    """Let ``--allow`` and ``--trust`` find the bot's own modules in the current folder.

    The console script's ``sys.path`` does not hold the current folder. It is added last, so
    it never hides the standard library or an installed package.
    """
    folder = os.getcwd()
    if folder not in sys.path:
        sys.path.append(folder)
