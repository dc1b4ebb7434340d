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
* empty kinds come back as empty containers, ``bot_data`` from the context types' factory.

Stores (:mod:`botstate.stores`) only load and durably write; they run on one worker thread per
persistence so that file and database calls never block the event loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

from botstate.base import BD, CD, UD, BasePersistence, CallbackData, PersistenceInput
from botstate.codecs.base import find_unencodable
from botstate.copysafe import CopySafeDict
from botstate.errors import BotStateError, EncodingError, WriteError
from botstate.kinds import KINDS, ConversationKey, Kind, RecordKey, check_key, describe
from botstate.stores.base import Change, Loaded, Store, copy_value, handler_of

__all__ = ["Persistence"]

_log = logging.getLogger(__name__)

_T = TypeVar("_T")
_Address = tuple[Kind, RecordKey]


@dataclass(frozen=True, slots=True)
class _Update:
    """One call of ``update_*`` (``delete`` False) or ``drop_*`` (``delete`` True)."""

    kind: Kind
    key: RecordKey
    value: object
    delete: bool = False

    @property
    def address(self) -> _Address:
        return (self.kind, self.key)


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
        # Only the worker thread touches it.
        self._digests: dict[Kind, dict[RecordKey, bytes]] = {kind: {} for kind in KINDS}
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
        factory: Callable[[], object] = getattr(self.context_types, "bot_data", dict)
        return cast("BD", factory())

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

    # -- refreshes ------------------------------------------------------------------------------

    async def refresh_user_data(self, user_id: int, user_data: UD) -> None:
        """Single-process stores hold nothing newer than the application; nothing to do."""

    async def refresh_chat_data(self, chat_id: int, chat_data: CD) -> None:
        """Single-process stores hold nothing newer than the application; nothing to do."""

    async def refresh_bot_data(self, bot_data: BD) -> None:
        """Single-process stores hold nothing newer than the application; nothing to do."""

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

    def _load_blocking(self, kind: Kind, handler: str | None) -> dict[RecordKey, object]:
        records: list[Loaded] = self.store.load(kind, self.bot, handler)
        digests = self._digests[kind]
        if handler is None:
            digests.clear()
        else:
            for key in [key for key in digests if handler_of(key) == handler]:
                del digests[key]
        result = {}
        for record in records:
            result[record.key] = record.value
            if record.data is not None:
                digests[record.key] = _digest(record.data)
        _log.debug("%s: loaded %d %s records", self.store.location, len(result), kind)
        return result

    # -- writing --------------------------------------------------------------------------------

    async def _submit(self, update: _Update) -> None:
        check_key(update.kind, update.key)
        if self.on_flush:
            self._pending[update.address] = update
            return
        # A change of the same record kept in memory (before on_flush was switched off) is
        # older than this one; the next flush must not write it over this one.
        self._pending.pop(update.address, None)
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
                errors, failed = dict.fromkeys(addresses, exc), retries + updates
                if not isinstance(exc, Exception):
                    raise
            for update in failed:
                self._retry.setdefault(update.address, update)
                self._last_failure = errors[update.address]
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
        for address, update in latest.items():
            if update.delete:
                changes.append(Change(update.kind, update.key, None, None))
                digests[address] = None
                continue
            try:
                data = self.store.codec.encode(update.value, bot=self.bot)
            except EncodingError as exc:
                errors[address] = self._encoding_error(update, exc)
                continue
            digest = _digest(data)
            if digest == self._known_digest(update):
                continue
            changes.append(Change(update.kind, update.key, update.value, data))
            digests[address] = digest

        if not changes:
            return errors, []
        try:
            self.store.write(changes, self.bot)
        except BotStateError as exc:
            failure: BaseException = exc
        except Exception as exc:
            failure = WriteError(f"{self.store.location}: write failed: {exc}")
            failure.__cause__ = exc
        else:
            for (kind, key), new_digest in digests.items():
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

    def _known_digest(self, update: _Update) -> bytes | None:
        digest = self._digests[update.kind].get(update.key)
        if digest is not None:
            return digest
        data = self.store.stored_data(update.kind, update.key, self.bot)
        return None if data is None else _digest(data)

    def _encoding_error(self, update: _Update, exc: EncodingError) -> EncodingError:
        what = describe(update.kind, update.key)
        path = find_unencodable(
            update.value, lambda part: self.store.codec.encode(part, bot=self.bot)
        )
        where = what + (path or "")
        error = EncodingError(
            f"cannot store {where}: {exc}; the previously stored {what} is kept",
            kind=update.kind,
            key=update.key,
            path=path,
        )
        error.__cause__ = exc
        return error

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


def _raise_first(results: Sequence[object]) -> None:
    """Raise the first exception among *results*; the others are logged by record name."""
    errors = [result for result in results if isinstance(result, BaseException)]
    for error in errors[1:]:
        _log.warning("also not stored: %s", error)
    if errors:
        raise errors[0]
