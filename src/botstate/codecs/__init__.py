"""Codecs turn Python values into bytes and back; see :class:`Codec`.

Stores take a codec by name or as an instance:

* ``"pickle"``: :class:`PickleCodec`, every Python type. Loading a pickle can run code: only for
  data your own bot wrote.
* ``"pickle-restricted"``: ``PickleCodec(trusted=False)``, the same format, loading only the
  classes of its allow-list (:mod:`botstate.codecs.allow`).
* ``"json"``: :class:`JSONCodec`, readable, typed and safe to load.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from botstate.codecs.allow import AllowEntry, AllowList
from botstate.codecs.base import Codec
from botstate.codecs.json import JSONCodec
from botstate.codecs.pickle import PickleCodec

__all__ = ["AllowList", "Codec", "JSONCodec", "PickleCodec", "get_codec", "safe_codec"]

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


def safe_codec(format_name: str, allow: Iterable[AllowEntry] | AllowList = ()) -> Codec:
    """Return a codec that loads data of *format_name* without trusting it.

    For tools that open data they did not write: restricted pickle for ``"pickle"`` (a database
    stamps its format in ``botstate_meta``), JSON for ``"json"``.

    Args:
        format_name: ``"pickle"`` or ``"json"``, as a codec's :attr:`Codec.name`.
        allow: Classes and functions to allow besides the defaults.

    Raises:
        ValueError: For another format.
    """
    if format_name == "pickle":
        return PickleCodec(trusted=False, allow=allow)
    if format_name == "json":
        return JSONCodec(allow)
    raise ValueError(f"unknown format {format_name!r}; botstate writes 'pickle' and 'json'")
