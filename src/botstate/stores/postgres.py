"""PostgreSQL: a store that several bot processes share, one row per record.

Three objects per store, created on first use (the table name is an option, and a schema may
hold them, so several bots can share one database):

* ``<table>``: one row per record ``(kind, key, value, version, grp, expires, updated)``;
* ``<table>_meta``: the stamp (format version, codec, creation time);
* ``<table>_version``: the sequence versions are drawn from, so a version never repeats.

The writes of a cycle are one transaction sent in one round trip (psycopg's pipeline mode):
lock the changed keys, remove expired rows among them, delete, upsert with a version check in
one statement, renew the expiry of the groups touched. Its cost follows the number of changed
records. Reads leave expired rows out; they are removed when their group is next written, and
all of them when a store is opened.

Blocking psycopg connections from a ``psycopg_pool.ConnectionPool``, on the persistence's worker
thread: see :mod:`botstate.stores.server` for why.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Final

import psycopg
import psycopg_pool
from psycopg import sql

from botstate.base import BD, CD, UD, PersistenceInput
from botstate.codecs import Codec, get_codec
from botstate.errors import StoreUnavailableError
from botstate.kinds import Kind
from botstate.persistence import Persistence
from botstate.stores.base import Delete, OnConflict, OnCorrupt, Row, Written
from botstate.stores.server import ServerStore, Ttl, group_of

__all__ = ["FORMAT_VERSION", "PostgresPersistence", "PostgresStore"]

_log = logging.getLogger(__name__)

#: The version of the table layout this release writes and reads.
FORMAT_VERSION: Final = 1

# {records}, {meta}, {sequence}, {index} and {schema} are filled in as quoted identifiers.
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS {meta} (name text PRIMARY KEY, value text NOT NULL)",
    "CREATE SEQUENCE IF NOT EXISTS {sequence}",
    """CREATE TABLE IF NOT EXISTS {records} (
        kind text NOT NULL,
        key text NOT NULL,
        value bytea NOT NULL,
        version bigint NOT NULL,
        grp text,
        expires timestamptz,
        updated timestamptz NOT NULL,
        PRIMARY KEY (kind, key)
    )""",
    "CREATE INDEX IF NOT EXISTS {index} ON {records} (grp) WHERE grp IS NOT NULL",
)

_LIVE = "(expires IS NULL OR expires > now())"

# Lock the changed keys in one order, so two writers of the same keys never deadlock; the
# statements after this one see every write committed before the locks were granted. Keys
# share one of _LOCK_SLOTS locks of the table: each lock takes a place in the server's lock
# table (max_locks_per_transaction), and a cycle of 100,000 changed keys must not run out.
_LOCK_SLOTS = 256
_LOCK = f"""
SELECT pg_advisory_xact_lock(hashtext(%(namespace)s), slot) FROM (
    SELECT DISTINCT (hashtextextended(%(namespace)s || k, 0) & {_LOCK_SLOTS - 1})::integer
        AS slot
    FROM unnest(%(addresses)s::text[]) AS k ORDER BY slot
) AS ordered
"""

# Two statements, each led by an index (the group index, the primary key): one statement
# with an OR of both conditions scans the whole table, a cost that grows with every record.
_PURGE_EXPIRED_GROUPS = (
    "DELETE FROM {records} WHERE grp = ANY(%(groups)s::text[]) AND expires <= now()"
)
_PURGE_EXPIRED_KEYS = """
DELETE FROM {records} AS r USING unnest(%(kinds)s::text[], %(keys)s::text[]) AS i(kind, key)
WHERE r.kind = i.kind AND r.key = i.key AND r.expires <= now()
"""

# A stale base is a conflict, unless the write finds what it would leave: its own value (a lost
# answer) or, for a delete, no record (stale_version in stores/base.py, in SQL).
# Both return per record: kind, key, new version (0 deleted, -1 refused), stored version when in
# conflict or -1.
_DELETE = """
WITH input AS (
    SELECT * FROM unnest(
        %(kinds)s::text[], %(keys)s::text[], %(bases)s::bigint[], %(strict)s::boolean[]
    ) AS i(kind, key, base, strict)
), checked AS (
    SELECT i.*, s.version AS stored,
        (i.base IS NOT NULL AND s.version IS NOT NULL AND i.base <> s.version) AS conflict
    FROM input AS i LEFT JOIN {records} AS s ON s.kind = i.kind AND s.key = i.key
), deleted AS (
    DELETE FROM {records} AS r USING checked AS c
    WHERE r.kind = c.kind AND r.key = c.key AND NOT (c.conflict AND c.strict)
)
SELECT kind, key, CASE WHEN conflict AND strict THEN -1 ELSE 0 END,
    CASE WHEN conflict THEN stored ELSE -1 END
FROM checked
"""

_UPSERT = """
WITH input AS (
    SELECT * FROM unnest(
        %(kinds)s::text[], %(keys)s::text[], %(values)b::bytea[], %(bases)s::bigint[],
        %(strict)s::boolean[], %(ttls)s::double precision[], %(groups)s::text[]
    ) AS i(kind, key, value, base, strict, ttl, grp)
), checked AS (
    SELECT i.*, s.version AS stored,
        (i.base IS NOT NULL AND i.base <> coalesce(s.version, 0)
         AND s.value IS DISTINCT FROM i.value) AS conflict
    FROM input AS i LEFT JOIN {records} AS s ON s.kind = i.kind AND s.key = i.key
), written AS (
    INSERT INTO {records} AS r (kind, key, value, version, grp, expires, updated)
    SELECT kind, key, value, nextval({sequence_name}), grp,
        CASE WHEN grp IS NULL THEN now() + make_interval(secs => ttl) END, now()
    FROM checked WHERE NOT (conflict AND strict)
    ON CONFLICT (kind, key) DO UPDATE SET
        value = excluded.value, version = excluded.version, grp = excluded.grp,
        expires = CASE WHEN excluded.grp IS NULL THEN excluded.expires ELSE r.expires END,
        updated = excluded.updated
    RETURNING r.kind, r.key, r.version
)
SELECT c.kind, c.key, coalesce(w.version, -1),
    CASE WHEN c.conflict THEN coalesce(c.stored, 0) ELSE -1 END
FROM checked AS c LEFT JOIN written AS w ON w.kind = c.kind AND w.key = c.key
"""

# The records of one group share one deadline: the later of the current one and now + ttl.
_RENEW_GROUPS = """
WITH renew AS (
    SELECT * FROM unnest(%(groups)s::text[], %(ttls)s::double precision[]) AS r(grp, ttl)
), deadline AS (
    SELECT r.grp, greatest(max(t.expires), now() + make_interval(secs => max(r.ttl))) AS at
    FROM renew AS r JOIN {records} AS t ON t.grp = r.grp GROUP BY r.grp
)
UPDATE {records} AS t SET expires = d.at
FROM deadline AS d WHERE t.grp = d.grp AND d.at IS NOT NULL
"""


class PostgresStore(ServerStore):
    """A record store in a PostgreSQL table, shared by every process that opens the same table.

    Args:
        dsn_or_pool: A ``postgresql://`` URL (or libpq connection string), or a
            ``psycopg_pool.ConnectionPool`` (botstate then uses it as configured and never
            closes it), or a ``psycopg_pool.AsyncConnectionPool``, whose connection settings
            botstate's own pool then uses.
        table: The records table; its stamp and version sequence take its name plus ``_meta``
            and ``_version``. Bots sharing one database need different tables or schemas.
        schema: The schema holding the three, created if missing. Defaults to None: the
            connection's ``search_path`` decides (``public`` normally).
        codec: ``"pickle"`` (default), ``"json"`` or a codec instance. The table remembers the
            codec it was created with and refuses another one.
        on_conflict: ``"keep"`` (default) or ``"raise"``; see :class:`PostgresPersistence`.
        ttl: Seconds without a write after which records expire; see
            :class:`PostgresPersistence`.
        on_corrupt: ``"raise"`` (default) or ``"skip"`` for records that cannot be decoded.
        retries: Tries again after a lost connection. Defaults to 2.
        max_backoff: The longest wait between two tries, in seconds. Defaults to 1.
        timeout: Seconds to wait for a connection (URL only). Defaults to 5.
    """

    def __init__(
        self,
        dsn_or_pool: str
        | psycopg_pool.ConnectionPool[Any]
        | psycopg_pool.AsyncConnectionPool[Any],
        table: str = "botstate_records",
        schema: str | None = None,
        codec: Codec | str | None = None,
        *,
        on_conflict: OnConflict = "keep",
        ttl: Ttl = None,
        on_corrupt: OnCorrupt = "raise",
        retries: int = 2,
        max_backoff: float = 1.0,
        timeout: float = 5.0,
    ) -> None:
        given: psycopg_pool.ConnectionPool[Any] | None = None
        if isinstance(dsn_or_pool, str):
            url = dsn = dsn_or_pool
        elif isinstance(dsn_or_pool, psycopg_pool.AsyncConnectionPool):
            # The store runs on the persistence's worker thread, off the event loop, where an
            # asyncio pool cannot serve: it opens a pool of its own with the same settings.
            url, dsn = _url_of(dsn_or_pool), str(dsn_or_pool.conninfo)
        elif isinstance(dsn_or_pool, psycopg_pool.ConnectionPool):
            url = dsn = _url_of(dsn_or_pool)
            given = dsn_or_pool
        else:
            raise TypeError(
                "dsn_or_pool must be a postgresql:// URL or a psycopg_pool.ConnectionPool or "
                f"AsyncConnectionPool, got {type(dsn_or_pool).__name__}"
            )
        for name, value in (("table", table), ("schema", schema)):
            if value is not None and (not value or "\x00" in value or len(value) > 50):
                raise ValueError(f"{name} must be a name of 1 to 50 characters, got {value!r}")
        super().__init__(
            get_codec(codec),
            f"{url}#{table if schema is None else f'{schema}.{table}'}",
            on_corrupt=on_corrupt,
            on_conflict=on_conflict,
            ttl=ttl,
            retries=retries,
            max_backoff=max_backoff,
        )
        self.table = table
        self.schema = schema
        self.timeout = timeout
        self._dsn = dsn
        self._given_pool = given
        self._pool_in_use: psycopg_pool.ConnectionPool[Any] | None = self._given_pool

        def named(suffix: str = "") -> sql.Identifier:
            parts = (self.table + suffix,) if schema is None else (schema, self.table + suffix)
            return sql.Identifier(*parts)

        self._names = {
            "records": named(),
            "meta": named("_meta"),
            "sequence": named("_version"),
            "index": sql.Identifier(self.table + "_grp"),
            # nextval() and to_regclass() take (quoted) names as text.
            "sequence_name": sql.Literal(named("_version").as_string()),
            "meta_name": sql.Literal(named("_meta").as_string()),
        }

    connection_errors = (psycopg.OperationalError, psycopg_pool.PoolTimeout)

    def _sql(self, template: str) -> sql.Composed:
        return sql.SQL(template).format(**self._names)

    # -- opening --------------------------------------------------------------------------------

    @property
    def _pool(self) -> psycopg_pool.ConnectionPool[Any]:
        if self._pool_in_use is None:
            # A pool that cannot connect only times out; one direct connection first says at
            # once that the server is down or refuses the login, with libpq's reason.
            self._probe()
            # A closed pool cannot be opened again: each opening of the store makes its own.
            self._pool_in_use = psycopg_pool.ConnectionPool(
                self._dsn,
                min_size=1,
                max_size=1,
                open=False,
                timeout=self.timeout,
                name=self.location,
                kwargs={"connect_timeout": max(1, round(self.timeout))},
            )
            self._pool_in_use.open(wait=False)
        return self._pool_in_use

    def _refused(self, exc: BaseException) -> bool:
        # A failed connection carries no SQLSTATE in psycopg; libpq's message says why.
        text = str(exc)
        return isinstance(exc, psycopg.OperationalError) and (
            "authentication failed" in text or ("role" in text and "does not exist" in text)
        )

    def _lost(self, exc: BaseException) -> bool:
        # No SQLSTATE: the connection failed. Classes 08 (connection), 57 (server shutting
        # down) and 40 (deadlock, serialization): trying again can help. Others, such as 53
        # (out of memory or locks), are the server refusing the work: reported as they are.
        state = getattr(exc, "sqlstate", None)
        return state is None or state[:2] in ("08", "57", "40")

    def _probe(self) -> None:
        """Connect once without the pool, which would only say it timed out: a server that
        is down or refuses the login is then known at once, with libpq's reason."""
        try:
            psycopg.connect(self._dsn, connect_timeout=max(1, round(self.timeout))).close()
        except psycopg.ProgrammingError as exc:
            # libpq refuses the connection string itself (an option it does not know).
            raise StoreUnavailableError(
                f"{self.location}: the URL is not one libpq accepts ({self._scrub(exc)})"
            ) from None

    def open(self) -> None:
        try:
            meta = self._retrying("connecting", self._prepare)
            self.check_stamp(meta, FORMAT_VERSION)
        except BaseException:
            self.close()  # an own pool would otherwise keep trying to connect
            raise
        _log.info(
            "opened %s (format %d, codec %s)", self.location, FORMAT_VERSION, self.codec.name
        )

    def _prepare(self) -> dict[str, str]:
        """Create what is missing, stamp a new table, remove expired rows; return the stamp."""
        with self._pool.connection() as connection, connection.transaction():
            # Two processes creating the same table at once would collide; one waits.
            connection.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                (f"botstate schema {self.location}",),
            )
            if self.schema is not None:
                connection.execute(
                    sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.schema))
                )
            for statement in _SCHEMA:
                connection.execute(self._sql(statement))
            stamp = [
                ("format_version", str(FORMAT_VERSION)),
                ("codec", self.codec.name),
                ("created", f"{time.time():.3f}"),
            ]
            with connection.cursor() as cursor:
                cursor.executemany(
                    self._sql(
                        "INSERT INTO {meta} (name, value) VALUES (%s, %s) ON CONFLICT DO NOTHING"
                    ),
                    stamp,
                )
            meta = dict(connection.execute(self._sql("SELECT name, value FROM {meta}")).fetchall())
            connection.execute(self._sql("DELETE FROM {records} WHERE expires <= now()"))
        return meta

    def close(self) -> None:
        if self._given_pool is None and self._pool_in_use is not None:
            self._pool_in_use.close()
            self._pool_in_use = None

    def _reconnect(self) -> None:
        # An own pool goes, so that the next try connects directly first: while the server
        # is down, tries then fail at once instead of each waiting for the pool's timeout.
        # (A given pool drops a connection that broke when it is returned.)
        self.close()

    # -- rows -----------------------------------------------------------------------------------

    def rows(self, kind: Kind, key_prefix: str = "") -> Iterator[Row]:
        def fetch() -> list[tuple[str, bytes, int]]:
            with self._pool.connection() as connection:
                return connection.execute(  # type: ignore[no-any-return]
                    self._sql(
                        "SELECT key, value, version FROM {records} "
                        f"WHERE kind = %s AND left(key, %s) = %s AND {_LIVE} ORDER BY key"
                    ),
                    (kind, len(key_prefix), key_prefix),
                ).fetchall()

        for key, value, version in self._retrying(f"reading {kind}", fetch):
            yield Row(kind, key, value, version)

    def row(self, kind: Kind, key: str) -> Row | None:
        def fetch() -> tuple[bytes, int] | None:
            with self._pool.connection() as connection:
                return connection.execute(  # type: ignore[no-any-return]
                    self._sql(
                        f"SELECT value, version FROM {{records}} WHERE kind = %s AND key = %s "
                        f"AND {_LIVE}"
                    ),
                    (kind, key),
                ).fetchone()

        found = self._retrying(f"reading {kind}", fetch)
        return None if found is None else Row(kind, key, found[0], found[1])

    def write_rows(self, upserts: Sequence[Row], deletes: Sequence[Delete]) -> Written[str]:
        changes: list[Row | Delete] = [*upserts, *deletes]
        changed = [(change.kind, change.key) for change in changes]
        renewals: dict[str, float | None] = {}
        for kind, key in changed:
            group = group_of(kind, key)
            if group is not None:
                ttl = self.ttl.get(kind)
                renewals[group] = max(filter(None, (renewals.get(group), ttl)), default=None)
        parameters: dict[str, Any] = {
            "namespace": self.location.rsplit("#", 1)[-1] + ":",
            "addresses": [f"{kind}:{key}" for kind, key in changed],
            "kinds": [kind for kind, _ in changed],
            "keys": [key for _, key in changed],
            "groups": list(renewals),
        }
        upsert = {
            "kinds": [row.kind for row in upserts],
            "keys": [row.key for row in upserts],
            "values": [row.data for row in upserts],
            "bases": [row.base for row in upserts],
            "strict": [self.refuses(row) for row in upserts],
            "ttls": [None if group_of(r.kind, r.key) else self.ttl.get(r.kind) for r in upserts],
            "groups": [group_of(row.kind, row.key) for row in upserts],
        }
        deleted = {
            "kinds": [delete.kind for delete in deletes],
            "keys": [delete.key for delete in deletes],
            "bases": [delete.base for delete in deletes],
            "strict": [self.refuses(delete) for delete in deletes],
        }
        renew = {"groups": list(renewals), "ttls": list(renewals.values())}

        def transaction() -> list[tuple[Kind, str, int, int]]:
            # Pipeline mode sends every statement and the commit together: one round trip.
            with self._pool.connection() as connection:
                with connection.pipeline(), connection.transaction():
                    connection.execute(_LOCK, parameters)
                    if renewals:
                        connection.execute(self._sql(_PURGE_EXPIRED_GROUPS), parameters)
                    connection.execute(self._sql(_PURGE_EXPIRED_KEYS), parameters)
                    cursors = []
                    if deletes:
                        cursors.append(connection.execute(self._sql(_DELETE), deleted))
                    if upserts:
                        cursors.append(connection.execute(self._sql(_UPSERT), upsert))
                    if renewals:
                        connection.execute(self._sql(_RENEW_GROUPS), renew)
                return [answer for cursor in cursors for answer in cursor.fetchall()]

        answers = self._retrying("writing", transaction)

        versions: dict[tuple[Kind, str], int] = {}
        conflicts: dict[tuple[Kind, str], int] = {}
        refused: set[tuple[Kind, str]] = set()
        for kind, key, version, found in answers:
            address = (kind, key)
            if version < 0:
                refused.add(address)
            else:
                versions[address] = version
            if found >= 0:
                conflicts[address] = found
        return Written(versions, conflicts, frozenset(refused))

    # -- for tools and tests --------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        """Return the stamped metadata and the time of the last write (Unix seconds)."""
        with self._pool.connection() as connection:
            meta = dict(connection.execute(self._sql("SELECT name, value FROM {meta}")).fetchall())
            (last,) = connection.execute(
                self._sql(
                    f"SELECT extract(epoch FROM max(updated)) FROM {{records}} WHERE {_LIVE}"
                )
            ).fetchone()
        return {**meta, "last_write": None if last is None else float(last)}

    def read_meta(self) -> dict[str, str] | None:
        def read() -> dict[str, str] | None:
            with self._pool.connection() as connection:
                (exists,) = connection.execute(
                    self._sql("SELECT to_regclass({meta_name})")
                ).fetchone()
                if exists is None:
                    return None
                rows = connection.execute(self._sql("SELECT name, value FROM {meta}")).fetchall()
                return dict(rows) or None

        return self._retrying("reading the stamp", read)

    def write_meta(self, entries: Mapping[str, str | None]) -> None:
        def write() -> None:
            with self._pool.connection() as connection, connection.transaction():
                for name, value in entries.items():
                    if value is None:
                        connection.execute(
                            self._sql("DELETE FROM {meta} WHERE name = %s"), (name,)
                        )
                    else:
                        connection.execute(
                            self._sql(
                                "INSERT INTO {meta} (name, value) VALUES (%s, %s) "
                                "ON CONFLICT (name) DO UPDATE SET value = excluded.value"
                            ),
                            (name, value),
                        )

        self._retrying("stamping", write)

    def count(self, kind: Kind) -> int:
        def fetch() -> int:
            with self._pool.connection() as connection:
                (found,) = connection.execute(
                    self._sql(f"SELECT count(*) FROM {{records}} WHERE kind = %s AND {_LIVE}"),
                    (kind,),
                ).fetchone()
            return int(found)

        return self._retrying(f"counting {kind}", fetch)

    def destroy(self) -> None:
        """Drop the table, its stamp and its sequence. For tests and tools."""
        with self._pool.connection() as connection, connection.transaction():
            for name in ("records", "meta", "sequence"):
                kind = "SEQUENCE" if name == "sequence" else "TABLE"
                connection.execute(
                    sql.SQL(f"DROP {kind} IF EXISTS {{}}").format(self._names[name])
                )


def _url_of(pool: psycopg_pool.ConnectionPool[Any] | psycopg_pool.AsyncConnectionPool[Any]) -> str:
    """A URL naming the server of *pool*, without its password, for messages."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(str(pool.conninfo))
    except psycopg.ProgrammingError:
        return "postgresql://?"
    host = info.get("host", "")
    port = f":{info['port']}" if "port" in info else ""
    user = f"{info['user']}@" if "user" in info else ""
    return f"postgresql://{user}{host}{port}/{info.get('dbname', '')}"


class PostgresPersistence(Persistence[UD, CD, BD]):
    """Persistence in PostgreSQL, for bots that run as several processes.

    Each user, chat and conversation is a row of its own with a version. The writes of a cycle
    are one transaction in one round trip. Every process on the same table sees the others'
    writes: ``refresh_*`` loads a newer stored version before each handler, and a write based on
    a version another process replaced is a conflict.

    Args:
        dsn_or_pool: ``postgresql://user[:password]@host:port/database``, a libpq connection
            string, or a ``psycopg_pool.ConnectionPool``.
        table: The records table. Defaults to ``"botstate_records"``.
        schema: The schema of the table, created if missing. Defaults to the search path's.
        store_data: Which kinds to store. Defaults to all of them.
        update_interval: Seconds between two persistence updates of the application.
        context_types: python-telegram-bot's ``ContextTypes``, for the ``bot_data`` factory.
        codec: ``"pickle"`` (default), ``"json"`` or a codec instance.
        on_flush: When True, nothing is written until :meth:`flush`. Defaults to False.
        on_conflict: ``"keep"`` (default) or ``"raise"``; see
            :class:`~botstate.stores.redis.RedisPersistence`.
        ttl: Seconds without a write after which records expire; see
            :class:`~botstate.stores.redis.RedisPersistence`.
        on_corrupt: ``"raise"`` (default) or ``"skip"`` for records that cannot be decoded.
        retries: Tries again after a lost connection, with a doubling delay. Defaults to 2.
        max_backoff: The longest wait between two tries, in seconds. Defaults to 1.
        timeout: Seconds to wait for a connection. Defaults to 5.
    """

    def __init__(
        self,
        dsn_or_pool: str
        | psycopg_pool.ConnectionPool[Any]
        | psycopg_pool.AsyncConnectionPool[Any],
        table: str = "botstate_records",
        store_data: PersistenceInput | None = None,
        update_interval: float = 60,
        context_types: Any = None,
        *,
        schema: str | None = None,
        codec: Codec | str | None = None,
        on_flush: bool = False,
        on_conflict: OnConflict = "keep",
        ttl: Ttl = None,
        on_corrupt: OnCorrupt = "raise",
        retries: int = 2,
        max_backoff: float = 1.0,
        timeout: float = 5.0,
    ) -> None:
        store = PostgresStore(
            dsn_or_pool,
            table,
            schema,
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
