"""from_url: every scheme, bare paths recognised by content, masked passwords."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from botstate import MemoryPersistence, PicklePersistence, SQLitePersistence, from_url
from botstate.stores.sqlite import SQLiteStore
from botstate.urls import mask_url


async def test_sqlite_url_with_options(tmp_path: Path) -> None:
    persistence = from_url(f"sqlite://{tmp_path}/bot.db?synchronous=FULL&lock_timeout=2.5")
    assert isinstance(persistence, SQLitePersistence)
    assert isinstance(persistence.store, SQLiteStore)
    assert persistence.path == tmp_path / "bot.db"
    assert persistence.store.synchronous == "FULL"
    assert persistence.store.lock_timeout == 2.5


async def test_keyword_options_override_the_query(tmp_path: Path) -> None:
    persistence = from_url(f"pickle://{tmp_path}/bot?single_file=false", single_file=True)
    assert isinstance(persistence, PicklePersistence)
    assert persistence.single_file is True
    assert isinstance(from_url("memory://"), MemoryPersistence)


async def test_a_bare_path_is_recognised_by_its_contents(tmp_path: Path) -> None:
    database = SQLitePersistence(tmp_path / "state")
    await database.update_user_data(1, {})
    await database.close()
    assert isinstance(from_url(tmp_path / "state"), SQLitePersistence)

    (tmp_path / "bot.pickle").write_bytes(pickle.dumps({"user_data": {}}))
    assert isinstance(from_url(str(tmp_path / "bot.pickle")), PicklePersistence)

    (tmp_path / "multi_user_data").write_bytes(pickle.dumps({}))
    multi = from_url(tmp_path / "multi")
    assert isinstance(multi, PicklePersistence)
    assert multi.single_file is False


def test_unknown_things_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown store URL 'ftp://u:\*\*\*@host/x'"):
        from_url("ftp://u:secret@host/x")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match=r"notes\.txt is not a store botstate recognises"):
        from_url(tmp_path / "notes.txt")
    with pytest.raises(ValueError, match=r"missing\.db does not exist"):
        from_url(tmp_path / "missing.db")


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("lock_timeout=abc", "option lock_timeout must be a number, got 'abc'"),
        ("synchronous=FULL&lock_timeout=", "option lock_timeout must be a number, got ''"),
        ("on_flush=maybe", "option on_flush must be true or false, got 'maybe'"),
        ("bogus=1", "unexpected keyword argument 'bogus'"),
    ],
)
def test_a_bad_option_in_a_file_url_names_the_url(
    tmp_path: Path, query: str, message: str
) -> None:
    url = f"sqlite://{tmp_path}/bot.db?{query}"
    with pytest.raises(ValueError, match=r"option|keyword") as caught:
        from_url(url)
    assert str(caught.value).startswith(f"sqlite://{tmp_path}/bot.db?")
    assert message in str(caught.value)
    assert not (tmp_path / "bot.db").exists()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("pickle:///x/bot.pickle?single_file=maybe", "single_file must be true or false"),
        ("redis://:pw@127.0.0.1:1/0?ttl=abc", "option ttl must be a number, got 'abc'"),
        ("redis://:pw@127.0.0.1:1/0?timeout=soon", "option timeout must be a number"),
        ("postgresql://u:pw@127.0.0.1:1/x?retries=1.5", "retries must be a whole number"),
    ],
)
def test_a_bad_option_value_is_refused_before_anything_opens(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        from_url(url)
    assert "pw" not in str(caught.value)


def test_options_given_in_python_are_checked_too_but_take_their_own_types() -> None:
    persistence = from_url("redis://127.0.0.1:1/0?ttl=60", ttl={"fsm": 30.5})
    assert persistence is not None
    with pytest.raises(ValueError, match="option update_interval must be a number"):
        from_url("memory://", update_interval="soon")


def test_passwords_are_masked() -> None:
    assert mask_url("redis://:pw@localhost:6379/0") == "redis://:***@localhost:6379/0"
    assert mask_url("postgresql://bot:s3cr3t@db/x") == "postgresql://bot:***@db/x"
    assert mask_url("sqlite:///a/b.db") == "sqlite:///a/b.db"
    assert (
        mask_url("redis://127.0.0.1:6379/0?prefix=x&password=S3cr3t-pw%21#bot")
        == "redis://127.0.0.1:6379/0?prefix=x&password=***#bot"
    )
    assert mask_url("postgresql://h/db?sslpassword=a&password=b") == (
        "postgresql://h/db?sslpassword=***&password=***"
    )
    assert mask_url("host=h dbname=x password='p w' user=u") == (
        "host=h dbname=x password=*** user=u"
    )


def test_server_urls_open_the_server_stores_without_connecting() -> None:
    from botstate import PostgresPersistence, RedisPersistence
    from botstate.stores.postgres import PostgresStore
    from botstate.stores.redis import RedisStore

    persistence = from_url(
        "redis://127.0.0.1:6379/2?prefix=mybot&ttl=60&on_conflict=raise&health_check_interval=5"
    )
    assert isinstance(persistence, RedisPersistence)
    store = persistence.store
    assert isinstance(store, RedisStore)
    assert (store.prefix, store.on_conflict, store.ttl["user_data"]) == ("mybot", "raise", 60)
    settings = store._client.connection_pool.connection_kwargs
    assert (settings["db"], settings["health_check_interval"]) == (2, 5)  # for the driver

    tls = from_url("rediss://:pw@127.0.0.1:6380/0", prefix="x")
    assert isinstance(tls.store, RedisStore)
    assert tls.store._client.connection_pool.connection_class.__name__ == "SSLConnection"
    assert ":pw@" not in repr(tls)

    postgres = from_url(
        "postgresql://bot:pw@127.0.0.1:5432/test?table=t1&schema=s1&sslmode=disable&retries=1"
    )
    assert isinstance(postgres, PostgresPersistence)
    assert isinstance(postgres.store, PostgresStore)
    assert (postgres.store.table, postgres.store.schema, postgres.store.retries) == (
        "t1",
        "s1",
        1,
    )
    assert postgres.store._dsn == "postgresql://bot:pw@127.0.0.1:5432/test?sslmode=disable"
    assert (
        postgres.store.location == "postgresql://bot:***@127.0.0.1:5432/test?sslmode=disable#s1.t1"
    )
    assert ":pw@" not in repr(postgres)
    assert isinstance(from_url("postgres://127.0.0.1/test"), PostgresPersistence)


@pytest.mark.parametrize(
    ("kind", "key", "group"),
    [
        ("user_data", "42", "42"),
        ("chat_data", "-100123", "-100123"),
        ("conversations", '["signup",[-100123,42]]', "-100123"),
        ("conversations", '["a,[b",[7]]', "7"),
        ("conversations", '["inline",["AbCd"]]', None),
        ("conversations", '["empty",[]]', None),
        ("bot_data", "", None),
    ],
)
def test_records_of_one_id_form_one_expiry_group(kind: str, key: str, group: str | None) -> None:
    from botstate.stores.server import group_of

    assert group_of(kind, key) == group
