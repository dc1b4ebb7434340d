"""Codecs turn Python values into bytes and back; see :class:`Codec`.

Stores take a codec by name or as an instance:

* ``"pickle"``: :class:`PickleCodec`, every Python type. Loading a pickle can run code: only for
  data your own bot wrote.
* ``"pickle-restricted"``: ``PickleCodec(trusted=False)``, the same format, loading only the
  classes of its allow-list (:mod:`botstate.codecs.allow`).
* ``"json"``: :class:`JSONCodec`, readable, typed and safe to load.
"""

from __future__ import annotations

from collections.abc import Callable

from botstate.codecs.allow import AllowList
from botstate.codecs.base import Codec
from botstate.codecs.json import JSONCodec
from botstate.codecs.pickle import PickleCodec

__all__ = ["AllowList", "Codec", "JSONCodec", "PickleCodec", "get_codec"]

_NAMED: dict[str, Callable[[], Codec]] = {
    "pickle": PickleCodec,
    "pickle-restricted": lambda: PickleCodec(trusted=False),
    "json": JSONCodec,
}


def get_codec(codec: str | Codec | None, default: str = "pickle") -> Codec:
    """Return the codec named by *codec*, or *codec* itself when it already is one.

    Args:
        codec: ``"pickle"``, ``"pickle-restricted"``, ``"json"``, a :class:`Codec` instance, or
            None for *default*.
        default: The name used when *codec* is None.

    Raises:
        ValueError: For an unknown name.
    """
    if isinstance(codec, Codec):
        return codec
    name = default if codec is None else codec
    make = _NAMED.get(name)
    if make is None:
        names = ", ".join(repr(known) for known in _NAMED)
        raise ValueError(f"unknown codec {name!r}; choose {names} or pass a Codec instance")
    return make()
