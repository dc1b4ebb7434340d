"""The stores the benchmark compares, each one entry of :data:`CONTENDERS`.

A contender knows how to fill its store with a bot's initial state (:meth:`Contender.seed`) and
how to open it in a measuring process (:meth:`Contender.open`), which gives a :class:`Subject`:
load everything, run one cycle, flush, close. Persistences are driven through the calls
python-telegram-bot's application makes (:mod:`benchmarks.workload`); a floor is the least work
that stores the same records with the same database and durability, with no library around it.

A store added to botstate joins the benchmark as one more entry here, with the floor its cycle is
compared with named by ``floor``. The server stores (Redis, PostgreSQL) keep their data on a
server: their folder holds only a small file naming the server and the namespace (key prefix or
table) of the run, and a :class:`Server` copies and removes namespaces there, as the harness
copies and removes folders for the file stores.
"""

from __future__ import annotations

import asyncio
import json
import pickle
import shutil
import sqlite3
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Coroutine
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

from benchmarks.workload import (
    PersistenceLike,
    State,
    Touched,
    load_like_application,
    update_like_application,
)

__all__ = ["CONTENDERS", "SERVERS", "Contender", "Place", "Server", "Subject", "offline_bot"]


def offline_bot() -> Any:
    """A python-telegram-bot ``ExtBot`` that never reaches the network, as a bot's persistence
    gets from ``set_bot``: pickling then swaps it for a placeholder, as in a real bot."""
    from telegram.ext import ExtBot

    from botstate.testing import OfflineRequest

    return ExtBot(
        OfflineRequest.TOKEN, request=OfflineRequest(), get_updates_request=OfflineRequest()
    )


class Subject(ABC):
    """One store opened in the measuring process."""

    @abstractmethod
    async def load(self) -> State:
        """Load everything the application loads at start-up."""

    @abstractmethod
    async def cycle(self, state: State, touched: Touched) -> None:
        """Store what one cycle touched; return once it is stored."""

    async def flush(self) -> None:  # noqa: B027 (optional hook)
        """Write what is still held back, as the application does when it stops."""

    def full_write(self) -> float | None:
        """For a store that writes its whole state at once: the seconds one such write takes."""
        return None

    async def close(self) -> None:  # noqa: B027 (optional hook)
        """Release files, connections and threads."""


class PersistenceSubject(Subject):
    """A persistence, driven as python-telegram-bot's application drives it."""

    def __init__(self, persistence: Any) -> None:
        self.persistence = persistence

    async def load(self) -> State:
        return await load_like_application(self.persistence)

    async def cycle(self, state: State, touched: Touched) -> None:
        await update_like_application(self.persistence, state, touched)

    async def flush(self) -> None:
        await self.persistence.flush()

    async def close(self) -> None:
        close = getattr(self.persistence, "close", None)
        if close is not None:
            await close()


class SnapshotPersistenceSubject(PersistenceSubject):
    """botstate's ``PicklePersistence``, which can also time one write of its whole file."""

    def full_write(self) -> float:
        # The store alone, with no change: it encodes the whole state and replaces the file,
        # exactly as a cycle does after it has applied its changes.
        started = time.perf_counter()
        self.persistence.store.write([], self.persistence.bot)
        return time.perf_counter() - started


@dataclass(frozen=True)
class Contender:
    """One store in the comparison: a persistence (``make``) or a floor (``raw``).

    Attributes:
        name: Short name, used on the command line and in the results file.
        label: The name the tables and the chart show.
        filename: The file the store keeps in its folder (for a server store, the file naming
            its :class:`Place`).
        make: ``make(path, on_flush)`` returns a new persistence on *path*.
        subject: Wraps what ``make`` returned for measuring.
        raw: For a floor, its class.
        floor: The contender whose cycle is this one's lower bound (the "vs floor" column).
        max_work: Cycles are skipped where N times K exceeds this (the store's cycle grows with
            both and would take too long); None runs every cycle.
        is_reference: python-telegram-bot's own store, which "vs PTB" compares with.
        server: For a store on a database server, that server; its data is not in the folder.
        seed_chunk: Seed a persistence in writes of at most this many records; None seeds it
            in one write.
    """

    name: str
    label: str
    filename: str
    make: Callable[[Path, bool], Any] | None = None
    subject: Callable[[Any], Subject] = PersistenceSubject
    raw: type[Floor] | None = None
    floor: str | None = "sqlite-floor"
    max_work: int | None = None
    is_reference: bool = False
    server: Server | None = None
    seed_chunk: int | None = None

    def runs_cycle(self, n: int, k: int) -> bool:
        return self.max_work is None or n * k <= self.max_work

    def prepare(self, folder: Path, place: Place | None) -> None:
        """Make the empty *folder* of a new store; a server store's names *place*."""
        folder.mkdir(parents=True)
        if self.server is not None:
            if place is None:
                raise ValueError(f"{self.name} keeps its data on a server: it needs a place")
            place.write(folder / self.filename)

    async def seed(self, folder: Path, state: State, bot: Any) -> None:
        """Store *state* in a new store in *folder*, in as few writes as the store allows."""
        if self.raw is not None:
            self.raw.seed(folder / self.filename, state)
            return
        assert self.make is not None
        persistence = self.make(folder / self.filename, True)
        persistence.set_bot(bot)
        calls: list[Callable[[], Coroutine[Any, Any, None]]] = [
            partial(persistence.update_bot_data, state.bot_data)
        ]
        calls += [partial(persistence.update_user_data, i, d) for i, d in state.user_data.items()]
        calls += [partial(persistence.update_chat_data, i, d) for i, d in state.chat_data.items()]
        calls += [
            partial(persistence.update_conversation, name, key, value)
            for name, states in state.conversations.items()
            for key, value in states.items()
        ]
        subject = self.subject(persistence)
        chunk = self.seed_chunk or len(calls)
        try:
            for start in range(0, len(calls), chunk):
                await asyncio.gather(*(call() for call in calls[start : start + chunk]))
                await subject.flush()
        finally:
            # Also when interrupted: closing waits for the write under way, so that nothing
            # is written after the harness has removed the run's data from a server.
            await subject.close()

    async def copy(self, source: Path, target: Path, place: Place | None) -> None:
        """Make *target* a copy of the store seeded in *source*; on a server, at *place*."""
        if self.server is None:
            shutil.copytree(source, target)
            return
        self.prepare(target, place)
        assert place is not None
        if self.server.copies_into_new_store:
            await self.create(target)
        self.server.copy(Place.read(source / self.filename), place)

    async def create(self, folder: Path) -> None:
        """Open and close the store in *folder*, which creates what an empty one holds."""
        if self.raw is not None:
            self.raw(folder / self.filename).release()
            return
        assert self.make is not None
        async with self.make(folder / self.filename, True):
            pass

    def discard(self, folder: Path) -> None:
        """Remove the store in *folder*, on its server too."""
        place_file = folder / self.filename
        if self.server is not None and place_file.is_file():
            self.server.remove(Place.read(place_file))
        shutil.rmtree(folder, ignore_errors=True)

    def open(self, folder: Path, bot: Any) -> Subject:
        """Open the store in *folder* for measuring."""
        if self.raw is not None:
            return self.raw(folder / self.filename)
        assert self.make is not None
        persistence = self.make(folder / self.filename, False)
        persistence.set_bot(bot)
        return self.subject(persistence)


# -- database servers ----------------------------------------------------------------------------

#: The start of every Redis key prefix and PostgreSQL table name the benchmark creates.
NAMESPACE_START = "bsbench"

#: What a server store keeps in its folder: the file naming its :class:`Place`.
PLACE_FILE = "server.json"


@dataclass(frozen=True)
class Place:
    """Where on a server one store keeps its data: a Redis key prefix or a PostgreSQL table."""

    server: str
    url: str
    namespace: str

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self)) + "\n", encoding="utf-8")

    @classmethod
    def read(cls, path: Path) -> Place:
        return cls(**json.loads(path.read_text(encoding="utf-8")))


class Server(ABC):
    """A database server the benchmark's server stores keep their data on.

    Every namespace the benchmark creates starts with :data:`NAMESPACE_START` and the run's
    random token, so that :meth:`sweep` removes all of a run's and nothing of another's.
    """

    name: ClassVar[str]
    title: ClassVar[str]
    default_url: ClassVar[str]
    #: The modules of its client and store, imported before a load is timed: a bot imports
    #: them once at start-up, whatever it then loads.
    modules: ClassVar[tuple[str, ...]]
    #: Whether a copy goes into a store created empty first (by the contender itself, so that
    #: it holds exactly the objects the store makes) rather than a bare namespace.
    copies_into_new_store: ClassVar[bool] = False

    def namespace(self, token: str, label: str) -> str:
        """The namespace of the store with *label* (its folder's name) in the run *token*."""
        return f"{NAMESPACE_START}-{token}-{label}"

    @abstractmethod
    def pattern(self, token: str) -> str:
        """What every name of the run *token* matches, as the server's tools write it."""

    @abstractmethod
    def unavailable(self, url: str) -> str | None:
        """Why the server at *url* cannot be used, or None when it answers."""

    @abstractmethod
    def describe(self, url: str) -> str:
        """The server's version and the settings its write times depend on."""

    @abstractmethod
    def copy(self, source: Place, target: Place) -> None:
        """Copy everything of *source* into *target*, on the server."""

    @abstractmethod
    def remove(self, place: Place) -> None:
        """Delete everything the store at *place* keeps."""

    @abstractmethod
    def leftovers(self, url: str, token: str) -> list[str]:
        """The names of the run *token* still on the server."""

    @abstractmethod
    def sweep(self, url: str, token: str) -> int:
        """Delete everything of the run *token*; return how many keys or relations."""


class RedisServer(Server):
    """Redis: a namespace is a key prefix; a copy is one ``COPY`` per key."""

    name = "redis"
    title = "Redis"
    default_url = "redis://127.0.0.1:6379/0"
    modules = ("redis", "botstate.stores.redis")

    def _client(self, url: str) -> Any:
        import redis

        return redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=120)

    def pattern(self, token: str) -> str:
        return f"{NAMESPACE_START}-{token}-*"

    def unavailable(self, url: str) -> str | None:
        import redis

        try:
            with self._client(url) as client:
                client.ping()
        except redis.RedisError as exc:
            return str(exc) or type(exc).__name__
        return None

    def describe(self, url: str) -> str:
        with self._client(url) as client:
            version = client.info("server")["redis_version"]
            settings = {**client.config_get("appendonly"), **client.config_get("appendfsync")}
        return f"{version} ({', '.join(f'{k} {v}' for k, v in sorted(settings.items()))})"

    def copy(self, source: Place, target: Place) -> None:
        start = len(source.namespace.encode())
        new = target.namespace.encode()
        with self._client(source.url) as client:
            keys = list(client.scan_iter(match=f"{source.namespace}:*", count=1000))
            for chunk in _chunks(keys, 1000):
                with client.pipeline(transaction=False) as pipe:
                    for key in chunk:
                        pipe.copy(key, new + key[start:], replace=True)
                    pipe.execute()

    def _delete(self, url: str, match: str) -> int:
        with self._client(url) as client:
            keys = list(client.scan_iter(match=match, count=1000))
            for chunk in _chunks(keys, 1000):
                client.unlink(*chunk)
        return len(keys)

    def remove(self, place: Place) -> None:
        self._delete(place.url, f"{place.namespace}:*")

    def leftovers(self, url: str, token: str) -> list[str]:
        with self._client(url) as client:
            return [key.decode() for key in client.scan_iter(match=self.pattern(token))]

    def sweep(self, url: str, token: str) -> int:
        return self._delete(url, self.pattern(token))


class PostgresServer(Server):
    """PostgreSQL: a namespace is a table name; a copy is ``INSERT ... SELECT`` per table."""

    name = "postgres"
    title = "PostgreSQL"
    default_url = "postgresql://postgres@127.0.0.1:5432/test"
    modules = ("psycopg", "psycopg_pool", "botstate.stores.postgres")
    copies_into_new_store = True

    #: botstate's store keeps ``<table>``, ``<table>_meta`` and the sequence
    #: ``<table>_version``; the floor only ``<table>``.
    TABLES = ("", "_meta")
    SEQUENCES = ("_version",)

    def namespace(self, token: str, label: str) -> str:
        name = super().namespace(token, label).replace("-", "_").lower()
        if len(name) > 50:  # botstate's limit for a table name
            raise ValueError(f"table name {name!r} is longer than 50 characters")
        return name

    def _connect(self, url: str) -> Any:
        import psycopg

        return psycopg.connect(url, connect_timeout=3, autocommit=True)

    def pattern(self, token: str) -> str:
        return f"{NAMESPACE_START}_{token}_%"

    def unavailable(self, url: str) -> str | None:
        import psycopg

        try:
            with self._connect(url) as connection:
                connection.execute("SELECT 1")
        except psycopg.Error as exc:
            return str(exc).strip() or type(exc).__name__
        return None

    def describe(self, url: str) -> str:
        with self._connect(url) as connection:
            settings = {
                name: connection.execute(f"SHOW {name}").fetchone()[0]
                for name in ("server_version", "synchronous_commit", "fsync")
            }
        version = settings.pop("server_version").split()[0]
        return f"{version} ({', '.join(f'{k} {v}' for k, v in settings.items())})"

    def copy(self, source: Place, target: Place) -> None:
        from psycopg import sql

        with self._connect(source.url) as connection:
            with connection.transaction():
                for suffix in self.TABLES:
                    if not _relation_exists(connection, source.namespace + suffix):
                        continue
                    old = sql.Identifier(source.namespace + suffix)
                    new = sql.Identifier(target.namespace + suffix)
                    # The new store stamped itself when it was created: the copy takes the
                    # seeded one's stamp instead.
                    connection.execute(sql.SQL("DELETE FROM {}").format(new))
                    connection.execute(sql.SQL("INSERT INTO {} SELECT * FROM {}").format(new, old))
                for suffix in self.SEQUENCES:
                    if not _relation_exists(connection, source.namespace + suffix):
                        continue
                    connection.execute(
                        sql.SQL(
                            "SELECT setval(%s::regclass, last_value, is_called) FROM {}"
                        ).format(sql.Identifier(source.namespace + suffix)),
                        (sql.Identifier(target.namespace + suffix).as_string(connection),),
                    )
            # The planner's statistics of the new table, as a long-lived store has them.
            connection.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(target.namespace)))

    def remove(self, place: Place) -> None:
        from psycopg import sql

        with self._connect(place.url) as connection:
            for suffix in self.TABLES:
                connection.execute(
                    sql.SQL("DROP TABLE IF EXISTS {}").format(
                        sql.Identifier(place.namespace + suffix)
                    )
                )
            for suffix in self.SEQUENCES:
                connection.execute(
                    sql.SQL("DROP SEQUENCE IF EXISTS {}").format(
                        sql.Identifier(place.namespace + suffix)
                    )
                )

    def _relations(self, connection: Any, token: str, kinds: str) -> list[tuple[str, str]]:
        # In LIKE, "_" matches any character: the pattern's own are escaped.
        pattern = self.pattern(token).replace("_", "\\_")
        found: list[tuple[str, str]] = connection.execute(
            "SELECT relname, relkind::text FROM pg_class "
            "WHERE relname LIKE %s AND relkind = ANY(%s) AND pg_table_is_visible(oid) "
            "ORDER BY relname",
            (pattern, list(kinds)),
        ).fetchall()
        return found

    def leftovers(self, url: str, token: str) -> list[str]:
        with self._connect(url) as connection:
            return [name for name, _ in self._relations(connection, token, "rSpiv")]

    def sweep(self, url: str, token: str) -> int:
        from psycopg import sql

        with self._connect(url) as connection:
            found = self._relations(connection, token, "rSp")
            for name, kind in found:
                what = "SEQUENCE" if kind == "S" else "TABLE"
                connection.execute(
                    sql.SQL(f"DROP {what} IF EXISTS {{}} CASCADE").format(sql.Identifier(name))
                )
        return len(found)


def _relation_exists(connection: Any, name: str) -> bool:
    from psycopg import sql

    quoted = sql.Identifier(name).as_string(connection)
    return connection.execute("SELECT to_regclass(%s)", (quoted,)).fetchone()[0] is not None


def _chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[start : start + size] for start in range(0, len(items), size)]


#: The servers, by name.
SERVERS: dict[str, Server] = {server.name: server for server in (RedisServer(), PostgresServer())}


# -- floors -------------------------------------------------------------------------------------


def _conversation_key(name: str, key: tuple[Any, ...]) -> str:
    return json.dumps([name, list(key)], separators=(",", ":"))


class Floor(Subject):
    """The least a program can do to store a cycle: the application's calls only collect what
    they are handed, then one write pickles and stores all of it. No change detection, no
    worker thread: the write runs on the event loop.

    A floor for another database (one redis-py pipeline, one psycopg ``executemany``)
    implements :meth:`write`, :meth:`read` and :meth:`release`.
    """

    def __init__(self, path: Path) -> None:
        self._batch: list[tuple[str, str, object]] = []

    @abstractmethod
    def write(self, rows: list[tuple[str, str, bytes]]) -> None:
        """Store *rows* of (kind, key, pickled value) in one transaction or pipeline."""

    @abstractmethod
    def read(self, kind: str) -> list[tuple[str, bytes]]:
        """Return the (key, pickled value) pairs of *kind*."""

    @classmethod
    def seed(cls, path: Path, state: State) -> None:
        floor = cls(path)
        floor.add("bot_data", "", state.bot_data)
        for user_id, data in state.user_data.items():
            floor.add("user_data", str(user_id), data)
        for chat_id, data in state.chat_data.items():
            floor.add("chat_data", str(chat_id), data)
        for name, states in state.conversations.items():
            for key, value in states.items():
                floor.add("conversations", _conversation_key(name, key), value)
        floor.commit()
        floor.release()

    def add(self, kind: str, key: str, value: object) -> None:
        self._batch.append((kind, key, value))

    def commit(self) -> None:
        rows = [(kind, key, pickle.dumps(value, 5)) for kind, key, value in self._batch]
        self._batch = []
        self.write(rows)

    @abstractmethod
    def release(self) -> None:
        """Close the connection."""

    async def close(self) -> None:
        self.release()

    # The calls the application makes, as PersistenceLike.

    async def get_user_data(self) -> dict[int, Any]:
        return {int(key): value for key, value in self._decoded("user_data")}

    async def get_chat_data(self) -> dict[int, Any]:
        return {int(key): value for key, value in self._decoded("chat_data")}

    async def get_bot_data(self) -> Any:
        return dict(self._decoded("bot_data")).get("", {})

    async def get_conversations(self, name: str) -> dict[tuple[Any, ...], object]:
        states = {}
        for key, value in self._decoded("conversations"):
            stored_name, parts = json.loads(key)
            if stored_name == name:
                states[tuple(parts)] = value
        return states

    def _decoded(self, kind: str) -> list[tuple[str, Any]]:
        return [(key, pickle.loads(value)) for key, value in self.read(kind)]

    async def update_user_data(self, user_id: int, data: Any) -> None:
        self.add("user_data", str(user_id), data)

    async def update_chat_data(self, chat_id: int, data: Any) -> None:
        self.add("chat_data", str(chat_id), data)

    async def update_bot_data(self, data: Any) -> None:
        self.add("bot_data", "", data)

    async def update_conversation(self, name: str, key: Any, new_state: Any) -> None:
        self.add("conversations", _conversation_key(name, key), new_state)

    # As a Subject.

    async def load(self) -> State:
        floor: PersistenceLike = self
        return await load_like_application(floor)

    async def cycle(self, state: State, touched: Touched) -> None:
        await update_like_application(self, state, touched)
        self.commit()


# The table layout of botstate's SQLite store (a rowid table with a key index), so that the
# floor differs from it in the work done, not in the layout.
_SQLITE_SCHEMA = """CREATE TABLE IF NOT EXISTS records (
    kind TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL, PRIMARY KEY (kind, key)
)"""
_SQLITE_UPSERT = (
    "INSERT INTO records (kind, key, value) VALUES (?, ?, ?) "
    "ON CONFLICT (kind, key) DO UPDATE SET value = excluded.value"
)


class SQLiteFloor(Floor):
    """Raw sqlite3: one ``executemany`` upsert in one transaction, with botstate's default
    durability (WAL, ``synchronous=NORMAL``)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.connection.execute("PRAGMA journal_mode=WAL")
        self.connection.execute("PRAGMA synchronous=NORMAL")
        self.connection.execute(_SQLITE_SCHEMA)

    def write(self, rows: list[tuple[str, str, bytes]]) -> None:
        self.connection.execute("BEGIN")
        self.connection.executemany(_SQLITE_UPSERT, rows)
        self.connection.execute("COMMIT")

    def read(self, kind: str) -> list[tuple[str, bytes]]:
        return list(
            self.connection.execute("SELECT key, value FROM records WHERE kind = ?", (kind,))
        )

    def release(self) -> None:
        self.connection.close()


class RedisFloor(Floor):
    """Raw redis-py: one MULTI/EXEC pipeline per cycle, in the key layout of botstate's Redis
    store without versions: a hash per record (``<prefix>:r:<kind>:<key>``, the pickled value
    in its field ``d``) and a set per kind of the keys stored (``<prefix>:i:<kind>``), which
    loading reads first."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        import redis

        place = Place.read(path)
        self.prefix = place.namespace
        self.client = redis.Redis.from_url(place.url, socket_connect_timeout=5, socket_timeout=120)

    def write(self, rows: list[tuple[str, str, bytes]]) -> None:
        keys: dict[str, list[str]] = {}
        with self.client.pipeline(transaction=True) as pipe:
            for kind, key, value in rows:
                pipe.hset(f"{self.prefix}:r:{kind}:{key}", "d", value)
                keys.setdefault(kind, []).append(key)
            for kind, members in keys.items():
                pipe.sadd(f"{self.prefix}:i:{kind}", *members)
            pipe.execute()

    def read(self, kind: str) -> list[tuple[str, bytes]]:
        keys = [member.decode() for member in self.client.smembers(f"{self.prefix}:i:{kind}")]
        found: list[tuple[str, bytes]] = []
        for chunk in _chunks(keys, 1000):
            with self.client.pipeline(transaction=False) as pipe:
                for key in chunk:
                    pipe.hget(f"{self.prefix}:r:{kind}:{key}", "d")
                found += zip(chunk, pipe.execute(), strict=True)
        return found

    def release(self) -> None:
        self.client.close()


_POSTGRES_SCHEMA = """CREATE TABLE IF NOT EXISTS {} (
    kind text NOT NULL, key text NOT NULL, value bytea NOT NULL, PRIMARY KEY (kind, key)
)"""
_POSTGRES_UPSERT = (
    "INSERT INTO {} (kind, key, value) VALUES (%s, %s, %s) "
    "ON CONFLICT (kind, key) DO UPDATE SET value = excluded.value"
)


class PostgresFloor(Floor):
    """Raw psycopg 3: one ``executemany`` upsert in one transaction per cycle (psycopg sends
    its statements in one pipeline), with the server's default durability."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        import psycopg
        from psycopg import sql

        place = Place.read(path)
        table = sql.Identifier(place.namespace)
        self.connection = psycopg.connect(place.url, autocommit=True, connect_timeout=5)
        self.connection.execute(sql.SQL(_POSTGRES_SCHEMA).format(table))
        self._upsert = sql.SQL(_POSTGRES_UPSERT).format(table)
        self._select = sql.SQL("SELECT key, value FROM {} WHERE kind = %s").format(table)

    def write(self, rows: list[tuple[str, str, bytes]]) -> None:
        with self.connection.transaction(), self.connection.cursor() as cursor:
            cursor.executemany(self._upsert, rows)

    def read(self, kind: str) -> list[tuple[str, bytes]]:
        found: list[tuple[str, bytes]] = self.connection.execute(self._select, (kind,)).fetchall()
        return found

    def release(self) -> None:
        self.connection.close()


# -- the contenders ------------------------------------------------------------------------------


def _ptb_pickle(path: Path, on_flush: bool) -> Any:
    from telegram.ext import PicklePersistence

    # Its defaults: one file, written on every update_* call that changes something.
    return PicklePersistence(path, on_flush=on_flush)


def _botstate_pickle(path: Path, on_flush: bool) -> Any:
    from botstate import PicklePersistence

    return PicklePersistence(path, on_flush=on_flush)


def _botstate_sqlite(path: Path, on_flush: bool) -> Any:
    from botstate import SQLitePersistence

    return SQLitePersistence(path, on_flush=on_flush)


def _botstate_redis(path: Path, on_flush: bool) -> Any:
    from botstate import RedisPersistence

    place = Place.read(path)
    return RedisPersistence(place.url, prefix=place.namespace, on_flush=on_flush)


def _botstate_postgres(path: Path, on_flush: bool) -> Any:
    from botstate import PostgresPersistence

    place = Place.read(path)
    return PostgresPersistence(place.url, table=place.namespace, on_flush=on_flush)


# Seeding writes of a server store: one write of every record would make a PostgreSQL write lock
# more keys than the server's lock table holds (max_locks_per_transaction).
_SEED_CHUNK = 2_000

#: Every contender, in the order tables and the chart show them.
CONTENDERS: dict[str, Contender] = {
    contender.name: contender
    for contender in (
        Contender(
            "ptb-pickle",
            "python-telegram-bot PicklePersistence",
            "state.pickle",
            _ptb_pickle,
            # Its cycle writes the whole file once per changed record: N times K.
            max_work=1_000_000,
            is_reference=True,
        ),
        Contender(
            "botstate-pickle",
            "botstate PicklePersistence",
            "state.pickle",
            _botstate_pickle,
            SnapshotPersistenceSubject,
        ),
        Contender("botstate-sqlite", "botstate SQLitePersistence", "state.db", _botstate_sqlite),
        Contender("sqlite-floor", "raw sqlite3 (floor)", "state.db", raw=SQLiteFloor, floor=None),
        Contender(
            "botstate-redis",
            "botstate RedisPersistence",
            PLACE_FILE,
            _botstate_redis,
            floor="redis-floor",
            server=SERVERS["redis"],
            seed_chunk=_SEED_CHUNK,
        ),
        Contender(
            "redis-floor",
            "raw redis-py (floor)",
            PLACE_FILE,
            raw=RedisFloor,
            floor=None,
            server=SERVERS["redis"],
        ),
        Contender(
            "botstate-postgres",
            "botstate PostgresPersistence",
            PLACE_FILE,
            _botstate_postgres,
            floor="postgres-floor",
            server=SERVERS["postgres"],
            seed_chunk=_SEED_CHUNK,
        ),
        Contender(
            "postgres-floor",
            "raw psycopg 3 (floor)",
            PLACE_FILE,
            raw=PostgresFloor,
            floor=None,
            server=SERVERS["postgres"],
        ),
    )
}
