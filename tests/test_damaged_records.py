"""Record stores with on_corrupt="skip": a damaged record's bytes are never lost."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from botstate import CorruptDataError
from botstate.stores.base import DAMAGED_KIND, RecordStore, Row, damaged_origin

from .conftest import StoreFactory, store_factory
from .stores import RECORD_STORES

GARBAGE = b"\x80\x05not a pickle, not json"


async def damage_user_3(stores: StoreFactory) -> RecordStore:
    setup = stores.open()
    for user in (1, 3):
        await setup.update_user_data(user, {"n": user})
    store = setup.store
    assert isinstance(store, RecordStore)
    await setup._call(store.write_rows, [Row("user_data", "3", GARBAGE)], [])
    await setup.close()
    return store


@pytest.mark.parametrize("store_name", RECORD_STORES)
async def test_a_skipped_record_keeps_its_bytes_when_written_again(
    store_name: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with store_factory(store_name, tmp_path) as stores:
        await skipped_record_is_set_aside(stores, caplog)


async def skipped_record_is_set_aside(
    stores: StoreFactory, caplog: pytest.LogCaptureFixture
) -> None:
    await damage_user_3(stores)
    with pytest.raises(CorruptDataError, match=r"cannot decode user_data\[3\]"):
        await stores.open().get_user_data()

    persistence = stores.open(**{"on_corrupt": "skip"} if stores.name != "memory" else {})
    if stores.name == "memory":
        persistence.store.on_corrupt = "skip"  # type: ignore[attr-defined]
    with caplog.at_level(logging.WARNING):
        assert await persistence.get_user_data() == {1: {"n": 1}}
    assert "skipped user_data[3]" in caplog.text

    # The user talks to the bot again: the new data is stored, the old bytes are set aside.
    with caplog.at_level(logging.WARNING):
        await persistence.update_user_data(3, {"n": "new"})
    assert "its old bytes are kept as damaged record" in caplog.text
    store = persistence.store
    assert isinstance(store, RecordStore)
    aside = await persistence._call(lambda: list(store.rows(DAMAGED_KIND)))  # type: ignore[arg-type]
    assert [row.data for row in aside] == [GARBAGE]
    assert damaged_origin(aside[0].key) == ("user_data", "3")

    assert await stores.open().get_user_data() == {1: {"n": 1}, 3: {"n": "new"}}
    # A second write of the same record sets nothing more aside.
    await persistence.update_user_data(3, {"n": "newer"})
    assert len(await persistence._call(lambda: list(store.rows(DAMAGED_KIND)))) == 1  # type: ignore[arg-type]


@pytest.mark.parametrize("store_name", ["redis", "postgres", "redis-json", "postgres-json"])
@pytest.mark.parametrize("on_conflict", ["raise", "keep"])
async def test_a_skipped_server_record_is_replaced_without_a_conflict(
    store_name: str, on_conflict: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with store_factory(store_name, tmp_path) as stores:
        await damage_user_3(stores)
        persistence = stores.open(on_corrupt="skip", on_conflict=on_conflict)
        assert await persistence.get_user_data() == {1: {"n": 1}}
        with caplog.at_level(logging.WARNING):
            await persistence.update_user_data(3, {"n": "new"})
            await persistence.update_user_data(3, {"n": "newer"})
        assert "replaced by another process" not in caplog.text
        store = persistence.store
        assert isinstance(store, RecordStore)
        aside = await persistence._call(lambda: list(store.rows(DAMAGED_KIND)))  # type: ignore[arg-type]
        assert [row.data for row in aside] == [GARBAGE]
        assert await stores.open().get_user_data() == {1: {"n": 1}, 3: {"n": "newer"}}
