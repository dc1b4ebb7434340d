"""A record store in process memory: for tests, and for bots that need no durability."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from botstate.base import BD, CD, UD, PersistenceInput
from botstate.codecs import Codec, get_codec
from botstate.kinds import Kind
from botstate.persistence import Persistence
from botstate.stores.base import Delete, OnCorrupt, RecordStore, Row

__all__ = ["MemoryPersistence", "MemoryStore"]


class MemoryStore(RecordStore):
    """Keeps encoded records in a dict; everything is lost when the process ends.

    Records are still encoded, so values behave exactly as with a durable store (copies,
    encoding errors, the bot placeholder).
    """

    def __init__(self, codec: Codec | str | None = None, on_corrupt: OnCorrupt = "raise") -> None:
        super().__init__(get_codec(codec), on_corrupt)
        self.records: dict[tuple[Kind, str], Row] = {}

    @property
    def location(self) -> str:
        return f"memory:{id(self):#x}"

    def rows(self, kind: Kind, key_prefix: str = "") -> Iterable[Row]:
        return [
            row
            for (row_kind, key), row in self.records.items()
            if row_kind == kind and key.startswith(key_prefix)
        ]

    def row(self, kind: Kind, key: str) -> Row | None:
        return self.records.get((kind, key))

    def write_rows(self, upserts: Sequence[Row], deletes: Sequence[Delete]) -> None:
        for delete in deletes:
            self.records.pop((delete.kind, delete.key), None)
        for row in upserts:
            old = self.records.get((row.kind, row.key))
            version = 1 if old is None else old.version + 1
            self.records[(row.kind, row.key)] = Row(row.kind, row.key, row.data, version)


class MemoryPersistence(Persistence[UD, CD, BD]):
    """A persistence that keeps everything in memory, encoded: for tests and throwaway bots.

    Args:
        store_data: Which kinds to store. Defaults to all of them.
        update_interval: Seconds between two persistence updates of the application.
        context_types: python-telegram-bot's ``ContextTypes``, for the ``bot_data`` factory.
        codec: ``"pickle"`` (default), ``"pickle-restricted"``, ``"json"`` or a codec
            instance.
    """

    def __init__(
        self,
        store_data: PersistenceInput | None = None,
        update_interval: float = 60,
        context_types: Any = None,
        codec: Codec | str | None = None,
    ) -> None:
        super().__init__(
            MemoryStore(codec),
            store_data=store_data,
            update_interval=update_interval,
            context_types=context_types,
        )
