"""What a codec is: an object that turns Python values into bytes and back.

A record store encodes each record on its own; a snapshot store encodes its whole image. Codecs
take the current bot on every call so that one codec instance can serve several persistences.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

__all__ = ["Codec", "find_unencodable"]


class Codec(ABC):
    """Turns Python values into bytes and back.

    Subclasses raise :class:`~botstate.errors.EncodingError` from :meth:`encode` and
    :class:`~botstate.errors.CorruptDataError` from :meth:`decode`; the store adds the file or
    URL and the record to the message.
    """

    __slots__ = ()

    #: The name of the format written (``"pickle"``, ``"json"``), stamped into databases. Codecs
    #: that differ only in what they agree to load (trusted or restricted pickle) share it.
    name: ClassVar[str]

    @abstractmethod
    def encode(self, value: object, *, bot: Any = None) -> bytes:
        """Return *value* as bytes. References to *bot* are replaced by a placeholder."""

    @abstractmethod
    def decode(self, data: bytes, *, bot: Any = None) -> object:
        """Return the value *data* holds, with placeholders replaced by *bot*."""

    def encode_snapshot(self, value: object, *, bot: Any = None) -> bytes:
        """Return a snapshot store's whole image (the content of one file) as bytes.

        The default is :meth:`encode`; a text codec may lay a file out for people to read.
        """
        return self.encode(value, bot=bot)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def find_unencodable(value: object, encode: Callable[[object], object]) -> str | None:
    """Return the path inside *value* of the innermost part that *encode* refuses.

    The path reads like Python subscripts and attributes, for example ``['cart'][3]`` or
    ``['order'].items``. Returns None when no part can be blamed (for example when the failure
    comes from the whole value's size or nesting depth).
    """
    path = ""
    current = value
    # Walk down as long as one child of the current part fails on its own.
    for _ in range(200):
        for step, child in _children(current):
            try:
                encode(child)
            except Exception:
                path += step
                current = child
                break
        else:
            return path or None
    return path or None


def _children(value: object) -> Iterator[tuple[str, object]]:
    """Yield (path step, child) for the parts of a container or plain object."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield f"[{key!r}] (key)", key
            yield f"[{key!r}]", item
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield f"[{index}]", item
    elif isinstance(value, (set, frozenset)):
        for item in value:
            yield f"{{{item!r}}}", item
    else:
        attributes = getattr(value, "__dict__", None)
        if isinstance(attributes, dict):
            for name, item in attributes.items():
                yield f".{name}", item
