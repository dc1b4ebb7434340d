"""The local Redis and PostgreSQL servers the store tests run against, and their clean-up.

Every test works under a prefix (Redis) or table (PostgreSQL) of its own and removes it
afterwards. Without a server the test is skipped, except under ``CI=true``, where it fails.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import threading
import time
import uuid
from typing import Any

REDIS_URL = "redis://127.0.0.1:6379/0"
POSTGRES_URL = "postgresql://127.0.0.1:5432/test"

_ADDRESSES = {"redis": ("127.0.0.1", 6379), "postgres": ("127.0.0.1", 5432)}


def unavailable(server: str) -> str | None:
    """Why *server* cannot be used here, or None when it accepts connections."""
    host, port = _ADDRESSES[server]
    try:
        socket.create_connection((host, port), timeout=2).close()
    except OSError as exc:
        return f"{server} is not running on {host}:{port} ({exc}); ./scripts/test starts it"
    return None


def require(server: str) -> None:
    """Skip (or, in CI, fail) the calling test when *server* does not accept connections."""
    import pytest  # Here only: tests.stores, which imports this module, runs without pytest.

    reason = unavailable(server)
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def name_for(server: str, folder: object) -> str:
    """The prefix or table of the store kept for a test's *folder*: the same for the same
    folder, so that opening again is a restart of the bot."""
    return _name(server, hashlib.sha1(str(folder).encode()).hexdigest()[:16])


def session() -> str:
    """The token of this test run, shared with the processes it starts (through the
    environment), which every prefix and table of the run begins with."""
    return os.environ.setdefault("BOTSTATE_TEST_SESSION", uuid.uuid4().hex[:8])


# Fixed when this module is imported, before any process it may start: a child started
# before the first name was asked for would otherwise pick a token of its own.
session()


def _name(server: str, tail: str) -> str:
    return f"bs_test_{session()}_{tail}" if server == "postgres" else f"bs-test-{session()}-{tail}"


def unique_name(server: str) -> str:
    """A prefix or table name no other test uses."""
    return _name(server, uuid.uuid4().hex[:12])


def open_persistence(server: str, name: str, **options: Any) -> Any:
    """A persistence on the test's own prefix or table of *server*."""
    if server == "redis":
        from botstate.stores.redis import RedisPersistence

        return RedisPersistence(REDIS_URL, prefix=name, **options)
    from botstate.stores.postgres import PostgresPersistence

    return PostgresPersistence(POSTGRES_URL, table=name, **options)


def remove(server: str, name: str) -> None:
    """Delete everything stored under *name*."""
    if server == "redis":
        from botstate.stores.redis import RedisStore

        redis_store = RedisStore(REDIS_URL, prefix=name)
        redis_store.destroy()
        redis_store.close()
        return
    from botstate.stores.postgres import PostgresStore

    postgres_store = PostgresStore(POSTGRES_URL, table=name)
    postgres_store.destroy()
    postgres_store.close()


def remove_session() -> None:
    """Remove every prefix and table this test run made, on the servers that are up."""
    if unavailable("redis") is None:
        import redis

        client = redis.Redis.from_url(REDIS_URL)
        try:
            batch: list[bytes] = []
            for key in client.scan_iter(f"bs-test-{session()}-*", count=1000):
                batch.append(key)
                if len(batch) == 1000:
                    client.delete(*batch)
                    batch = []
            if batch:
                client.delete(*batch)
        finally:
            client.close()
    if unavailable("postgres") is None:
        import psycopg

        with psycopg.connect(POSTGRES_URL, autocommit=True) as connection:
            tables = [
                name
                for (name,) in connection.execute(
                    "SELECT tablename FROM pg_tables WHERE tablename LIKE %s",
                    (f"bs_test_{session()}_%",),
                )
                if not name.endswith("_meta")
            ]
        for table in tables:
            remove("postgres", table)


class CuttingProxy:
    """A TCP proxy on 127.0.0.1 in front of a local server that can cut a connection mid-call.

    After :meth:`cut_at` the next client message containing *marker* ends its connection:
    with ``deliver=True`` the message reaches the server and its answer is lost, else the
    message is lost too. Connections opened afterwards pass again.
    """

    def __init__(self, port: int) -> None:
        self._target = ("127.0.0.1", port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._cut: tuple[bytes, bool] | None = None
        self.cuts = 0
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def cut_at(self, marker: bytes, *, deliver: bool) -> None:
        self._cut = (marker, deliver)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            server = socket.create_connection(self._target)
            with self._lock:
                self._sockets += [client, server]
            severed = threading.Event()
            for source, target, upstream in ((client, server, True), (server, client, False)):
                threading.Thread(
                    target=self._pipe, args=(source, target, upstream, severed), daemon=True
                ).start()

    def _pipe(
        self, source: socket.socket, target: socket.socket, upstream: bool, severed: Any
    ) -> None:
        try:
            while chunk := source.recv(65536):
                cut = self._cut if upstream else None
                if cut is not None and cut[0] in chunk:
                    self._cut = None
                    self.cuts += 1
                    severed.set()  # no answer goes back from here on
                    if cut[1]:
                        target.sendall(chunk)
                        time.sleep(0.2)  # let the server act on it before the cut
                    break
                if severed.is_set():
                    break
                target.sendall(chunk)
        except OSError:
            pass
        for end in (source, target):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
            end.close()

    def close(self) -> None:
        self._listener.close()
        with self._lock:
            for end in self._sockets:
                with contextlib.suppress(OSError):
                    end.close()


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on."""
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port: int = probe.getsockname()[1]
    return port
