"""Open any store from a URL: ``botstate.from_url("sqlite:///var/lib/bot/state.db")``.

========================= ==============================================================
URL                       persistence
========================= ==============================================================
``sqlite:///abs/bot.db``  :class:`~botstate.SQLitePersistence` on ``/abs/bot.db``
``sqlite://bot.db``       the same, on ``bot.db`` relative to the working directory
``pickle:///abs/bot.pkl`` :class:`~botstate.PicklePersistence`; ``?single_file=false`` for
                          the one-file-per-kind layout
``json:///abs/bot.json``  :class:`~botstate.JSONPersistence`; ``?single_file=false`` likewise
``memory://``             :class:`~botstate.MemoryPersistence` (new and empty each time)
``redis://host:port/db``  :class:`~botstate.RedisPersistence`; ``rediss://`` for TLS;
                          ``?prefix=mybot`` for the key prefix
``postgresql://u@h/db``   :class:`~botstate.PostgresPersistence` (``postgres://`` too);
                          ``?table=...&schema=...``
a bare path               recognised by its contents (SQLite header, pickle, JSON, or the
                          ``_user_data``... files of the one-file-per-kind layout)
========================= ==============================================================

A server URL whose driver is not installed raises ``ImportError`` naming the extra to install
(``pip install 'botstate[redis]'``).

Query parameters become keyword options (``?codec=json&synchronous=FULL``); values ``true``
and ``false`` become booleans and numbers become numbers. Options given to :func:`from_url`
take precedence over the query. For the server URLs, query parameters that are not options of
the persistence stay in the URL for the driver (``?sslmode=require``).

Each scheme is one entry of :data:`SCHEMES`; a backend module registers its own.
"""

from __future__ import annotations

import importlib
import inspect
import re
import urllib.parse
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, cast

from botstate.kinds import KINDS
from botstate.persistence import Persistence

__all__ = ["NEW_FILE_SCHEMES", "SCHEMES", "from_url", "guess_url", "mask_url"]

Opener = Callable[[urllib.parse.SplitResult, dict[str, Any]], Persistence[Any, Any, Any]]

#: Scheme name to the function that opens a persistence for a URL of that scheme.
SCHEMES: dict[str, Opener] = {}


def from_url(url: str | Path, **options: Any) -> Persistence[Any, Any, Any]:
    """Return the persistence a URL names; see the module documentation for the forms.

    Args:
        url: A URL, or a path to an existing file recognised by its contents.
        options: Keyword arguments for the persistence class; they override the URL's query.

    Raises:
        ValueError: For an unknown scheme or a path whose format cannot be recognised; the
            message names the URL with its password masked.
    """
    text = str(url)
    if "://" not in text:
        text = guess_url(Path(text))
    parts = urllib.parse.urlsplit(text)
    opener = SCHEMES.get(parts.scheme)
    if opener is None:
        known = ", ".join(f"{scheme}://" for scheme in sorted(SCHEMES))
        raise ValueError(f"unknown store URL {mask_url(text)!r}; botstate opens {known}")
    merged = {
        key: _option_value(values[-1])
        for key, values in urllib.parse.parse_qs(parts.query, keep_blank_values=True).items()
    }
    merged.update(options)
    try:
        return opener(parts, merged)
    except TypeError as exc:
        # An option the persistence does not take (a typo in the query, most often).
        if "unexpected keyword argument" not in str(exc):
            raise
        raise ValueError(f"{mask_url(text)}: {exc}") from exc


#: File name endings that say which store a path names when there is nothing there yet.
NEW_FILE_SCHEMES = {
    ".db": "sqlite",
    ".sqlite": "sqlite",
    ".sqlite3": "sqlite",
    ".pickle": "pickle",
    ".pkl": "pickle",
    ".json": "json",
}


def guess_url(path: Path, *, new: bool = False) -> str:
    """Return the URL of an existing store at *path*, recognised by its contents.

    Args:
        path: The file, or the prefix of the one-file-per-kind layout.
        new: When nothing is at *path*, name a new store by the file name's ending instead
            (:data:`NEW_FILE_SCHEMES`: ``bot.db`` is SQLite, ``bot.pickle`` pickle...).

    Raises:
        ValueError: When nothing at *path* looks like a store botstate knows.
    """
    if path.is_file():
        head = _head(path, 16)
        if head.startswith(b"SQLite format 3\x00"):
            return f"sqlite://{path}"
        if head[:1] == b"\x80":
            return f"pickle://{path}"
        if head.lstrip()[:1] == b"{" and "json" in SCHEMES:
            return f"json://{path}"
        raise ValueError(
            f"{path} is not a store botstate recognises (not SQLite, pickle or JSON); "
            "give a URL such as sqlite:///path/bot.db"
        )
    files = [Path(f"{path}_{kind}") for kind in KINDS if Path(f"{path}_{kind}").is_file()]
    if files:
        # A JSON file of a kind without data may hold just null; any other starts with {.
        heads = {_head(file, 1) for file in files}
        scheme = "json" if b"{" in heads and "json" in SCHEMES else "pickle"
        return f"{scheme}://{path}?single_file=false"
    if path.is_dir():
        raise ValueError(f"{path} is a folder, not a store botstate recognises")
    if path.exists():
        raise ValueError(f"{path} is not a regular file (a device, pipe or socket)")
    if new and path.suffix.lower() in NEW_FILE_SCHEMES:
        return f"{NEW_FILE_SCHEMES[path.suffix.lower()]}://{path}"
    raise ValueError(f"{path} does not exist; give a URL such as sqlite:///path/bot.db")


def _head(path: Path, size: int) -> bytes:
    """The first *size* bytes of *path*; an unreadable file is a ``ValueError`` naming it."""
    try:
        with path.open("rb") as file:
            return file.read(size)
    except OSError as exc:
        raise ValueError(f"{path} cannot be read: {exc.strerror or exc}") from exc


def mask_url(url: str) -> str:
    """Return *url* with any password replaced by ``***``: in ``user:password@`` and in a
    ``password=`` (or ``sslpassword=``...) query parameter or connection string entry."""
    url = re.sub(r"(://[^/:@]*:)[^@/]*@", r"\1***@", url)
    return re.sub(r"((?:^|[?&;\s])[a-z_]*password=)('[^']*'|[^&#\s]*)", r"\1***", url, flags=re.I)


def url_path(parts: urllib.parse.SplitResult) -> Path:
    """The file path of a file URL: ``scheme:///abs`` is absolute, ``scheme://rel`` relative."""
    path = urllib.parse.unquote(parts.netloc + parts.path)
    if not path:
        raise ValueError(f"{parts.scheme}:// URL without a path: {mask_url(parts.geturl())!r}")
    return Path(path)


def _option_value(text: str) -> Any:
    lowered = text.lower()
    if lowered in ("true", "yes", "on"):
        return True
    if lowered in ("false", "no", "off"):
        return False
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    if re.fullmatch(r"-?\d+\.\d*", text):
        return float(text)
    return text


# What the annotation of a persistence's parameter says a URL option's value must be.
_OPTION_TYPES: dict[str, tuple[type, ...]] = {
    "bool": (bool,),
    "int": (int,),
    "float": (int, float),
    "Ttl": (int, float, Mapping, type(None)),
}


def _checked(
    persistence: Callable[..., object],
    parts: urllib.parse.SplitResult,
    options: dict[str, Any],
) -> dict[str, Any]:
    """*options*, once each value has the type *persistence* takes: a number where it takes
    a number, ``true`` or ``false`` where it takes a flag (``?single_file=maybe`` is an error
    naming the URL, not a file layout chosen by a guess)."""
    parameters = inspect.signature(persistence).parameters
    for name, value in options.items():
        parameter = parameters.get(name)
        if parameter is None or not isinstance(parameter.annotation, str):
            continue
        wanted = _OPTION_TYPES.get(parameter.annotation.removesuffix(" | None"))
        if wanted is None or (value is None and parameter.annotation.endswith(" | None")):
            continue
        if (isinstance(value, bool) and bool not in wanted) or not isinstance(value, wanted):
            names: dict[tuple[type, ...], str] = {
                (bool,): "true or false",
                (int,): "a whole number",
            }
            what = names.get(wanted, "a number")
            url = f"{parts.scheme}://{parts.netloc}{parts.path}?{parts.query}"
            raise ValueError(f"{mask_url(url)}: option {name} must be {what}, got {value!r}")
    return options


def _open_sqlite(
    parts: urllib.parse.SplitResult, options: dict[str, Any]
) -> Persistence[Any, Any, Any]:
    from botstate.stores.sqlite import SQLitePersistence

    return SQLitePersistence(url_path(parts), **_checked(SQLitePersistence, parts, options))


def _open_pickle(
    parts: urllib.parse.SplitResult, options: dict[str, Any]
) -> Persistence[Any, Any, Any]:
    from botstate.stores.files import PicklePersistence

    return PicklePersistence(url_path(parts), **_checked(PicklePersistence, parts, options))


def _open_json(
    parts: urllib.parse.SplitResult, options: dict[str, Any]
) -> Persistence[Any, Any, Any]:
    from botstate.stores.files import JSONPersistence

    return JSONPersistence(url_path(parts), **_checked(JSONPersistence, parts, options))


def _open_memory(
    parts: urllib.parse.SplitResult, options: dict[str, Any]
) -> Persistence[Any, Any, Any]:
    from botstate.stores.memory import MemoryPersistence

    return MemoryPersistence(**_checked(MemoryPersistence, parts, options))


def _open_redis(
    parts: urllib.parse.SplitResult, options: dict[str, Any]
) -> Persistence[Any, Any, Any]:
    persistence = _server_class("redis", "RedisPersistence", parts.scheme, "redis")
    url, ours = _server_url(parts, options, persistence)
    return persistence(url, **ours)


def _open_postgres(
    parts: urllib.parse.SplitResult, options: dict[str, Any]
) -> Persistence[Any, Any, Any]:
    persistence = _server_class("postgres", "PostgresPersistence", parts.scheme, "postgres")
    url, ours = _server_url(parts._replace(scheme="postgresql"), options, persistence)
    return persistence(url, **ours)


def _server_class(
    module: str, name: str, scheme: str, extra: str
) -> Callable[..., Persistence[Any, Any, Any]]:
    """The persistence class of a server store; when its driver is not installed, an
    ``ImportError`` naming the extra to install."""
    try:
        found = getattr(importlib.import_module(f"botstate.stores.{module}"), name)
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] not in ("redis", "psycopg", "psycopg_pool"):
            raise
        raise ImportError(
            f"{scheme}:// URLs need the {extra} driver, which is not installed ({exc}): "
            f"pip install 'botstate[{extra}]'"
        ) from exc
    return cast("Callable[..., Persistence[Any, Any, Any]]", found)


def _server_url(
    parts: urllib.parse.SplitResult, options: dict[str, Any], persistence: Callable[..., object]
) -> tuple[str, dict[str, Any]]:
    """Split *options* into the persistence's keywords and the driver's URL query."""
    accepted = inspect.signature(persistence).parameters
    ours = _checked(
        persistence, parts, {name: value for name, value in options.items() if name in accepted}
    )
    query = [
        (name, value)
        for name, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        if name not in accepted
    ]
    return parts._replace(query=urllib.parse.urlencode(query)).geturl(), ours


SCHEMES.update(
    sqlite=_open_sqlite,
    pickle=_open_pickle,
    json=_open_json,
    memory=_open_memory,
    redis=_open_redis,
    rediss=_open_redis,
    postgresql=_open_postgres,
    postgres=_open_postgres,
)
