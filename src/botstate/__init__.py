"""botstate: a chat bot's state, kept safe across restarts, crashes and redeploys.

botstate implements python-telegram-bot's persistence contract (:class:`BasePersistence`,
:class:`PersistenceInput`) once over swappable stores and codecs:

* :class:`SQLitePersistence`: the recommended default, one row per record;
* :class:`PicklePersistence`: python-telegram-bot's pickle file layout, written atomically;
* :class:`JSONPersistence`: the same layout as readable JSON that is safe to load;
* :class:`MemoryPersistence`: in memory, for tests;
* :class:`RedisPersistence` and :class:`PostgresPersistence`: on a server that several bot
  processes share (extras ``botstate[redis]`` and ``botstate[postgres]``).

The library imports nothing beyond the standard library; python-telegram-bot and the database
drivers are optional extras, imported only by the modules that need them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from botstate.base import BasePersistence, CallbackData, PersistenceInput
from botstate.codecs import AllowList, Codec, JSONCodec, PickleCodec
from botstate.errors import (
    BotStateError,
    ConflictError,
    CorruptDataError,
    EncodingError,
    FormatVersionError,
    StoreLockedError,
    StoreUnavailableError,
    UnsafeDataError,
    WriteError,
)
from botstate.persistence import Persistence
from botstate.stores.files import JSONPersistence, PicklePersistence
from botstate.stores.memory import MemoryPersistence
from botstate.stores.sqlite import SQLitePersistence
from botstate.urls import from_url

if TYPE_CHECKING:
    from botstate.stores.postgres import PostgresPersistence
    from botstate.stores.redis import RedisPersistence

__version__ = "0.1.0"

__all__ = [
    "AllowList",
    "BasePersistence",
    "BotStateError",
    "CallbackData",
    "Codec",
    "ConflictError",
    "CorruptDataError",
    "EncodingError",
    "FormatVersionError",
    "JSONCodec",
    "JSONPersistence",
    "MemoryPersistence",
    "Persistence",
    "PersistenceInput",
    "PickleCodec",
    "PicklePersistence",
    "PostgresPersistence",
    "RedisPersistence",
    "SQLitePersistence",
    "StoreLockedError",
    "StoreUnavailableError",
    "UnsafeDataError",
    "WriteError",
    "__version__",
    "from_url",
]

# The server stores import their drivers, which are optional: they load on first use.
_LAZY = {
    "RedisPersistence": "botstate.stores.redis",
    "PostgresPersistence": "botstate.stores.postgres",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'botstate' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
