"""The local Redis and PostgreSQL servers the store tests run against, and their clean-up.

Every test works under a prefix (Redis) or table (PostgreSQL) of its own and removes it
afterwards. Without a server the test is skipped, except under ``CI=true``, where it fails.
"""

from __future__ import annotations

import os
import socket
import uuid
from typing import Any

import pytest

REDIS_URL = "redis://127.0.0.1:6379/0"
POSTGRES_URL = "postgresql://127.0.0.1:5432/test"

_ADDRESSES = {"redis": ("127.0.0.1", 6379), "postgres": ("127.0.0.1", 5432)}


def require(server: str) -> None:
    """Skip (or, in CI, fail) the calling test when *server* does not accept connections."""
    host, port = _ADDRESSES[server]
    try:
        socket.create_connection((host, port), timeout=2).close()
    except OSError as exc:
        reason = f"{server} is not running on {host}:{port} ({exc}); ./scripts/test starts it"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)


def unique_name(server: str) -> str:
    """A prefix or table name no other test uses."""
    return (
        f"bs_test_{uuid.uuid4().hex[:12]}"
        if server == "postgres"
        else f"bs-test-{uuid.uuid4().hex[:12]}"
    )


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
