"""Redis: a store that several bot processes share, one hash per record.

Key layout under the prefix (``botstate`` by default; give each bot its own):

==================================== ===========================================================
key                                  holds
==================================== ===========================================================
``<prefix>:meta``                    hash: ``format_version``, ``codec``, ``created``
``<prefix>:clock``                   the last version handed out (versions never repeat)
``<prefix>:r:<kind>:<key text>``     hash of one record: ``d`` its encoded value, ``v`` its
                                     version
``<prefix>:i:<kind>``                set of the key texts of a kind, to load it whole
``<prefix>:g:<id>``                  set of the record keys that expire together (with ``ttl``)
==================================== ===========================================================

Key texts are those of :mod:`botstate.kinds`. The writes of a cycle are one Lua script: it runs
atomically on the server (no other client's command runs in between) and costs one round trip,
whatever the number of records; its cost follows the number of changed records. The script
checks each record's version against the one the change was based on, hands out new versions,
and renews the expiry of the records' groups.

The script touches keys it derives from its arguments, which a single Redis server (with or
without replicas) allows; Redis Cluster, which needs every key declared, is not supported.

Blocking redis-py client on the persistence's worker thread: see :mod:`botstate.stores.server`
for why.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import partial
from typing import Any, Final, cast

import redis
import redis.asyncio
from redis.backoff import NoBackoff
from redis.retry import Retry

from botstate.base import BD, CD, UD, PersistenceInput
from botstate.codecs import Codec, get_codec
from botstate.errors import StoreUnavailableError
from botstate.kinds import Kind
from botstate.persistence import Persistence
from botstate.stores.base import Delete, OnConflict, OnCorrupt, Row, Written
from botstate.stores.server import ServerStore, Ttl, group_of

__all__ = ["FORMAT_VERSION", "RedisPersistence", "RedisStore"]

_log = logging.getLogger(__name__)

#: The version of the key layout this release writes and reads.
FORMAT_VERSION: Final = 1

#: Records fetched per round trip when a whole kind is loaded.
_LOAD_CHUNK: Final = 500

# Arguments: prefix, then eight per record: op ("u" upsert, "d" delete), kind, key text, data,
# base version ("" unknown), "1" to refuse the write on a conflict, time-to-live in ms ("" none),
# group id ("" none).
# Returns per record: {kind, key, new version (0 deleted, -1 refused), stored version or -1}.
_WRITE_SCRIPT = """
local prefix = ARGV[1]
local results, renewals = {}, {}
local now = redis.call('TIME')
now = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
-- Each change is two arguments: its fields joined by NUL (which no key text holds), and its data.
local function fields(text)
  local out, start = {}, 1
  while true do
    local stop = string.find(text, '\\0', start, true)
    if not stop then
      out[#out + 1] = string.sub(text, start)
      return out
    end
    out[#out + 1] = string.sub(text, start, stop - 1)
    start = stop + 1
  end
end
for i = 2, #ARGV, 2 do
  local f = fields(ARGV[i])
  local op, kind, key, data = f[1], f[2], f[3], ARGV[i + 1]
  local base, strict, ttl, group = f[4], f[5] == '1', f[6], f[7]
  local record = prefix .. ':r:' .. kind .. ':' .. key
  local stored = redis.call('HMGET', record, 'v', 'd')
  local version = tonumber(stored[1]) or 0
  -- A stale base is a conflict, unless the write finds what it would leave: its own value (a
  -- lost answer) or, for a delete, no record (stale_version in stores/base.py, in Lua).
  local differs = (op == 'u' and stored[2] ~= data) or (op == 'd' and version ~= 0)
  local conflict = base ~= '' and tonumber(base) ~= version and differs
  local found = conflict and version or -1
  if conflict and strict then
    results[#results + 1] = -1
    results[#results + 1] = found
  elseif op == 'd' then
    redis.call('DEL', record)
    redis.call('SREM', prefix .. ':i:' .. kind, key)
    if group ~= '' then redis.call('SREM', prefix .. ':g:' .. group, record) end
    results[#results + 1] = 0
    results[#results + 1] = found
  else
    local new = redis.call('INCR', prefix .. ':clock')
    redis.call('HSET', record, 'd', data, 'v', new)
    redis.call('SADD', prefix .. ':i:' .. kind, key)
    if group ~= '' then
      redis.call('SADD', prefix .. ':g:' .. group, record)
      renewals[group] = math.max(renewals[group] or 0, tonumber(ttl) or 0)
    elseif ttl ~= '' then
      redis.call('PEXPIRE', record, ttl)
    else
      redis.call('PERSIST', record)
    end
    results[#results + 1] = new
    results[#results + 1] = found
  end
end
-- The records of one group share one deadline: the later of the current one and now + ttl.
for group, ttl in pairs(renewals) do
  local members = prefix .. ':g:' .. group
  local left = redis.call('PTTL', members)
  local deadline = left > 0 and now + left or 0
  if ttl > 0 and now + ttl > deadline then deadline = now + ttl end
  if deadline > 0 then
    for _, record in ipairs(redis.call('SMEMBERS', members)) do
      redis.call('PEXPIREAT', record, deadline)
    end
    redis.call('PEXPIREAT', members, deadline)
  end
end
return results
"""


class RedisStore(ServerStore):
    """A record store in Redis, shared by every process that opens the same prefix.

    Args:
        url_or_client: A ``redis://``, ``rediss://`` (TLS) or ``unix://`` URL, or a
            ``redis.Redis`` client (botstate then uses it as configured and never closes it), or a
            ``redis.asyncio.Redis`` client, whose server, database and credentials botstate's
            own connections then use.
        prefix: The start of every key; bots sharing one server need different prefixes.
        codec: ``"pickle"`` (default), ``"json"`` or a codec instance. The prefix remembers the
            codec it was created with and refuses another one.
        on_conflict: ``"keep"`` (default) or ``"raise"``; see :class:`RedisPersistence`.
        ttl: Seconds without a write after which records expire; see :class:`RedisPersistence`.
        on_corrupt: ``"raise"`` (default) or ``"skip"`` for records that cannot be decoded.
        retries: Tries again after a lost connection. Defaults to 2.
        max_backoff: The longest wait between two tries, in seconds. Defaults to 1.
        timeout: Seconds to wait for the server to connect or answer (URL only). Defaults to 5.
    """

    def __init__(
        self,
        url_or_client: str | redis.Redis | redis.asyncio.Redis,
        prefix: str = "botstate",
        codec: Codec | str | None = None,
        *,
        on_conflict: OnConflict = "keep",
        ttl: Ttl = None,
        on_corrupt: OnCorrupt = "raise",
        retries: int = 2,
        max_backoff: float = 1.0,
        timeout: float = 5.0,
    ) -> None:
        if isinstance(url_or_client, redis.asyncio.Redis):
            # The store runs on the persistence's worker thread, off the event loop, where an
            # asyncio client cannot serve: it opens connections of its own, same settings.
            url = _url_of(url_or_client)
            self._own_client = True
            self._client: redis.Redis = _blocking_twin(url_or_client, timeout)
        elif isinstance(url_or_client, str):
            url = url_or_client
            self._own_client = True
            self._client = redis.Redis.from_url(
                url,
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
                retry=Retry(NoBackoff(), 0),  # _retrying is the only retry layer
            )
        elif isinstance(url_or_client, redis.Redis):
            url = _url_of(url_or_client)
            self._own_client = False
            self._client = url_or_client
        else:
            raise TypeError(
                f"url_or_client must be a redis:// URL or a redis.Redis client, got "
                f"{type(url_or_client).__name__}"
            )
        if not prefix or any(char.isspace() for char in prefix):
            raise ValueError(f"prefix must be a non-empty word, got {prefix!r}")
        super().__init__(
            get_codec(codec),
            f"{url}#{prefix}",
            on_corrupt=on_corrupt,
            on_conflict=on_conflict,
            ttl=ttl,
            retries=retries,
            max_backoff=max_backoff,
        )
        self.prefix = prefix
        self._script = self._client.register_script(_WRITE_SCRIPT)

    connection_errors = (redis.ConnectionError, redis.TimeoutError)

    def _refused(self, exc: BaseException) -> bool:
        return isinstance(exc, redis.AuthenticationError)

    # -- opening --------------------------------------------------------------------------------

    def open(self) -> None:
        meta_key = f"{self.prefix}:meta"
        stamp = {
            "format_version": str(FORMAT_VERSION),
            "codec": self.codec.name,
            "created": f"{time.time():.3f}",
        }

        def stamp_and_read() -> dict[bytes, bytes]:
            # HSETNX keeps the stamp of whoever created the prefix first, even in a race.
            with self._client.pipeline(transaction=True) as pipe:
                for name, value in stamp.items():
                    pipe.hsetnx(meta_key, name, value)
                pipe.hgetall(meta_key)
                return dict(pipe.execute()[-1])

        meta = self._stamp("connecting", stamp_and_read)
        self.check_stamp({k.decode(): v.decode() for k, v in meta.items()}, FORMAT_VERSION)
        _log.info(
            "opened %s (format %d, codec %s)", self.location, FORMAT_VERSION, self.codec.name
        )

    def _stamp(self, what: str, operation: Callable[[], dict[bytes, bytes]]) -> dict[bytes, bytes]:
        """Run the first operation on the server: one it answers with a refusal (a database
        number it does not have, a user not allowed these commands) opens no store."""
        try:
            return self._retrying(what, operation)
        except redis.ResponseError as exc:
            raise StoreUnavailableError(
                f"{self.location}: {what} failed, the server refused: {self._scrub(exc)}"
            ) from None
        except TypeError as exc:
            # redis-py hands the URL's query to its connections as keywords.
            raise StoreUnavailableError(
                f"{self.location}: the URL holds an option redis-py does not take "
                f"({self._scrub(exc)})"
            ) from None

    def close(self) -> None:
        if self._own_client:
            self._client.connection_pool.disconnect()

    def _reconnect(self) -> None:
        self._client.connection_pool.disconnect()

    # -- rows -----------------------------------------------------------------------------------

    def _record_key(self, kind: str, key: str) -> str:
        return f"{self.prefix}:r:{kind}:{key}"

    def rows(self, kind: Kind, key_prefix: str = "") -> Iterator[Row]:
        index = self._index(kind)

        def members() -> list[str]:
            found: set[bytes] = self._client.smembers(index)  # type: ignore[assignment]
            return sorted(key for key in (m.decode() for m in found) if key.startswith(key_prefix))

        keys = self._retrying(f"reading {kind}", members)
        for start in range(0, len(keys), _LOAD_CHUNK):
            chunk = keys[start : start + _LOAD_CHUNK]
            found = self._retrying(f"reading {kind}", partial(self._fetch, kind, chunk))
            expired = [key for key, row in zip(chunk, found, strict=True) if row is None]
            yield from (row for row in found if row is not None)
            if expired:
                # Records expire on their own; their index entries are removed here.
                self._retrying(f"cleaning {kind}", partial(self._client.srem, index, *expired))

    def _fetch(self, kind: Kind, keys: Sequence[str]) -> list[Row | None]:
        with self._client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hmget(self._record_key(kind, key), "d", "v")
            answers = pipe.execute(raise_on_error=False)
        return [_row(kind, key, answer) for key, answer in zip(keys, answers, strict=True)]

    def row(self, kind: Kind, key: str) -> Row | None:
        return self._retrying(f"reading {kind}", lambda: self._fetch(kind, [key]))[0]

    def write_rows(self, upserts: Sequence[Row], deletes: Sequence[Delete]) -> Written[str]:
        arguments: list[Any] = [self.prefix]
        changes: list[Row | Delete] = [*deletes, *upserts]
        for change in changes:
            ttl = self.ttl.get(change.kind)
            # Two arguments per change (the script splits the first): every argument costs
            # the client and the server a round of encoding, with hundreds per cycle.
            header = "\0".join(
                [
                    "u" if isinstance(change, Row) else "d",
                    change.kind,
                    change.key,
                    "" if change.base is None else str(change.base),
                    "1" if self.refuses(change) else "",
                    "" if ttl is None else str(max(1, round(ttl * 1000))),
                    group_of(change.kind, change.key) or "",
                ]
            )
            arguments += [header, change.data if isinstance(change, Row) else b""]
        answers = self._retrying("writing", lambda: self._script(args=arguments))

        versions: dict[tuple[Kind, str], int] = {}
        conflicts: dict[tuple[Kind, str], int] = {}
        refused: set[tuple[Kind, str]] = set()
        # Two numbers per change, in order: its new version (0 deleted, -1 refused) and the
        # version found in conflict (-1: none).
        for change, version, found in zip(changes, answers[::2], answers[1::2], strict=True):
            address: tuple[Kind, str] = (change.kind, change.key)
            if version < 0:
                refused.add(address)
            else:
                versions[address] = version
            if found >= 0:
                conflicts[address] = found
        return Written(versions, conflicts, frozenset(refused))

    # -- for tools and tests --------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        """Return the stamped metadata."""
        return self.read_meta() or {}

    def read_meta(self) -> dict[str, str] | None:
        def read() -> dict[bytes, bytes]:
            return self._client.hgetall(f"{self.prefix}:meta")  # type: ignore[return-value]

        meta = self._stamp("reading the stamp", read)
        return {k.decode(): v.decode() for k, v in meta.items()} or None

    def write_meta(self, entries: Mapping[str, str | None]) -> None:
        def write() -> None:
            with self._client.pipeline(transaction=True) as pipe:
                for name, value in entries.items():
                    if value is None:
                        pipe.hdel(f"{self.prefix}:meta", name)
                    else:
                        pipe.hset(f"{self.prefix}:meta", name, value)
                pipe.execute()

        self._retrying("stamping", write)

    def count(self, kind: Kind) -> int:
        """The number of records of *kind*, counting expired ones not yet noticed."""
        found = self._retrying(f"counting {kind}", lambda: self._client.scard(self._index(kind)))
        return int(found)

    def _index(self, kind: str) -> str:
        return f"{self.prefix}:i:{kind}"

    def destroy(self) -> int:
        """Delete every key under the prefix; return how many. For tests and tools."""
        keys = list(self._client.scan_iter(match=f"{_glob_escape(self.prefix)}:*", count=1000))
        if keys:
            self._client.delete(*keys)
        return len(keys)


# The connection settings of an asyncio client that a blocking client takes as they are.
_SHARED_SETTINGS: Final = frozenset(
    {
        "host",
        "port",
        "db",
        "username",
        "password",
        "credential_provider",
        "client_name",
        "protocol",
        "ssl_keyfile",
        "ssl_certfile",
        "ssl_cert_reqs",
        "ssl_ca_certs",
        "ssl_ca_data",
        "ssl_check_hostname",
        "ssl_min_version",
        "ssl_ciphers",
    }
)


def _blocking_twin(client: redis.asyncio.Redis, timeout: float) -> redis.Redis:
    """A blocking client on the server, database and credentials of an asyncio *client*."""
    pool = client.connection_pool
    settings = {
        name: value for name, value in pool.connection_kwargs.items() if name in _SHARED_SETTINGS
    }
    if "path" in pool.connection_kwargs:
        settings["unix_socket_path"] = pool.connection_kwargs["path"]
    if "SSL" in pool.connection_class.__name__:
        settings["ssl"] = True
    return redis.Redis(
        **settings,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),  # _retrying is the only retry layer
    )


def _row(kind: Kind, key: str, answer: object) -> Row | None:
    """The row of one record from its ``HMGET d v`` answer; None when it is not stored (or
    expired), a row marked damaged when its hash is not what botstate writes."""
    if isinstance(answer, redis.ResponseError):
        return Row(kind, key, b"", damage=f"its Redis key does not hold a hash ({answer})")
    data, version = cast("list[bytes | None]", answer)
    if data is None and version is None:
        return None
    try:
        number = int(version or b"")
    except ValueError:
        number = None
    if data is None or number is None:
        return Row(kind, key, data or b"", damage="its hash lacks its value or version")
    return Row(kind, key, data, number)


def _url_of(client: redis.Redis | redis.asyncio.Redis) -> str:
    """A URL naming the server of *client*, without its password, for messages."""
    settings = client.connection_pool.connection_kwargs
    if "path" in settings:
        return f"unix://{settings['path']}"
    return (
        f"redis://{settings.get('host', '?')}:{settings.get('port', 6379)}/{settings.get('db', 0)}"
    )


def _glob_escape(text: str) -> str:
    return "".join(f"\\{char}" if char in "*?[]\\" else char for char in text)


class RedisPersistence(Persistence[UD, CD, BD]):
    """Persistence in Redis, for bots that run as several processes.

    Each user, chat and conversation is a hash of its own with a version. The writes of a cycle
    are one atomic script and one round trip. Every process on the same prefix sees the others'
    writes: ``refresh_*`` loads a newer stored version before each handler, and a write based on
    a version another process replaced is a conflict.

    Args:
        url_or_client: ``redis://[:password@]host:port/db``, ``rediss://...`` for TLS, or a
            ``redis.Redis`` client.
        prefix: The start of every key. Defaults to ``"botstate"``; bots sharing one server
            need different prefixes.
        store_data: Which kinds to store. Defaults to all of them.
        update_interval: Seconds between two persistence updates of the application.
        context_types: python-telegram-bot's ``ContextTypes``, for the ``bot_data`` factory.
        codec: ``"pickle"`` (default), ``"json"`` or a codec instance.
        on_flush: When True, nothing is written until :meth:`flush`. Defaults to False.
        on_conflict: What a write based on a replaced version does. ``"keep"`` (default): it
            is written (the newest write wins) and a warning names the kind and key.
            ``"raise"``: the stored record stays, the update raises
            :class:`~botstate.errors.ConflictError`, and the next refresh loads the stored value.
        ttl: Seconds without a write after which records expire: a number for the records
            of users and chats (data, conversation states and aiogram's states and data), or a
            mapping per kind such as ``{"user_data": 86400, "bot_data": 3600, "fsm": 3600}``.
            The records of one id (a user's data, a chat's data, the conversations keyed by it)
            share one deadline, which every write to one of them moves later; each aiogram key
            has a deadline of its own. Defaults to None: nothing expires.
        on_corrupt: ``"raise"`` (default) or ``"skip"`` for records that cannot be decoded.
        retries: Tries again after a lost connection, with a doubling delay. Defaults to 2.
        max_backoff: The longest wait between two tries, in seconds. Defaults to 1.
        timeout: Seconds to wait for the server to connect or answer. Defaults to 5.
    """

    def __init__(
        self,
        url_or_client: str | redis.Redis | redis.asyncio.Redis,
        prefix: str = "botstate",
        store_data: PersistenceInput | None = None,
        update_interval: float = 60,
        context_types: Any = None,
        *,
        codec: Codec | str | None = None,
        on_flush: bool = False,
        on_conflict: OnConflict = "keep",
        ttl: Ttl = None,
        on_corrupt: OnCorrupt = "raise",
        retries: int = 2,
        max_backoff: float = 1.0,
        timeout: float = 5.0,
    ) -> None:
        store = RedisStore(
            url_or_client,
            prefix,
            codec,
            on_conflict=on_conflict,
            ttl=ttl,
            on_corrupt=on_corrupt,
            retries=retries,
            max_backoff=max_backoff,
            timeout=timeout,
        )
        super().__init__(
            store,
            store_data=store_data,
            update_interval=update_interval,
            context_types=context_types,
            on_flush=on_flush,
        )
