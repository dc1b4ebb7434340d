"""A full disk or a failing write: the save raises, stored data stays, the next save succeeds."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import require
from .reliability import Unavailable
from .reliability.diskfull import on_small_disk, over_file_size_limit, small_disk
from .stores import FILE_STORES


@pytest.fixture
def disk() -> Iterator[Path]:
    """A 4 MiB tmpfs mounted for the test; skipped, saying why, where that is not allowed."""
    try:
        with small_disk() as folder:
            yield folder
    except Unavailable as exc:
        pytest.skip(str(exc))


@pytest.mark.parametrize("store", FILE_STORES)
async def test_a_save_on_a_full_disk_raises_keeps_the_data_and_the_next_one_succeeds(
    store: str, disk: Path
) -> None:
    require(store)
    await on_small_disk(store, disk)


@pytest.mark.parametrize("store", FILE_STORES)
def test_a_save_over_the_file_size_limit_raises_keeps_the_data_and_the_next_one_succeeds(
    store: str, tmp_path: Path
) -> None:
    require(store)
    assert over_file_size_limit(store, tmp_path) is None
