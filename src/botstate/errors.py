"""The exceptions botstate raises.

Every botstate exception derives from :class:`BotStateError`, and each also derives from the
built-in exception that fits it best, so code that already catches ``ValueError`` or
``OSError`` keeps working.
"""

from __future__ import annotations

__all__ = [
    "BotStateError",
    "ConflictError",
    "CorruptDataError",
    "EncodingError",
    "FormatVersionError",
    "StoreLockedError",
    "StoreUnavailableError",
    "UnsafeDataError",
    "WriteError",
]


class BotStateError(Exception):
    """Base class of every error botstate raises."""


class CorruptDataError(BotStateError, ValueError):
    """Stored data exists but cannot be read or decoded.

    The message names the file or URL and, where known, the kind and key of the record. botstate
    never treats such data as empty and never writes over it.

    Attributes:
        location: The file path or (password-masked) URL of the store.
        kind: The kind of data (``"user_data"``, ...) when known, else None.
        key: The key of the record when known, else None.
    """

    def __init__(
        self,
        message: str,
        *,
        location: str | None = None,
        kind: str | None = None,
        key: object = None,
    ) -> None:
        super().__init__(message)
        self.location = location
        self.kind = kind
        self.key = key


class UnsafeDataError(CorruptDataError):
    """Stored data names a class or function that the codec's allow-list refuses to load."""


class FormatVersionError(CorruptDataError):
    """A store was written by a newer botstate format version than this one understands."""


class EncodingError(BotStateError, TypeError):
    """A value cannot be encoded by the codec in use.

    The message names the kind and key of the record and, where it could be found, the path of
    the offending part inside the value (for example ``user_data[42]['cart'][3]``).

    Attributes:
        kind: The kind of data, when known.
        key: The key of the record, when known.
        path: The path inside the value of the part that failed, when found.
    """

    def __init__(
        self,
        message: str,
        *,
        kind: str | None = None,
        key: object = None,
        path: str | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.key = key
        self.path = path


class WriteError(BotStateError, OSError):
    """A store could not durably write a batch; what was stored before is unchanged."""


class StoreLockedError(BotStateError, TimeoutError):
    """Another process held the store's write lock for longer than the configured wait."""


class StoreUnavailableError(BotStateError, ConnectionError):
    """A database server could not be reached, or the connection to it was lost.

    The message names the URL with its password masked. A batch interrupted this way was
    committed whole or not at all; the persistence writes its records again with the next one.
    """


class ConflictError(BotStateError, RuntimeError):
    """A write was based on a version of a record that another process has since replaced."""
