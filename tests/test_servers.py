"""Redis and PostgreSQL stores: several processes on one store, conflicts, expiry, faults.

Each persistence stands for one bot process; two persistences on the same prefix or table are
two processes sharing a store. The contract suite (test_contract.py) runs on both stores too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import psycopg
import pytest
import redis

from botstate import (
    ConflictError,
    CorruptDataError,
    FormatVersionError,
    RedisPersistence,
    SQLitePersistence,
    StoreUnavailableError,
)
from botstate.persistence import Persistence
from botstate.stores.postgres import PostgresStore
from botstate.stores.redis import RedisStore

from . import servers

Opener = Callable[..., Persistence[Any, Any, Any]]


class BotData:
    """A custom bot_data class."""

    def __init__(self) -> None:
        self.count = 0


def only(name: str) -> pytest.MarkDecorator:
    """Run a test on one of the two servers."""
    return pytest.mark.parametrize("server", [name], indirect=True)


@pytest.fixture(params=["redis", "postgres"])
def server(request: pytest.FixtureRequest) -> str:
    servers.require(request.param)
    name: str = request.param
    return name


@pytest.fixture
async def store_name(server: str) -> AsyncIterator[str]:
    name = servers.unique_name(server)
    yield name
    servers.remove(server, name)


@pytest.fixture
async def open_process(server: str, store_name: str) -> AsyncIterator[Opener]:
    """Opens persistences on the test's store, one per simulated bot process."""
    opened: list[Persistence[Any, Any, Any]] = []

    def open_one(**options: Any) -> Persistence[Any, Any, Any]:
        persistence: Persistence[Any, Any, Any] = servers.open_persistence(
            server, store_name, **options
        )
        opened.append(persistence)
        return persistence

    yield open_one
    for persistence in opened:
        # A test may leave a change that cannot be stored, on purpose.
        with contextlib.suppress(ConflictError, StoreUnavailableError):
            await persistence.close()


# -- refresh ------------------------------------------------------------------------------------


async def test_refresh_loads_what_another_process_stored_into_the_same_object(
    open_process: Opener,
) -> None:
    first, second = open_process(), open_process()
    await first.update_user_data(1, {"step": 1})
    local = (await second.get_user_data())[1]

    await first.update_user_data(1, {"step": 2, "name": "Ada"})
    await second.refresh_user_data(1, local)
    assert local == {"step": 2, "name": "Ada"}

    # Nothing newer: the object stays as it is.
    await second.refresh_user_data(1, local)
    assert local == {"step": 2, "name": "Ada"}


async def test_refresh_keeps_a_change_this_process_has_not_stored_yet(
    open_process: Opener,
) -> None:
    first, second = open_process(), open_process()
    await first.update_chat_data(-5, {"n": 1})
    local = (await second.get_chat_data())[-5]

    await first.update_chat_data(-5, {"n": 2})
    local["n"] = 99  # changed here, to be stored with the next cycle
    await second.refresh_chat_data(-5, local)
    assert local == {"n": 99}


async def test_refresh_of_a_user_this_process_never_saw_fills_the_new_empty_object(
    open_process: Opener,
) -> None:
    first, second = open_process(), open_process()
    assert await second.get_user_data() == {}
    await first.update_user_data(7, {"seen": "first"})
    fresh: dict[str, Any] = {}
    await second.refresh_user_data(7, fresh)
    assert fresh == {"seen": "first"}


async def test_refresh_empties_a_record_another_process_dropped(open_process: Opener) -> None:
    first, second = open_process(), open_process()
    await first.update_user_data(3, {"a": 1})
    local = (await second.get_user_data())[3]
    await first.drop_user_data(3)
    await second.refresh_user_data(3, local)
    assert local == {}


async def test_refresh_of_bot_data_updates_a_custom_object_in_place(
    open_process: Opener,
) -> None:
    class ContextTypes:
        bot_data = BotData

    first = open_process(context_types=ContextTypes())
    second = open_process(context_types=ContextTypes())
    local = await second.get_bot_data()
    assert isinstance(local, BotData)

    stored = BotData()
    stored.count = 5
    await first.update_bot_data(stored)
    await second.refresh_bot_data(local)
    assert local.count == 5


async def test_refresh_conversation_gives_the_newer_state_or_none_once_ended(
    open_process: Opener,
) -> None:
    first, second = open_process(), open_process()
    assert await second.get_conversations("signup") == {}
    key = (10, 10)
    assert await second.refresh_conversation("signup", key, None) is None

    await first.update_conversation("signup", key, "NAME")
    assert await second.refresh_conversation("signup", key, None) == "NAME"
    await first.update_conversation("signup", key, "AGE")
    assert await second.refresh_conversation("signup", key, "NAME") == "AGE"
    await first.update_conversation("signup", key, None)
    assert await second.refresh_conversation("signup", key, "AGE") is None


async def test_stores_of_a_single_process_do_not_refresh(tmp_path: Any) -> None:
    first = SQLitePersistence(tmp_path / "bot.db")
    second = SQLitePersistence(tmp_path / "bot.db")
    await first.update_user_data(1, {"a": 1})
    local = (await second.get_user_data())[1]
    await first.update_user_data(1, {"a": 2})
    await second.refresh_user_data(1, local)
    assert local == {"a": 1}
    assert await second.refresh_conversation("c", (1,), "X") == "X"
    await first.close()
    await second.close()


# -- conflicts ----------------------------------------------------------------------------------


async def test_a_stale_write_is_kept_as_the_newest_with_a_warning(
    open_process: Opener, caplog: pytest.LogCaptureFixture
) -> None:
    first, second = open_process(), open_process()
    await first.update_user_data(42, {"v": "original"})
    await second.get_user_data()

    await first.update_user_data(42, {"v": "first"})
    with caplog.at_level(logging.WARNING, logger="botstate"):
        await second.update_user_data(42, {"v": "second"})
    assert "user_data[42] was replaced by another process" in caplog.text
    assert "'second'" not in caplog.text  # the log names records, never their data

    assert (await open_process().get_user_data())[42] == {"v": "second"}


async def test_a_stale_write_raises_conflict_error_when_asked_and_the_refresh_resolves_it(
    open_process: Opener,
) -> None:
    first, second = open_process(), open_process(on_conflict="raise")
    await first.update_user_data(42, {"v": "original"})
    local = (await second.get_user_data())[42]

    await first.update_user_data(42, {"v": "first"})
    results = await asyncio.gather(
        second.update_user_data(42, {"v": "second"}),
        second.update_user_data(43, {"v": "unrelated"}),
        return_exceptions=True,
    )
    error = results[0]
    assert isinstance(error, ConflictError)
    assert "user_data[42] was not stored" in str(error)
    assert "on_conflict='raise'" in str(error)
    assert results[1] is None  # the rest of the batch is written
    assert await open_process().get_user_data() == {42: {"v": "first"}, 43: {"v": "unrelated"}}

    # The next refresh hands the application the stored value; a write from there succeeds.
    local["v"] = "changed meanwhile"
    await second.refresh_user_data(42, local)
    assert local == {"v": "first"}
    await second.update_user_data(42, {"v": "second, on top of first"})
    assert (await open_process().get_user_data())[42] == {"v": "second, on top of first"}


async def test_writes_in_turn_by_two_processes_are_no_conflict(
    open_process: Opener, caplog: pytest.LogCaptureFixture
) -> None:
    first, second = open_process(), open_process(on_conflict="raise")
    await first.get_user_data()
    await second.get_user_data()
    local: dict[str, Any] = {}
    with caplog.at_level(logging.WARNING, logger="botstate"):
        for step in range(3):
            await first.refresh_user_data(1, local)
            local["steps"] = [*local.get("steps", []), f"first {step}"]
            await first.update_user_data(1, dict(local))
            other = dict(local)
            await second.refresh_user_data(1, other)
            other["steps"] = [*other["steps"], f"second {step}"]
            await second.update_user_data(1, dict(other))
    assert caplog.text == ""
    assert (await open_process().get_user_data())[1]["steps"][-2:] == ["first 2", "second 2"]


# -- layout -------------------------------------------------------------------------------------


async def test_two_prefixes_or_tables_on_one_server_do_not_see_each_other(
    server: str, open_process: Opener
) -> None:
    other_name = servers.unique_name(server)
    other = servers.open_persistence(server, other_name)
    try:
        await open_process().update_user_data(1, {"bot": "one"})
        await other.update_user_data(1, {"bot": "two"})
        assert await open_process().get_user_data() == {1: {"bot": "one"}}
        assert await other.get_user_data() == {1: {"bot": "two"}}
    finally:
        await other.close()
        servers.remove(server, other_name)


async def test_a_newer_format_or_another_codec_is_refused(
    server: str, store_name: str, open_process: Opener
) -> None:
    await open_process().update_user_data(1, {})
    store: RedisStore | PostgresStore
    if server == "redis":
        client = redis.Redis.from_url(servers.REDIS_URL)
        client.hset(f"{store_name}:meta", "format_version", "99")
        store = RedisStore(servers.REDIS_URL, prefix=store_name)
    else:
        with psycopg.connect(servers.POSTGRES_URL, autocommit=True) as connection:
            connection.execute(
                f"UPDATE {store_name}_meta SET value = '99' WHERE name = 'format_version'"
            )
        store = PostgresStore(servers.POSTGRES_URL, table=store_name)
    with pytest.raises(
        FormatVersionError, match=rf"{store_name} was written in botstate format 99"
    ):
        store.open()
    store.close()

    if server == "redis":
        client.hset(f"{store_name}:meta", mapping={"format_version": "1", "codec": "json"})
        client.close()
    else:
        with psycopg.connect(servers.POSTGRES_URL, autocommit=True) as connection:
            connection.execute(
                f"UPDATE {store_name}_meta SET value = '1' WHERE name = 'format_version'"
            )
            connection.execute(f"UPDATE {store_name}_meta SET value = 'json' WHERE name = 'codec'")
    with pytest.raises(CorruptDataError, match=r"encoded with codec 'json'.*codec='json'"):
        await open_process().get_user_data()


@only("redis")
async def test_redis_writes_a_cycle_with_one_command(store_name: str) -> None:
    persistence = servers.open_persistence("redis", store_name)
    await persistence.get_user_data()
    store = persistence.store
    assert isinstance(store, RedisStore)
    commands: list[str] = []
    send = store._client.execute_command

    def counting(*args: Any, **options: Any) -> Any:
        commands.append(str(args[0]))
        return send(*args, **options)

    store._client.execute_command = counting  # type: ignore[method-assign]
    await asyncio.gather(*(persistence.update_user_data(n, {"n": n}) for n in range(100)))
    assert commands in (["EVALSHA"], ["EVALSHA", "SCRIPT LOAD", "EVALSHA"])
    await persistence.close()

    client = redis.Redis.from_url(servers.REDIS_URL)
    record = client.hgetall(f"{store_name}:r:user_data:42")
    assert sorted(record) == [b"d", b"v"]
    assert int(record[b"v"]) > 0
    assert client.scard(f"{store_name}:i:user_data") == 100
    assert client.hget(f"{store_name}:meta", "format_version") == b"1"
    client.close()


@only("postgres")
async def test_postgres_writes_a_cycle_in_one_transaction(store_name: str) -> None:
    persistence = servers.open_persistence("postgres", store_name)
    await persistence.get_user_data()
    await asyncio.gather(
        *(persistence.update_user_data(n, {"n": n}) for n in range(100)),
        persistence.update_conversation("c", (5, 5), "S"),
    )
    await persistence.close()
    with psycopg.connect(servers.POSTGRES_URL) as connection:
        (transactions,) = connection.execute(
            f"SELECT count(DISTINCT xmin::text) FROM {store_name}"
        ).fetchone() or (None,)
        rows = connection.execute(
            f"SELECT kind, key, grp FROM {store_name} WHERE key IN ('42', '[\"c\",[5,5]]')"
            " ORDER BY kind"
        ).fetchall()
    assert transactions == 1
    assert rows == [("conversations", '["c",[5,5]]', "5"), ("user_data", "42", "42")]


@only("postgres")
async def test_postgres_keeps_its_tables_in_the_schema_given(server: str) -> None:
    schema = servers.unique_name("postgres")
    from botstate import PostgresPersistence

    persistence: Persistence[Any, Any, Any] = PostgresPersistence(
        servers.POSTGRES_URL, table="records", schema=schema
    )
    try:
        await persistence.update_user_data(1, {"a": 1})
        with psycopg.connect(servers.POSTGRES_URL) as connection:
            tables = connection.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s "
                "ORDER BY 1",
                (schema,),
            ).fetchall()
        assert tables == [("records",), ("records_meta",)]
    finally:
        await persistence.close()
        with psycopg.connect(servers.POSTGRES_URL, autocommit=True) as connection:
            connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


# -- expiry -------------------------------------------------------------------------------------


async def wait_until(condition: Callable[[], Any], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not await condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.1)


async def test_a_users_data_and_conversations_expire_together(open_process: Opener) -> None:
    persistence = open_process(ttl=1.5)
    await persistence.update_user_data(7, {"name": "Ada"})
    await persistence.update_conversation("signup", (7, 7), "AGE")
    await persistence.update_user_data(8, {"other": True})
    await asyncio.sleep(0.8)
    # A write to the conversation renews the user's data too.
    await persistence.update_conversation("signup", (7, 7), "DONE")
    await asyncio.sleep(0.9)

    async def state() -> tuple[bool, bool]:
        reader = open_process()
        users = await reader.get_user_data()
        conversations = await reader.get_conversations("signup")
        return 7 in users, (7, 7) in conversations

    assert await state() == (True, True)  # past 1.5 s since the user's data was written
    assert 8 not in await open_process().get_user_data()  # its own deadline has passed

    async def expired() -> bool:
        found = await state()
        assert found in ((True, True), (False, False)), "one expired without the other"
        return found == (False, False)

    await wait_until(expired, 5)


async def test_an_expired_record_reads_as_absent(open_process: Opener) -> None:
    persistence = open_process(ttl={"bot_data": 0.3, "callback_data": 0.3})
    await persistence.update_bot_data({"b": 1})
    await persistence.update_user_data(1, {"kept": True})  # no ttl for user_data
    record = await persistence._call(persistence.store.load_record, "bot_data", None, None)
    assert record is not None

    async def bot_data_gone() -> bool:
        reader = open_process()
        return await reader.get_bot_data() == {}

    await wait_until(bot_data_gone, 5)
    assert await persistence._call(persistence.store.load_record, "bot_data", None, None) is None
    local = {"b": 1}
    await persistence.refresh_bot_data(local)
    assert local == {}
    assert await open_process().get_user_data() == {1: {"kept": True}}


@pytest.mark.parametrize(
    ("ttl", "message"),
    [
        ({"users": 5}, "unknown kind 'users'"),
        ({"user_data": 0}, "ttl of user_data must be a positive number"),
        (-1, "ttl of user_data must be a positive number"),
    ],
)
def test_a_bad_ttl_is_refused(ttl: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RedisStore(servers.REDIS_URL, ttl=ttl)


# -- faults -------------------------------------------------------------------------------------


def make_url(server: str, port: int, password: str = "s3cret", in_query: bool = False) -> str:
    if in_query:
        if server == "redis":
            return f"redis://127.0.0.1:{port}/0?password={password}"
        return f"postgresql://postgres@127.0.0.1:{port}/test?password={password}"
    if server == "redis":
        return f"redis://:{password}@127.0.0.1:{port}/0"
    return f"postgresql://postgres:{password}@127.0.0.1:{port}/test"


@pytest.mark.parametrize("in_query", [False, True])
async def test_a_server_down_at_start_is_a_clear_error_without_the_password(
    server: str, caplog: pytest.LogCaptureFixture, in_query: bool
) -> None:
    from botstate import from_url

    port = servers.closed_port()
    url = make_url(server, port, in_query=in_query)
    persistence = from_url(url, retries=1, max_backoff=0.1, timeout=1)
    assert "s3cret" not in repr(persistence)
    with caplog.at_level(logging.DEBUG), pytest.raises(StoreUnavailableError) as caught:
        await persistence.get_user_data()
    message = str(caught.value)
    masked = "redis://:***@" if server == "redis" else "postgresql://postgres:***@"
    if in_query:
        masked = "redis://" if server == "redis" else "postgresql://postgres@"
        assert "password=***" in message
    assert f"{masked}127.0.0.1:{port}" in message
    assert "connecting failed, the server cannot be reached" in message
    assert "Connection refused" in message  # the driver's reason, not only a timeout
    assert "s3cret" not in message
    assert "s3cret" not in repr(caught.value.__cause__)
    assert "s3cret" not in caplog.text
    assert "trying again" in caplog.text  # the bounded retry
    await persistence.close()


async def test_a_refused_login_is_told_apart_from_a_server_that_is_down(
    server: str, caplog: pytest.LogCaptureFixture
) -> None:
    from botstate import from_url

    if server == "redis":
        url = "redis://nobody-here:s3cret@127.0.0.1:6379/0?prefix=" + servers.unique_name(server)
    else:
        url = "postgresql://nobody_here:s3cret@127.0.0.1:5432/test"
    persistence = from_url(url, retries=3)
    with caplog.at_level(logging.DEBUG), pytest.raises(StoreUnavailableError) as caught:
        await persistence.get_user_data()
    message = str(caught.value)
    assert "the server refused the login" in message
    assert "Check the user name and password in the URL" in message
    assert "nobody" in message
    assert "s3cret" not in message
    assert "s3cret" not in caplog.text
    assert "trying again" not in caplog.text  # a wrong password stays wrong: no retries
    await persistence.close()


@only("redis")
async def test_a_redis_database_the_server_does_not_have_is_a_clear_error(server: str) -> None:
    from botstate import from_url

    persistence = from_url("redis://:s3cret@127.0.0.1:6379/99999?prefix=" + "never-created")
    with pytest.raises(StoreUnavailableError) as caught:
        await persistence.get_user_data()
    assert str(caught.value) == (
        "redis://:***@127.0.0.1:6379/99999#never-created: connecting failed, the server "
        "refused: DB index is out of range"
    )
    await persistence.close()


async def test_an_option_the_driver_does_not_take_is_a_clear_error(server: str) -> None:
    from botstate import from_url

    if server == "redis":
        url = "redis://:s3cret@127.0.0.1:6379/0?prefix=never-made&bogus=1"
        expected = "the URL holds an option redis-py does not take"
    else:
        url = "postgresql://postgres:s3cret@127.0.0.1:5432/test?table=never_made&bogus=1"
        expected = "the URL is not one libpq accepts"
    persistence = from_url(url)
    with pytest.raises(StoreUnavailableError) as caught:
        await persistence.get_user_data()
    assert expected in str(caught.value)
    assert "bogus" in str(caught.value)
    assert "s3cret" not in str(caught.value)
    await persistence.close()


@only("postgres")
async def test_the_password_appears_nowhere_while_working(
    store_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    from botstate import from_url

    # The local PostgreSQL trusts local connections and ignores the password.
    with caplog.at_level(logging.DEBUG):
        persistence = from_url(make_url("postgres", 5432), table=store_name)
        await persistence.update_user_data(1, {"a": 1})
        await persistence.close()
    assert "s3cret" not in caplog.text
    assert "s3cret" not in repr(persistence) + persistence.store.location


@only("redis")
async def test_a_redis_cycle_cut_mid_call_is_whole_or_absent_and_retried(
    store_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    proxy = servers.CuttingProxy(6379)
    persistence = RedisPersistence(
        f"redis://127.0.0.1:{proxy.port}/0", prefix=store_name, retries=0
    )
    check = redis.Redis.from_url(servers.REDIS_URL)
    try:
        await persistence.get_user_data()
        for deliver, users in ((True, range(0, 3)), (False, range(10, 13))):
            proxy.cut_at(b"EVALSHA", deliver=deliver)
            with pytest.raises(StoreUnavailableError, match="writing failed"):
                await asyncio.gather(*(persistence.update_user_data(u, {"u": u}) for u in users))
            assert proxy.cuts == 1 + (not deliver)
            stored = [check.exists(f"{store_name}:r:user_data:{u}") for u in users]
            # The script ran whole when the call reached the server, not at all otherwise.
            assert stored == [deliver] * 3

            with caplog.at_level(logging.WARNING):
                await persistence.flush()  # the next cycle writes what was not stored
            assert "replaced by another process" not in caplog.text
        assert await RedisPersistence(servers.REDIS_URL, prefix=store_name).get_user_data() == {
            u: {"u": u} for u in (0, 1, 2, 10, 11, 12)
        }
    finally:
        await persistence.close()
        check.close()
        proxy.close()


@only("postgres")
async def test_a_postgres_transaction_cut_mid_way_stores_nothing_and_is_retried(
    store_name: str,
) -> None:
    persistence = servers.open_persistence("postgres", store_name, retries=0)
    await persistence.get_user_data()
    with psycopg.connect(servers.POSTGRES_URL, autocommit=True) as control:
        # Hold the lock of one record, so the cycle's transaction stops half way and waits.
        lock = (f"{store_name}:", f"{store_name}:", "user_data:2")
        slot_lock = "hashtext(%s), (hashtextextended(%s || %s, 0) & 255)::integer"
        control.execute(f"SELECT pg_advisory_lock({slot_lock})", lock)
        cycle = asyncio.gather(*(persistence.update_user_data(u, {"u": u}) for u in range(5)))

        async def waiting_backend() -> Any:
            return control.execute(
                "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND query LIKE '%%pg_advisory_xact_lock(hashtext%%' AND pid <> pg_backend_pid()"
            ).fetchone()

        await wait_until(waiting_backend, 10)
        (pid,) = await waiting_backend()
        control.execute("SELECT pg_terminate_backend(%s)", (pid,))
        with pytest.raises(StoreUnavailableError, match="writing failed"):
            await cycle
        (count,) = control.execute(f"SELECT count(*) FROM {store_name}").fetchone() or (None,)
        assert count == 0
        control.execute(f"SELECT pg_advisory_unlock({slot_lock})", lock)

    await persistence.flush()
    reader = servers.open_persistence("postgres", store_name)
    assert await reader.get_user_data() == {u: {"u": u} for u in range(5)}
    await reader.close()
    await persistence.close()


@only("postgres")
async def test_a_postgres_error_that_is_not_a_lost_connection_is_reported_as_it_is(
    store_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    from botstate import WriteError
    from botstate.stores.postgres import PostgresPersistence

    # The server gives up waiting for a lock after 200 ms: SQLSTATE 55P03, which no retry or
    # reconnection can help; it must not read as "the server cannot be reached".
    url = servers.POSTGRES_URL + "?options=-c%20lock_timeout%3D200"
    persistence = PostgresPersistence(url, table=store_name, retries=3)
    await persistence.get_user_data()
    with psycopg.connect(servers.POSTGRES_URL, autocommit=True) as control:
        lock = (f"{store_name}:", f"{store_name}:", "user_data:2")
        slot_lock = "hashtext(%s), (hashtextextended(%s || %s, 0) & 255)::integer"
        control.execute(f"SELECT pg_advisory_lock({slot_lock})", lock)
        with caplog.at_level(logging.WARNING), pytest.raises(WriteError) as caught:
            await persistence.update_user_data(2, {"u": 2})
        control.execute(f"SELECT pg_advisory_unlock({slot_lock})", lock)
    assert "lock timeout" in str(caught.value)
    assert not isinstance(caught.value, StoreUnavailableError)
    assert "trying again" not in caplog.text
    await persistence.flush()  # the record is written with the next write
    reader = servers.open_persistence("postgres", store_name)
    assert await reader.get_user_data() == {2: {"u": 2}}
    await reader.close()
    await persistence.close()


async def test_the_bots_own_asyncio_clients_are_accepted(server: str, store_name: str) -> None:
    """An asyncio client cannot serve the worker thread; its settings open botstate's own."""
    if server == "redis":
        import redis.asyncio

        from botstate.stores.redis import RedisPersistence

        client = redis.asyncio.Redis.from_url(servers.REDIS_URL)
        persistence: Any = RedisPersistence(client, prefix=store_name)
    else:
        import psycopg_pool

        from botstate.stores.postgres import PostgresPersistence

        client = psycopg_pool.AsyncConnectionPool(servers.POSTGRES_URL, open=False)
        persistence = PostgresPersistence(client, table=store_name)
    await persistence.update_user_data(1, {"a": 1})
    await persistence.close()
    reopened = servers.open_persistence(server, store_name)
    assert await reopened.get_user_data() == {1: {"a": 1}}
    await reopened.close()


async def test_a_cycle_of_many_changed_records_is_stored(server: str, store_name: str) -> None:
    # Each changed key once took a lock of its own in PostgreSQL, and 10,000 of them ran out
    # of the server's lock table.
    persistence = servers.open_persistence(server, store_name)
    await persistence.get_user_data()
    await asyncio.gather(*(persistence.update_user_data(u, {"u": u}) for u in range(15000)))
    reader = servers.open_persistence(server, store_name)
    assert len(await reader.get_user_data()) == 15000
    await reader.close()
    await persistence.close()


@only("redis")
@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (lambda client, key: client.hdel(key, "d"), "lacks its value or version"),
        (lambda client, key: client.hdel(key, "v"), "lacks its value or version"),
        (lambda client, key: (client.delete(key), client.set(key, b"x")), "does not hold a hash"),
    ],
)
async def test_a_damaged_redis_record_is_an_error_not_an_absence(
    store_name: str, damage: Any, problem: str
) -> None:
    persistence = servers.open_persistence("redis", store_name)
    await asyncio.gather(*(persistence.update_user_data(u, {"u": u}) for u in (1, 42)))
    await persistence.close()
    client = redis.Redis.from_url(servers.REDIS_URL)
    record = next(
        key for key in client.scan_iter(f"{store_name}:*") if key.endswith(b"user_data:42")
    )
    damage(client, record)
    client.close()

    with pytest.raises(CorruptDataError, match=rf"user_data\[42\]: .*{problem}"):
        await servers.open_persistence("redis", store_name).get_user_data()
    skipping = servers.open_persistence("redis", store_name, on_corrupt="skip")
    assert await skipping.get_user_data() == {1: {"u": 1}}
    await skipping.close()
