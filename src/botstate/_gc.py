"""Pausing Python's cyclic garbage collector while a store is decoded in bulk.

Loading 100,000 users makes several hundred thousand new containers and no garbage at all, yet
every 700 new containers start a collection, and the full collections among them walk the whole
growing heap: measured on a 100,000-user SQLite load, they took about as long as the decoding
itself. Pausing the collector for the load removes that cost and collects nothing less: the
first collection after it finds whatever the program made meanwhile.

What a load made would then sit in the youngest generation, and the next few collections, in
the middle of the bot's work, would each walk all of it. So the load's objects are moved to the
oldest generation at once, with ``gc.freeze()`` and ``gc.unfreeze()``: two list splices, no
walk. That is skipped when the program froze objects itself (``gc.get_freeze_count()`` is not
zero), since unfreezing would undo that; the load's objects then age as usual.
"""

from __future__ import annotations

import functools
import gc
import threading
from collections.abc import Callable
from typing import ParamSpec, TypeVar

__all__ = ["collection_paused"]

_P = ParamSpec("_P")
_T = TypeVar("_T")


class _Pause:
    """Counts the loads under way. Loads of several persistences may overlap on their worker
    threads: the collector runs again once the last of them ends, and only if it was running
    before the first began."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loads = 0
        self._was_enabled = False

    def begin(self) -> None:
        with self._lock:
            if self._loads == 0:
                self._was_enabled = gc.isenabled()
                gc.disable()
            self._loads += 1

    def end(self) -> None:
        with self._lock:
            self._loads -= 1
            if self._loads == 0 and self._was_enabled:
                if gc.get_freeze_count() == 0:
                    gc.freeze()
                    gc.unfreeze()
                gc.enable()


_pause = _Pause()


def collection_paused(function: Callable[_P, _T]) -> Callable[_P, _T]:
    """Decorate *function* to run with the cyclic garbage collector paused."""

    @functools.wraps(function)
    def paused(*args: _P.args, **kwargs: _P.kwargs) -> _T:
        _pause.begin()
        try:
            return function(*args, **kwargs)
        finally:
            _pause.end()

    return paused
