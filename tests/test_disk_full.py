"""A full disk or a failing write: the save raises, stored data stays, the next save succeeds."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import require
from .reliability.crash import ROOT
from .reliability.diskfull import fill, full_disk_scenario
from .stores import DURABLE


@pytest.fixture
def small_disk() -> Iterator[Path]:
    """A folder on a 4 MiB tmpfs mounted for the test (needs root; skipped otherwise)."""
    folder = Path(tempfile.mkdtemp(prefix="botstate-full-"))
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m,mode=700", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        folder.rmdir()
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        # Lazily, so that a store a failed test left open cannot keep the mount.
        subprocess.run(["umount", "--lazy", str(folder)], check=True)
        folder.rmdir()


@pytest.mark.parametrize("store", DURABLE)
async def test_a_save_on_a_full_disk_raises_keeps_the_data_and_the_next_one_succeeds(
    store: str, small_disk: Path
) -> None:
    require(store)
    filler: list[Path] = []

    def make_room() -> None:
        with contextlib.suppress(IndexError):
            filler.pop().unlink()

    await full_disk_scenario(store, small_disk, lambda: filler.append(fill(small_disk)), make_room)


@pytest.mark.parametrize("store", DURABLE)
def test_a_save_over_the_file_size_limit_raises_keeps_the_data_and_the_next_one_succeeds(
    store: str, tmp_path: Path
) -> None:
    require(store)
    result = subprocess.run(
        [sys.executable, "-m", "tests.reliability.diskfull", store, str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
