"""Snapshot file stores: the whole state as one encoded file, or one file per kind.

:class:`PicklePersistence` writes pickle files, :class:`JSONPersistence` JSON files. The layout
is python-telegram-bot's: one file holding a dict of the five kinds
(``user_data``, ``chat_data``, ``bot_data``, ``callback_data``, ``conversations``), or, with
``single_file=False``, the files ``<path>_user_data``, ``<path>_chat_data``, ... each holding one
kind. aiogram's records (kind ``fsm``) are one more entry of that dict, or the file
``<path>_fsm``, present only while such records are stored: python-telegram-bot reads the entries
and files it knows and ignores this one, and a bot that never stores it writes exactly
python-telegram-bot's layout.

Every write replaces the file atomically (:mod:`botstate._atomic`), so a crash leaves the
old file or the new one. A file that exists but cannot be read is an error, never "no data".

With ``checksum=True`` (what :class:`PicklePersistence` uses) each file ends with
:data:`CHECKSUM_MARK` and 8 hex digits: the CRC-32 of the bytes before the mark, started (in the
one-file-per-kind layout) from the CRC-32 of the kind's name. A byte damaged after the write, or
a file of another kind in its place, is found on load. Pickle readers stop at the end of the
pickle and never see these bytes: python-telegram-bot reads the files as before, and files
without them still load.

While open, a store holds a shared lock on the files it has read or written
(:mod:`botstate._locks`), by which the command line's repairs tell that a bot is using them.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Final, cast

from botstate._atomic import remove_stale_temporaries, replace_file
from botstate._locks import FileLocks, read_all
from botstate.base import BD, CD, UD, PersistenceInput
from botstate.codecs import Codec, get_codec
from botstate.errors import (
    ConflictError,
    CorruptDataError,
    EncodingError,
    StoreLockedError,
    UnsafeDataError,
)
from botstate.kinds import (
    KEYED_KINDS,
    KINDS,
    ConversationKey,
    Kind,
    RecordKey,
    check_key,
    describe,
)
from botstate.persistence import Persistence
from botstate.stores.base import Change, Loaded, Store, copy_value, incomplete_error

__all__ = [
    "CHECKSUM_MARK",
    "INCOMPLETE_SUFFIX",
    "JSONPersistence",
    "PicklePersistence",
    "SnapshotFileStore",
]

_log = logging.getLogger(__name__)

#: Written before the CRC-32 (8 hex digits) that ends a file written with ``checksum=True``.
CHECKSUM_MARK: Final = b"\nbotstate-crc32:"
_CHECKSUM_LENGTH: Final = len(CHECKSUM_MARK) + 8

# A kind with nothing stored: bot_data and callback_data are absent rather than empty.
_ABSENT = object()

# Kinds whose section is one dict from record key to value.
_FLAT_KINDS = KEYED_KINDS | {"fsm"}

# Kinds python-telegram-bot does not know: their section is left out of the files while empty.
_EXTRA_KINDS = frozenset({"fsm"})

#: ``<path><INCOMPLETE_SUFFIX>`` marks files that ``botstate migrate`` has not finished writing.
INCOMPLETE_SUFFIX = ".botstate-incomplete"


class SnapshotFileStore(Store):
    """A store that keeps the whole state in memory and writes it as one file or one per kind.

    Args:
        path: The file, or with ``single_file=False`` the prefix of the five files.
        codec: Encodes the whole image (or one kind per file).
        single_file: One file (default) or one file per kind. May be changed at any time;
            the next write then writes every kind in the new layout.
        checksum: End each file written with its checksum (see the module documentation);
            only for codecs whose readers ignore bytes after the encoded value. A checksum is
            checked on load whatever this says.
    """

    def __init__(
        self, path: str | Path, codec: Codec, single_file: bool = True, checksum: bool = False
    ) -> None:
        super().__init__(codec)
        self.path = Path(path)
        self.single_file = single_file
        self.checksum = checksum
        # The state as last read or written, in python-telegram-bot's layout, by kind.
        self._image: dict[Kind, Any] = {}
        # The layout the image was read from or last written in; None before any read.
        self._layout: bool | None = None
        # What each file looked like when last read or written (None: absent).
        self._seen: dict[Path, tuple[int, int, int] | None] = {}
        # Files whose leftover temporaries this store removed already.
        self._swept: set[Path] = set()
        self.locks = FileLocks()

    @property
    def location(self) -> str:
        return str(self.path)

    def file_of(self, kind: Kind, single_file: bool | None = None) -> Path:
        """Return the file holding *kind* in the given (default: current) layout."""
        single = self.single_file if single_file is None else single_file
        return self.path if single else Path(f"{self.path}_{kind}")

    @property
    def incomplete_mark(self) -> Path:
        """The file marking an unfinished migration into this store."""
        return Path(f"{self.path}{INCOMPLETE_SUFFIX}")

    def close(self) -> None:
        # Another process may write once the locks are released: read the files again.
        self.locks.release()
        self._image = {}

    # -- reading --------------------------------------------------------------------------------

    def load(self, kind: Kind, bot: Any, handler: str | None = None) -> list[Loaded]:
        self._ensure_read([kind], bot)
        section = self._image[kind]
        if kind in _FLAT_KINDS:
            return [self._loaded(kind, key, value, bot) for key, value in section.items()]
        if kind == "conversations":
            names = section if handler is None else [handler] if handler in section else []
            return [
                self._loaded(kind, (name, key), state, bot)
                for name in names
                for key, state in section[name].items()
            ]
        if section is _ABSENT or (kind == "callback_data" and section is None):
            return []
        return [self._loaded(kind, None, section, bot)]

    def load_record(self, kind: Kind, key: RecordKey, bot: Any) -> Loaded | None:
        self._ensure_read([kind], bot)
        value = self._current(kind, key)
        if value is _ABSENT or (kind == "callback_data" and value is None):
            return None
        return self._loaded(kind, key, value, bot)

    def _loaded(self, kind: Kind, key: RecordKey, value: Any, bot: Any) -> Loaded:
        """A record of the image, copied so that the caller's edits cannot reach it."""
        try:
            return Loaded(key, copy_value(value, bot))
        except RecursionError as exc:
            # The unpickler builds any depth; copying it needs one Python frame per level.
            raise self._corrupt(
                self.file_of(kind, self._layout),
                f"holds {describe(kind, key)} nested too deeply to load ({exc})",
                kind,
            ) from exc

    def stored_data(self, kind: Kind, key: RecordKey, bot: Any) -> bytes | None:
        value = self._current(kind, key)
        if value is _ABSENT:
            return None
        try:
            return self.codec.encode(value, bot=bot)
        except EncodingError:
            return None

    def _current(self, kind: Kind, key: RecordKey) -> Any:
        section = self._image.get(kind, _ABSENT)
        if section is _ABSENT:
            return _ABSENT
        if kind in _FLAT_KINDS:
            return section.get(key, _ABSENT)
        if kind == "conversations":
            assert isinstance(key, tuple)
            return section.get(key[0], {}).get(key[1], _ABSENT)
        return section

    def _ensure_read(self, kinds: Iterable[Kind], bot: Any) -> None:
        """Read the sections of *kinds* that are not in memory yet."""
        missing = [kind for kind in kinds if kind not in self._image]
        if not missing:
            return
        if not self.accept_incomplete and self.incomplete_mark.exists():
            note = self.incomplete_mark.read_text(errors="replace").strip()
            raise incomplete_error(self.location, note)
        layout = self.single_file if self._layout is None else self._layout
        if layout:
            self._image.update(self._read_single(bot))
        else:
            for kind in missing:
                self._image[kind] = self._read_section(kind, bot)
        self._layout = layout

    def _read_single(self, bot: Any) -> dict[Kind, Any]:
        content = self._read_file(self.path, None, bot)
        if content is _ABSENT:
            return {kind: _empty(kind) for kind in KINDS}
        if not isinstance(content, dict) or not any(kind in content for kind in KINDS):
            raise self._corrupt(
                self.path,
                f"holds a {type(content).__name__}, not persistence data "
                f"(a dict with {', '.join(KINDS)})",
            )
        image = {}
        for kind in KINDS:
            # Files written by older releases lack bot_data or callback_data: they load empty.
            section = content.get(kind, _empty(kind))
            image[kind] = self._checked(self.path, kind, section)
        return image

    def _read_section(self, kind: Kind, bot: Any) -> Any:
        path = self.file_of(kind, single_file=False)
        content = self._read_file(path, kind, bot)
        if content is _ABSENT:
            return _empty(kind)
        return self._checked(path, kind, content)

    def _read_file(self, path: Path, kind: Kind | None, bot: Any) -> Any:
        """Decode one file: the single file (*kind* None) or the file of *kind*."""
        self._seen[path] = _signature(path)
        try:
            descriptor = self.locks.hold(path)
            if descriptor is None:
                return _ABSENT
            data = read_all(descriptor)
        except StoreLockedError:
            raise
        except OSError as exc:
            raise self._corrupt(path, f"cannot be read: {exc.strerror or exc}") from exc
        data = self._checked_sum(path, kind, data)
        try:
            content = self.codec.decode(data, bot=bot)
        except CorruptDataError as exc:
            error = self._corrupt(path, f"cannot be decoded as {self.codec.name}: {exc}")
            if isinstance(exc, UnsafeDataError):
                error = UnsafeDataError(str(error), location=error.location)
            raise error from exc
        _log.debug("read %s (%d bytes)", path, len(data))
        return content

    def _checked_sum(self, path: Path, kind: Kind | None, data: bytes) -> bytes:
        """Return *data* without its checksum, after checking it; data without one as it is."""
        if not data[-_CHECKSUM_LENGTH:].startswith(CHECKSUM_MARK):
            return data
        body = data[:-_CHECKSUM_LENGTH]
        if data[-8:] != _checksum(body, kind):
            raise self._corrupt(
                path,
                "does not match the checksum at its end: it was damaged after it was written, "
                "or it is another file (of another kind or another store)",
            )
        return body

    def _checked(self, path: Path, kind: Kind, section: Any) -> Any:
        if kind in _FLAT_KINDS and not isinstance(section, dict):
            raise self._corrupt(path, f"{kind} is a {type(section).__name__}, not a dict", kind)
        if kind in KEYED_KINDS and not all(type(key) is int for key in section):
            wrong = next(key for key in section if type(key) is not int)
            raise self._corrupt(path, f"{kind} has the key {wrong!r}, not an int id", kind)
        if kind == "conversations" and not (
            isinstance(section, dict) and all(isinstance(v, dict) for v in section.values())
        ):
            raise self._corrupt(path, "conversations is not a dict of dicts", kind)
        if kind == "callback_data" and not (
            section is None or (isinstance(section, (tuple, list)) and len(section) == 2)
        ):
            raise self._corrupt(path, "callback_data is not a (keyboards, queries) pair", kind)

        # Keys of the wrong type mean the file is not what its name says (another kind's file,
        # another program's dict); loading it would hand out records no one can address.
        try:
            if kind in KEYED_KINDS:
                for key in section:
                    check_key(kind, key)
            elif kind == "conversations":
                for name, states in section.items():
                    for key in states:
                        check_key(kind, (name, key))
        except TypeError as exc:
            raise self._corrupt(path, f"holds a record of no valid key: {exc}", kind) from exc
        return section

    def _corrupt(self, path: Path, problem: str, kind: Kind | None = None) -> CorruptDataError:
        return CorruptDataError(
            f"{path} {problem}; botstate leaves the file as it is and writes nothing over it",
            location=str(path),
            kind=kind,
        )

    # -- writing --------------------------------------------------------------------------------

    def write(self, changes: Sequence[Change], bot: Any) -> None:
        changed = {change.kind for change in changes}
        layout_changed = self._layout is not None and self._layout != self.single_file
        to_write: Iterable[Kind] = KINDS if self.single_file or layout_changed else changed
        to_write = [kind for kind in KINDS if kind in set(to_write)]
        self._ensure_read(to_write, bot)

        # Apply the changes to a copy of the changed sections; the image moves on only once
        # the files are written.
        image = dict(self._image)
        for kind in changed:
            section = image[kind]
            image[kind] = dict(section) if isinstance(section, dict) else section
        for change in changes:
            # The change carries a private copy (decoded from its bytes), so later edits of
            # the caller's object cannot reach the file.
            _apply(image, change, change.value)

        files: list[tuple[Path, bytes]] = []
        # Files of kinds python-telegram-bot does not know go away once their last record does.
        removals: list[Path] = []
        if self.single_file:
            content = {
                kind: image[kind]
                for kind in KINDS
                if image[kind] is not _ABSENT and not _unused(kind, image[kind])
            }
            content.setdefault("callback_data", None)
            files.append((self.path, self._encode(content, None, bot)))
        else:
            for kind in to_write:
                section = image[kind]
                if _unused(kind, section):
                    if kind in changed and self.file_of(kind).exists():
                        removals.append(self.file_of(kind))
                    continue
                data = self._encode(None if section is _ABSENT else section, kind, bot)
                files.append((self.file_of(kind), data))

        # Never write over a file someone else changed since it was read (a backup restored
        # under a running bot, a second process): check every file before writing any.
        for path in [path for path, _ in files] + removals:
            self._check_unchanged(path)
        for path, data in files:
            self._replace(path, data)
            self._seen[path] = _signature(path)
        for path in removals:
            path.unlink(missing_ok=True)
            self._seen[path] = None
        self._image = image
        self._layout = self.single_file

    def _check_unchanged(self, path: Path) -> None:
        if path in self._seen and _signature(path) != self._seen[path]:
            raise ConflictError(
                f"{path} was changed by another process since botstate read it; botstate does "
                "not write over it. Restart the bot to use the file as it is now (changes made "
                "since are kept in memory and tried again with the next write)."
            )

    def _replace(self, path: Path, data: bytes) -> None:
        """Replace *path*; the first time, remove what a killed writer left beside it.

        Only the writer removes leftovers: a reader doing so (a tool looking at a live
        bot) could delete the temporary file the bot's process is about to rename.
        """
        if path not in self._swept:
            remove_stale_temporaries(path)
            self._swept.add(path)
        replace_file(path, data, self.locks)

    def _encode(self, content: object, kind: Kind | None, bot: Any) -> bytes:
        try:
            data = self.codec.encode_snapshot(content, bot=bot)
        except EncodingError as exc:
            raise EncodingError(f"{self.path}: cannot encode the state: {exc}") from exc
        if self.checksum:
            data += CHECKSUM_MARK + _checksum(data, kind)
        return data


def _checksum(data: bytes, kind: Kind | None) -> bytes:
    """The CRC-32 of *data*, started from that of the kind's name in the one-file-per-kind
    layout (so a file of one kind fails as another's), as 8 hex digits."""
    start = 0 if kind is None else zlib.crc32(kind.encode())
    return b"%08x" % zlib.crc32(data, start)


def _signature(path: Path) -> tuple[int, int, int] | None:
    """Inode, size and modification time of *path*; None when it does not exist."""
    try:
        status = path.stat()
    except FileNotFoundError:
        return None
    except OSError:
        return (-1, -1, -1)  # Unreadable now: the read or write that follows says why.
    return (status.st_ino, status.st_size, status.st_mtime_ns)


def _empty(kind: Kind) -> Any:
    if kind in _FLAT_KINDS or kind == "conversations":
        return {}
    return _ABSENT if kind == "bot_data" else None


def _unused(kind: Kind, section: Any) -> bool:
    """True for an empty section of a kind python-telegram-bot does not know."""
    return kind in _EXTRA_KINDS and not section


def _apply(image: dict[Kind, Any], change: Change, value: Any) -> None:
    kind, key = change.kind, change.key
    if kind in _FLAT_KINDS:
        if change.data is None:
            image[kind].pop(key, None)
        else:
            image[kind][key] = value
    elif kind == "conversations":
        name, conversation_key = cast("tuple[str, ConversationKey]", key)
        states = dict(image[kind].get(name, {}))
        if change.data is None:
            states.pop(conversation_key, None)
        else:
            states[conversation_key] = value
        image[kind][name] = states
    elif change.data is None:
        image[kind] = _empty(kind)
    else:
        image[kind] = value


class _FilePersistence(Persistence[UD, CD, BD]):
    """A persistence on a :class:`SnapshotFileStore` whose codec writes :attr:`format`; the
    arguments are documented by the subclasses."""

    #: The codec name (format) the files are written in.
    format: str

    def __init__(
        self,
        filepath: str | Path,
        store_data: PersistenceInput | None = None,
        single_file: bool = True,
        on_flush: bool = False,
        update_interval: float = 60,
        context_types: Any = None,
        *,
        codec: Codec | str | None = None,
    ) -> None:
        chosen = get_codec(codec, default=self.format)
        if chosen.name != self.format:
            raise ValueError(
                f"{type(self).__name__} writes {self.format} files; codec {chosen!r} writes "
                f"{chosen.name}"
            )
        # Pickle files end with a checksum, after the pickle where pickle readers do not look;
        # a JSON file stays plain JSON.
        self._files = SnapshotFileStore(
            filepath, chosen, single_file, checksum=self.format == "pickle"
        )
        super().__init__(
            self._files,
            store_data=store_data,
            update_interval=update_interval,
            context_types=context_types,
            on_flush=on_flush,
        )

    @property
    def filepath(self) -> Path:
        return self._files.path

    @property
    def single_file(self) -> bool:
        return self._files.single_file

    @single_file.setter
    def single_file(self, value: bool) -> None:
        self._files.single_file = value


class PicklePersistence(_FilePersistence[UD, CD, BD]):
    """Persistence in pickle files laid out as python-telegram-bot's ``PicklePersistence``.

    A bot switches by changing its import: files written by python-telegram-bot load here, and
    python-telegram-bot loads the plain-data files written here. Unlike python-telegram-bot's
    class, every write replaces the file atomically (a crash never leaves it half written), the
    changes of one cycle are one write rather than one per id, file work runs off the event
    loop, and a file that cannot be read is an error rather than a fresh start over it. Each
    file ends with a checksum (after the pickle, where pickle readers do not look), so a damaged
    byte is an error too rather than silently different data.

    Loading a pickle can run code: only load files your bot wrote, or pass
    ``codec="pickle-restricted"`` (see :class:`~botstate.codecs.PickleCodec`).

    Args:
        filepath: The pickle file, or with ``single_file=False`` the prefix of the five files
            ``<filepath>_user_data``, ``_chat_data``, ``_bot_data``, ``_callback_data`` and
            ``_conversations``.
        store_data: Which kinds to store. Defaults to all of them.
        single_file: One file (default) or one per kind.
        on_flush: When True, nothing is written until :meth:`flush`. Defaults to False.
        update_interval: Seconds between two persistence updates of the application.
        context_types: python-telegram-bot's ``ContextTypes``, for the ``bot_data`` factory.
        codec: ``"pickle"`` (default), ``"pickle-restricted"`` or a
            :class:`~botstate.codecs.PickleCodec`.

    Attributes:
        filepath: The file path, a :class:`pathlib.Path`.
        single_file: As given; changing it takes effect with the next write.
        on_flush: As given; changing it takes effect with the next update.
    """

    format = "pickle"


class JSONPersistence(_FilePersistence[UD, CD, BD]):
    """Persistence in JSON files anyone can read, and that are safe to load from anywhere.

    The layout is :class:`PicklePersistence`'s (one file holding the five kinds, or one file
    per kind), and so are the guarantees: atomic replacement of every file, one write per cycle,
    no file work on the event loop, an unreadable file is an error. The JSON is botstate's typed
    notation (:mod:`botstate.codecs.json`): int ids stay ints, tuples stay tuples, sets, dates,
    Enum members and TelegramObjects come back as they were stored. A value the notation cannot
    hold exactly is refused with :class:`~botstate.errors.EncodingError` when it is stored.

    The arguments and attributes are :class:`PicklePersistence`'s, with JSON files in place of
    pickle files, except for the codec.

    Args:
        codec: ``"json"`` (default) or a :class:`~botstate.codecs.JSONCodec`, e.g.
            ``JSONCodec(allow=["mybot.states"])`` to store the Enum members and plain objects of
            your own modules.
    """

    format = "json"
