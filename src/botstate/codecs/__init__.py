"""Codecs turn Python values into bytes and back; see :class:`Codec`."""

from __future__ import annotations

from botstate.codecs.base import Codec
from botstate.codecs.pickle import PickleCodec

__all__ = ["Codec", "PickleCodec", "get_codec"]


def get_codec(codec: str | Codec | None, default: str = "pickle") -> Codec:
    """Return the codec named by *codec*, or *codec* itself when it already is one.

    Args:
        codec: ``"pickle"``, a :class:`Codec` instance, or None for *default*.
        default: The name used when *codec* is None.

    Raises:
        ValueError: For an unknown name.
    """
    if isinstance(codec, Codec):
        return codec
    name = default if codec is None else codec
    if name == "pickle":
        return PickleCodec()
    raise ValueError(f"unknown codec {name!r}; choose 'pickle' or pass a Codec instance")
