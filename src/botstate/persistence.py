"""The one implementation of the persistence contract, shared by every store.

:class:`Persistence` holds the rules every backend has in common:

* a kind switched off in ``store_data`` is neither loaded nor written;
* getters hand out new objects, so editing them never changes what is stored;
* a record whose encoded value did not change is not written again;
* the ``update_*`` and ``drop_*`` calls that arrive together (python-telegram-bot sends every
  changed id of a cycle at once) become one batch and one durable write, and each call returns
  once its record is durable, or at once with ``on_flush=True``;
* one record that cannot be encoded fails that call alone: the rest of the batch is written and
  the last stored version of the bad record stays;
* records whose write failed are tried again with the next batch or flush;
* empty kinds come back as empty containers, ``bot_data`` from the context types' factory;
* on a store shared by several processes (:attr:`~botstate.stores.base.Store.shared`), every
  record's stored version is remembered: ``refresh_*`` and :meth:`Persistence.refresh_conversation`
  bring the application's objects up to the newest stored version, and a write based on a
  replaced version is reported as a conflict;
* on stores that check versions (:attr:`~botstate.stores.base.Store.checks_versions`), one
  record can be read with its version and written back only if that version is still stored:
  a compare-and-set, atomic across processes.

Stores (:mod:`botstate.stores`) only load and durably write; they run on one worker thread per
persistence so that file and database calls never block the event loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar, cast

from botstate._gc import collection_paused
from botstate.base import BD, CD, UD, BasePersistence, CallbackData, PersistenceInput
from botstate.codecs.base import find_unencodable
from botstate.copysafe import CopySafeDict
from botstate.errors import (
    BotStateError,
    ConflictError,
    CorruptDataError,
    EncodingError,
    WriteError,
)
from botstate.kinds import KINDS, ConversationKey, Kind, RecordKey, check_key, describe
from botstate.stores.base import Change, Loaded, Store, Written, copy_value, handler_of

__all__ = ["Persistence"]

_log = logging.getLogger(__name__)

_T = TypeVar("_T")
_Address = tuple[Kind, RecordKey]

# Encoding one small record takes a few microseconds: yielding the interpreter lock every 16 of
# them keeps the event loop's wait for it well under a millisecond at little cost.
_RECORDS_BETWEEN_YIELDS = 16


@dataclass(frozen=True, slots=True)
class _Update:
    """One call of ``update_*`` (``delete`` False) or ``drop_*`` (``delete`` True).

    ``expect`` is the stored version a compare-and-set requires; None for a plain write.
    """

    kind: Kind
    key: RecordKey
    value: object
    delete: bool = False
    expect: int | None = None

    @property
    def address(self) -> _Address:
        return (self.kind, self.key)


#: What :meth:`Persistence._fresh` returns when the application's object is current.
_CURRENT: Final = object()


def _digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


class Persistence(BasePersistence[UD, CD, BD], Generic[UD, CD, BD]):
    """A complete persistence over a :class:`~botstate.stores.base.Store`.

    The concrete classes (:class:`~botstate.PicklePersistence`,
    :class:`~botstate.SQLitePersistence`, ...) are this class with their store built for you.
    Use it directly to run the contract on a store of your own.

    Args:
        store: Where records are kept.
        store_data: Which kinds to store. Defaults to all of them.
        update_interval: Seconds between two persistence updates of the application.
        context_types: python-telegram-bot's ``ContextTypes`` (or any object with a
            ``bot_data`` factory); an empty ``bot_data`` is made by that factory. Where it names
            :class:`~botstate.copysafe.CopySafeDict` classes, stored dicts come back as them.
        on_flush: When True, ``update_*`` and ``drop_*`` only keep the change in memory and
            :meth:`flush` writes them all. Defaults to False: every call returns once its record
            is durable.

    Attributes:
        store: The store.
        context_types: As given.
        on_flush: As given; may be changed at any time and applies to the next call.
    """

    def __init__(
        self,
        store: Store,
        *,
        store_data: PersistenceInput | None = None,
        update_interval: float = 60,
        context_types: Any = None,
        on_flush: bool = False,
    ) -> None:
        super().__init__(store_data=store_data, update_interval=update_interval)
        self.store = store
        self.context_types = context_types
        self.on_flush = on_flush
        self._executor: ThreadPoolExecutor | None = None
        self._opened = False
        # Digest of the bytes last loaded or written per record: the change detection.
        # Only the worker thread touches it. The conversations' dict is keyed by tuples: after
        # a full garbage collection untracked it, the first digest stored under a new key tuple
        # makes it young again, and the next two young collections walk all of it (several
        # milliseconds per 100,000 conversations, on whichever thread triggers them).
        self._digests: dict[Kind, dict[RecordKey, bytes]] = {kind: {} for kind in KINDS}
        # Shared stores: the stored version of each record as last loaded or written, the kinds
        # (and conversation handlers) loaded whole, and the records whose write was refused as
        # a conflict, which the next refresh replaces with the stored value. Worker thread only.
        self._versions: dict[Kind, dict[RecordKey, int]] = {kind: {} for kind in KINDS}
        self._loaded: set[tuple[Kind, str | None]] = set()
        self._stale: set[_Address] = set()
        # Changes kept in memory with on_flush=True, last one per record.
        self._pending: dict[_Address, _Update] = {}
        # Changes whose write failed, tried again with the next batch.
        self._retry: dict[_Address, _Update] = {}
        self._last_failure: BaseException | None = None
        self._queue: list[tuple[_Update, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None

    # -- getters --------------------------------------------------------------------------------

    async def get_user_data(self) -> dict[int, UD]:
        if not self.store_data.user_data:
            return {}
        return cast("dict[int, UD]", self._adopted("user_data", await self._load("user_data")))

    async def get_chat_data(self) -> dict[int, CD]:
        if not self.store_data.chat_data:
            return {}
        return cast("dict[int, CD]", self._adopted("chat_data", await self._load("chat_data")))

    async def get_bot_data(self) -> BD:
        if self.store_data.bot_data:
            loaded = self._adopted("bot_data", await self._load("bot_data"))
            if None in loaded:
                return cast("BD", loaded[None])
        return cast("BD", self._empty("bot_data"))

    async def get_callback_data(self) -> CallbackData | None:
        if not self.store_data.callback_data:
            return None
        loaded = await self._load("callback_data")
        return cast("CallbackData | None", loaded.get(None))

    async def get_conversations(self, name: str) -> dict[ConversationKey, object]:
        loaded = await self._load("conversations", handler=name)
        keys = cast("dict[tuple[str, ConversationKey], object]", loaded)
        return {key: state for (_, key), state in keys.items()}

    # -- updates --------------------------------------------------------------------------------

    async def update_user_data(self, user_id: int, data: UD) -> None:
        if self.store_data.user_data:
            await self._submit(_Update("user_data", user_id, data))

    async def update_chat_data(self, chat_id: int, data: CD) -> None:
        if self.store_data.chat_data:
            await self._submit(_Update("chat_data", chat_id, data))

    async def update_bot_data(self, data: BD) -> None:
        if self.store_data.bot_data:
            await self._submit(_Update("bot_data", None, data))

    async def update_callback_data(self, data: CallbackData) -> None:
        if self.store_data.callback_data:
            await self._submit(_Update("callback_data", None, data))

    async def update_conversation(
        self, name: str, key: ConversationKey, new_state: object | None
    ) -> None:
        await self._submit(_Update("conversations", (name, key), new_state, new_state is None))

    async def drop_user_data(self, user_id: int) -> None:
        if self.store_data.user_data:
            await self._submit(_Update("user_data", user_id, None, delete=True))

    async def drop_chat_data(self, chat_id: int) -> None:
        if self.store_data.chat_data:
            await self._submit(_Update("chat_data", chat_id, None, delete=True))

    # -- single records -------------------------------------------------------------------------

    async def get_record(self, kind: Kind, key: RecordKey) -> object | None:
        """Return a new copy of one stored record, or None when it is not stored.

        For integrations that address records one at a time, such as aiogram's storage
        (:mod:`botstate.aiogram`). It sees every earlier :meth:`update_record` and
        :meth:`drop_record`, whether written already or kept for :meth:`flush`. A kind
        switched off in ``store_data`` gives None.

        Raises:
            CorruptDataError: When the stored record cannot be decoded.
        """
        value, _ = await self.get_versioned_record(kind, key)
        return value

    async def get_versioned_record(
        self, kind: Kind, key: RecordKey
    ) -> tuple[object | None, int | None]:
        """Return :meth:`get_record`'s copy of one record and the stored version it read.

        The version is 0 when the record is not stored. Pass it as ``version`` to
        :meth:`update_record` or :meth:`drop_record` to write only if no other process (or
        task) wrote the record since. It is None where no such check can be made: on stores
        that keep no versions shared between processes (memory, pickle files), with
        ``on_flush=True``, and for a kind switched off in ``store_data``.

        Raises:
            CorruptDataError: When the stored record cannot be decoded.
        """
        check_key(kind, key)
        if not self._stores(kind):
            return None, None
        await self._settle()
        pending = self._pending.get((kind, key))
        if pending is not None:
            return (None if pending.delete else copy_value(pending.value, self.bot)), None
        value, version = await self._call(self._load_record_blocking, kind, key)
        return value, (version if self.store.checks_versions and not self.on_flush else None)

    async def update_record(
        self, kind: Kind, key: RecordKey, value: object, *, version: int | None = None
    ) -> None:
        """Store one record of any kind, as the ``update_*`` methods do for theirs.

        Args:
            kind: The record's kind.
            key: The record's key.
            value: The new value.
            version: When given, a compare-and-set: the record is stored only if its stored
                version is still this one (0: only if it is not stored), as
                :meth:`get_versioned_record` returned it. Check and write are one atomic step
                of the store, across processes. With ``on_flush=True`` the check is made when
                :meth:`flush` writes the record. A value equal to the one last read is not
                written, so not checked either: it changes nothing.

        Raises:
            ConflictError: When the stored version is no longer *version*; nothing was
                written. Read the record again and repeat the change.
            ValueError: When *version* is given to a store that cannot check it.
        """
        if self._stores(kind):
            await self._submit(_Update(kind, key, value, expect=self._expected(version)))

    async def drop_record(self, kind: Kind, key: RecordKey, *, version: int | None = None) -> None:
        """Delete one record of any kind, as the ``drop_*`` methods do for theirs.

        *version* makes it a compare-and-set, as for :meth:`update_record`; a record that is
        gone already is no conflict.
        """
        if self._stores(kind):
            await self._submit(
                _Update(kind, key, None, delete=True, expect=self._expected(version))
            )

    def _stores(self, kind: Kind) -> bool:
        """False for a kind switched off in ``store_data``; kinds it does not name are stored."""
        return bool(getattr(self.store_data, kind, True))

    def _expected(self, version: int | None) -> int | None:
        """Check the ``version`` of a compare-and-set."""
        if version is None:
            return None
        if not self.store.checks_versions:
            raise ValueError(
                f"{self.store.location} keeps no record versions shared between processes, "
                "so it cannot check version=; pass version=None (get_versioned_record gives "
                "None for this store)"
            )
        if type(version) is not int or version < 0:
            raise ValueError(f"version must be a stored version, an int >= 0, got {version!r}")
        return version

    # -- refreshes ------------------------------------------------------------------------------

    async def refresh_user_data(self, user_id: int, user_data: UD) -> None:
        """Load a newer stored version of one user's data into *user_data*, in place.

        Only shared stores can hold a version newer than this process's; for other stores this
        does nothing. A change the application made and has not stored yet is kept.
        """
        if self.store_data.user_data:
            await self._refresh_in_place("user_data", user_id, user_data)

    async def refresh_chat_data(self, chat_id: int, chat_data: CD) -> None:
        """Load a newer stored version of one chat's data into *chat_data*, in place.

        See :meth:`refresh_user_data`.
        """
        if self.store_data.chat_data:
            await self._refresh_in_place("chat_data", chat_id, chat_data)

    async def refresh_bot_data(self, bot_data: BD) -> None:
        """Load a newer stored version of ``bot_data`` into *bot_data*, in place.

        See :meth:`refresh_user_data`.
        """
        if self.store_data.bot_data:
            await self._refresh_in_place("bot_data", None, bot_data)

    async def refresh_conversation(
        self, name: str, key: ConversationKey, state: object | None
    ) -> object | None:
        """Return the current state of one conversation, given the application's *state*.

        That is the stored state when another process stored a newer one (None when it ended
        the conversation), else *state*. Only shared stores can hold a newer state; for other
        stores this returns *state*. :mod:`botstate.telegram` calls it before each update.

        Args:
            name: The conversation handler's name.
            key: The conversation key.
            state: The state the application holds, None when it holds none.
        """
        fresh = await self._fresh("conversations", (name, key), state)
        if fresh is _CURRENT:
            return state
        return None if fresh is None else cast("Loaded", fresh).value

    # -- flushing and closing -------------------------------------------------------------------

    async def flush(self) -> None:
        """Write every change kept in memory and every change whose write failed.

        Raises:
            EncodingError: If some records could not be encoded; all others are written.
            WriteError: If the store could not write; the changes are kept for the next try.
        """
        futures = [self._enqueue(update) for update in self._pending.values()]
        self._pending.clear()
        if self._retry and not futures:
            self._start_writer()
        if self._writer is not None and not self._writer.done():
            await asyncio.shield(self._writer)
        if futures:
            results = await asyncio.gather(*futures, return_exceptions=True)
            _raise_first(results)
        if self._retry and self._last_failure is not None:
            raise self._last_failure

    async def close(self) -> None:
        """Flush, then close the store and stop the worker thread."""
        try:
            await self.flush()
        finally:
            if self._executor is not None:
                if self._opened:
                    await self._call(self.store.close)
                    self._opened = False
                self._executor.shutdown(wait=True)
                self._executor = None

    async def __aenter__(self) -> Persistence[UD, CD, BD]:
        await self._call(lambda: None)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(store={self.store!r}, on_flush={self.on_flush})"

    # -- loading --------------------------------------------------------------------------------

    async def _load(self, kind: Kind, handler: str | None = None) -> dict[RecordKey, object]:
        await self._settle()
        result = await self._call(self._load_blocking, kind, handler)

        # Changes not yet written (on_flush=True) are part of what the application sees.
        for (pending_kind, key), update in self._pending.items():
            if pending_kind != kind or (handler is not None and handler_of(key) != handler):
                continue
            if update.delete:
                result.pop(key, None)
            else:
                result[key] = copy_value(update.value, self.bot)
        return result

    def _adopted(self, kind: Kind, records: dict[RecordKey, object]) -> dict[RecordKey, object]:
        """Give loaded plain dicts the context types' class when it is a
        :class:`~botstate.copysafe.CopySafeDict`, which is stored as a plain dict."""
        factory = getattr(self.context_types, kind, None)
        if not (isinstance(factory, type) and issubclass(factory, CopySafeDict)):
            return records
        return {
            key: factory(value) if type(value) is dict else value for key, value in records.items()
        }

    @collection_paused
    def _load_blocking(self, kind: Kind, handler: str | None) -> dict[RecordKey, object]:
        records: Iterable[Loaded] = self.store.load(kind, self.bot, handler)
        digests = self._digests[kind]
        versions = self._versions[kind]
        for known in (digests, versions):
            if handler is None:
                known.clear()
            else:
                for key in [key for key in known if handler_of(key) == handler]:
                    del known[key]
        self._loaded.add((kind, handler))
        result = {}
        for record in records:
            result[record.key] = record.value
            if record.data is not None:
                digests[record.key] = _digest(record.data)
            if record.version is not None:
                versions[record.key] = record.version
        _log.debug("%s: loaded %d %s records", self.store.location, len(result), kind)
        return result

    def _load_record_blocking(self, kind: Kind, key: RecordKey) -> tuple[object | None, int]:
        """One record's value and stored version (0 when it is not stored, or has none)."""
        record = self.store.load_record(kind, key, self.bot)
        if record is None:
            self._digests[kind].pop(key, None)
            return None, 0
        if record.data is not None:
            self._digests[kind][key] = _digest(record.data)
        return record.value, record.version or 0

    # -- writing --------------------------------------------------------------------------------

    async def _submit(self, update: _Update) -> None:
        check_key(update.kind, update.key)
        if self.on_flush:
            self._pending[update.address] = update
            return
        # A change of the same record kept in memory (before on_flush was switched off) is
        # older than this one; it must not be written over this one.
        self._pending.pop(update.address, None)
        if self._pending:
            # The others kept while on_flush was True go with this write.
            self._retry.update(self._pending)
            self._pending.clear()
        await self._enqueue(update)

    def _enqueue(self, update: _Update) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((update, future))
        self._start_writer()
        return future

    def _start_writer(self) -> None:
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._drain())

    async def _settle(self) -> None:
        """Wait until every queued change has been handled."""
        if self._writer is not None and not self._writer.done():
            await asyncio.shield(self._writer)

    async def _drain(self) -> None:
        # Let the other calls of the same gather() enqueue first, so they share one write.
        await asyncio.sleep(0)
        while self._queue or self._retry:
            batch, self._queue = self._queue, []
            updates = [update for update, _ in batch]
            addresses = {update.address for update in updates}
            retries = [u for a, u in self._retry.items() if a not in addresses]
            self._retry.clear()
            try:
                errors, failed = await self._call(self._commit, retries + updates)
            except BaseException as exc:
                # The worker could not run at all; nothing of this batch was written.
                failed = retries + updates
                errors = {update.address: exc for update in failed}
                if not isinstance(exc, Exception):
                    raise
            for update in failed:
                self._retry.setdefault(update.address, update)
                self._last_failure = errors.get(update.address, self._last_failure)
            # A change tried again and now refused (a conflict, a value that cannot be stored)
            # has no caller left to tell.
            kept = {id(update) for update in failed}
            for update in retries:
                if update.address in errors and id(update) not in kept:
                    _log.warning(
                        "dropped a change whose first write had failed: %s", errors[update.address]
                    )
            for update, future in batch:
                if future.done():
                    continue
                error = errors.get(update.address)
                if error is None:
                    future.set_result(None)
                else:
                    future.set_exception(error)
            if failed and not self._queue:
                # Do not spin on a store that keeps failing: the next call or flush retries.
                break

    def _commit(
        self, updates: Sequence[_Update]
    ) -> tuple[dict[_Address, BaseException], list[_Update]]:
        """Encode, skip unchanged records and write the rest as one batch (worker thread).

        Returns the error of each record that failed, and the updates to try again.
        """
        latest: dict[_Address, _Update] = {}
        for update in updates:
            latest[update.address] = update

        # Encode each record on its own, so one bad value fails only its own record.
        errors: dict[_Address, BaseException] = {}
        changes: list[Change] = []
        digests: dict[_Address, bytes | None] = {}
        for number, (address, update) in enumerate(latest.items(), 1):
            if number % _RECORDS_BETWEEN_YIELDS == 0:
                # Encoding holds the interpreter lock; the event loop's thread, when it wakes,
                # would wait for it up to the switch interval (5 ms). Hand it over now and then.
                time.sleep(0)
            try:
                change = self._change_for(update)
            except EncodingError as exc:
                errors[address] = exc
                continue
            if change is not None:
                changes.append(change)
                digests[address] = None if change.data is None else _digest(change.data)

        if not changes:
            return errors, []
        try:
            result = self.store.write(changes, self.bot)
        except BotStateError as exc:
            failure: BaseException = exc
        except Exception as exc:
            failure = WriteError(f"{self.store.location}: write failed: {exc}")
            failure.__cause__ = exc
        else:
            if result is not None:
                errors.update(self._note_versions(result, changes))
            for (kind, key), new_digest in digests.items():
                if (kind, key) in errors:
                    continue
                if new_digest is None:
                    self._digests[kind].pop(key, None)
                else:
                    self._digests[kind][key] = new_digest
            _log.debug("%s: wrote %d records", self.store.location, len(changes))
            return errors, []

        _log.warning(
            "%s: a batch of %d records was not stored; it is tried again with the next write",
            self.store.location,
            len(changes),
        )
        for change in changes:
            errors[(change.kind, change.key)] = failure
        written = {(change.kind, change.key) for change in changes}
        return errors, [latest[address] for address in written]

    def _change_for(self, update: _Update) -> Change | None:
        """The change that stores *update*, or None when the stored record is already equal.

        Raises:
            EncodingError: When the value does not encode, or its bytes do not load back.
        """
        strict = update.expect is not None
        if update.delete:
            return Change(update.kind, update.key, None, None, update.expect, strict)
        try:
            data = self.store.codec.encode(update.value, bot=self.bot)
        except EncodingError as exc:
            raise self._encoding_error(update, exc) from exc
        if _digest(data) == self._known_digest(update):
            return None

        # Store only what loads back: a value that encodes but fails to decode (an exception
        # class whose __init__ takes other arguments, say) would break the next start.
        try:
            copy = self.store.codec.decode(data, bot=self.bot)
        except CorruptDataError as exc:
            raise self._encoding_error(update, exc, round_trip=True) from exc
        base = update.expect
        if self.store.shared and not strict:
            base = self._base_version(update.kind, update.key)
        return Change(update.kind, update.key, copy, data, base, strict)

    def _base_version(self, kind: Kind, key: RecordKey) -> int | None:
        """The stored version a new value of the record is based on; None when not known."""
        version = self._versions[kind].get(key)
        if version is None and (
            (kind, None) in self._loaded or (kind, handler_of(key)) in self._loaded
        ):
            return 0  # Loaded whole and not there: the record is new.
        return version

    def _note_versions(
        self, written: Written[RecordKey], changes: Sequence[Change]
    ) -> dict[_Address, BaseException]:
        """Remember the versions a store reports; return the errors of refused writes."""
        for (kind, key), version in written.versions.items():
            self._versions[kind][key] = version
        bases = {(change.kind, change.key): change.base for change in changes}
        strict = {(change.kind, change.key) for change in changes if change.strict}
        errors: dict[_Address, BaseException] = {}
        for address, found in written.conflicts.items():
            what = describe(*address)
            if address in written.refused and address in strict:
                errors[address] = ConflictError(
                    f"{self.store.location}: {what} was not stored: it was read at version "
                    f"{bases.get(address)}, and another process (or task) has changed it since "
                    f"(stored version now {found}, 0 when deleted). Read it again and repeat "
                    "the change."
                )
            elif address in written.refused:
                errors[address] = ConflictError(
                    f"{self.store.location}: {what} was not stored: another process replaced "
                    f"version {bases.get(address)} with version {found} since this one read it "
                    f"(on_conflict='raise'). The next refresh of {what} loads the stored value; "
                    "make the change again from there."
                )
                self._stale.add(address)
            else:
                _log.warning(
                    "%s: %s was replaced by another process since this one read it (version "
                    "%s, stored %d); this newer write replaced it in turn",
                    self.store.location,
                    what,
                    bases.get(address),
                    found,
                )
        return errors

    def _known_digest(self, update: _Update) -> bytes | None:
        digest = self._digests[update.kind].get(update.key)
        if digest is not None:
            return digest
        data = self.store.stored_data(update.kind, update.key, self.bot)
        return None if data is None else _digest(data)

    def _encoding_error(
        self, update: _Update, exc: EncodingError | CorruptDataError, round_trip: bool = False
    ) -> EncodingError:
        """The error of one record that cannot be stored, naming it and the part that failed.

        With *round_trip*, the value encoded but its bytes did not decode back.
        """
        codec, bot = self.store.codec, self.bot
        what = describe(update.kind, update.key)
        # A codec that knows where it failed says so; for the others, find it by re-encoding.
        path = getattr(exc, "path", None)
        if path is None:
            if round_trip:
                path = find_unencodable(
                    update.value, lambda part: codec.decode(codec.encode(part, bot=bot), bot=bot)
                )
            else:
                path = find_unencodable(update.value, lambda part: codec.encode(part, bot=bot))
        path = path or None
        where = what + (path or "")
        problem = f"it encodes but does not load back ({exc})" if round_trip else str(exc)
        error = EncodingError(
            f"cannot store {where}: {problem}; what was stored as {what} before is kept",
            kind=update.kind,
            key=update.key,
            path=path,
        )
        error.__cause__ = exc
        return error

    # -- refreshing from a shared store ---------------------------------------------------------

    async def _refresh_in_place(self, kind: Kind, key: RecordKey, target: object) -> None:
        fresh = await self._fresh(kind, key, target)
        if fresh is _CURRENT:
            return
        source = self._empty(kind) if fresh is None else cast("Loaded", fresh).value
        if not _replace_contents(target, source):
            _log.warning(
                "%s: a newer %s is stored, but a %s cannot take the contents of a %s in place; "
                "the application keeps its own",
                self.store.location,
                describe(kind, key),
                type(target).__name__,
                type(source).__name__,
            )

    async def _fresh(self, kind: Kind, key: RecordKey, local: object) -> object:
        """The stored record (None: not stored) if the application should take it, or _CURRENT.

        It should when another process stored a version this one has not seen, unless the
        application changed the record and has not stored the change yet: that change is kept,
        and its write meets the stored version under the ``on_conflict`` rule. A record whose
        write was refused as a conflict is taken from the store whatever the application holds.
        """
        if not self.store.shared:
            return _CURRENT
        check_key(kind, key)
        if (kind, key) in self._pending:
            return _CURRENT  # An unstored change (on_flush=True) is the newest value.
        await self._settle()
        # The worker compares a copy: handlers may change the application's object meanwhile.
        snapshot = copy_value(local, self.bot)
        return await self._call(self._fresh_blocking, kind, key, snapshot)

    def _fresh_blocking(self, kind: Kind, key: RecordKey, local: object) -> object:
        address = (kind, key)
        record = self.store.load_record(kind, key, self.bot)
        stored = 0 if record is None else record.version or 0
        forced = address in self._stale
        if not forced and (stored == self._versions[kind].get(key, 0) or address in self._retry):
            return _CURRENT

        # Another version is stored. The application keeps its object when it changed it and
        # has not stored the change yet, and when it already holds the stored value.
        stored_digest = None if record is None or record.data is None else _digest(record.data)
        local_digest = self._digest_of(local)
        unchanged = local_digest == self._last_digest(kind, key)
        if not (forced or unchanged or local_digest == stored_digest):
            return _CURRENT
        self._stale.discard(address)
        self._versions[kind][key] = stored
        if stored_digest is None:
            self._digests[kind].pop(key, None)
        else:
            self._digests[kind][key] = stored_digest
        if local_digest == stored_digest:
            return _CURRENT
        _log.debug("%s: %s refreshed to stored version %d", self.store.location, kind, stored)
        return record

    def _digest_of(self, value: object) -> bytes:
        """The digest of *value* encoded; empty (matching no digest) when it cannot be."""
        try:
            return _digest(self.store.codec.encode(value, bot=self.bot))
        except EncodingError:
            return b""

    def _last_digest(self, kind: Kind, key: RecordKey) -> bytes:
        """The digest of the record as this process last loaded or wrote it.

        For a record it never saw stored, that of the empty value the application starts from.
        """
        known = self._digests[kind].get(key)
        if known is not None:
            return known
        return self._digest_of(None if kind == "conversations" else self._empty(kind))

    def _empty(self, kind: Kind) -> object:
        """A new empty value of *kind*, from the context types' factory where it has one."""
        factory: Callable[[], object] = getattr(self.context_types, kind, dict)
        return factory()

    # -- the worker thread ----------------------------------------------------------------------

    async def _call(self, function: Callable[..., _T], *args: Any) -> _T:
        """Run *function* on the worker thread, opening the store first if needed."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="botstate")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._opened_call, function, *args)

    def _opened_call(self, function: Callable[..., _T], *args: Any) -> _T:
        if not self._opened:
            self.store.open()
            self._opened = True
        return function(*args)


def _replace_contents(target: object, source: object) -> bool:
    """Give *target* the contents of *source*, in place; False when their types do not allow."""
    if isinstance(target, dict) and isinstance(source, dict):
        target.clear()
        target.update(source)
        return True
    state = getattr(target, "__dict__", None)
    if type(target) is type(source) and isinstance(state, dict):
        state.clear()
        state.update(vars(source))
        return True
    return False


def _raise_first(results: Sequence[object]) -> None:
    """Raise the first exception among *results*; the others are logged by record name."""
    errors = [result for result in results if isinstance(result, BaseException)]
    if not errors:
        return
    # A write that failed as a whole hands its one error to every record in it: each distinct
    # error is logged once, with the number of records it stopped.
    counts: dict[int, list[Any]] = {}
    for error in errors[1:]:
        if error is not errors[0]:
            counts.setdefault(id(error), [error, 0])[1] += 1
    for error, count in counts.values():
        _log.warning("also not stored%s: %s", f" ({count} records)" if count > 1 else "", error)
    raise errors[0]
