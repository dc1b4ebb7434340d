"""Damaged, hostile and unreadable stores: an error naming the file and record, never a fresh
start over the data.

The quick version of ``tests/reliability/corrupt.py``; ``python -m tests.reliability`` tries
every offset of every file for ``docs/reliability.md``.
"""

from __future__ import annotations

import asyncio
import logging
import random
from pathlib import Path

import pytest

from botstate import CorruptDataError

from .conftest import require
from .reliability import QUICK, Unavailable
from .reliability.corrupt import damage_trial, unreadable_trial
from .stores import FILE_STORES, RECORD_STORES, STORES

#: Offsets per file tried for truncation and for flipped bytes.
BUDGET = QUICK.damage_budget


@pytest.mark.parametrize("store", FILE_STORES)
def test_damaged_files_give_an_error_naming_the_file_or_load_unchanged(
    store: str, tmp_path: Path
) -> None:
    require(store)
    figures = damage_trial(store, tmp_path, BUDGET, seed=random.randrange(2**32))
    assert figures.problems == []
    assert figures.outcomes["exception"] == 0
    assert figures.outcomes["error"] > BUDGET
    assert {"truncated", "byte flipped", "empty file", "folder in its place"} <= set(figures.tried)
    assert sum(family.startswith("another format") for family in figures.tried) >= 4


@pytest.mark.parametrize("store", FILE_STORES)
def test_a_file_its_user_may_not_read_gives_an_error_naming_it(store: str) -> None:
    require(store)
    try:
        output, files = unreadable_trial(store)
    except Unavailable as exc:
        pytest.skip(str(exc))
    assert output.startswith("CorruptDataError: "), output
    assert any(path in output for path in files), output
    assert "ermission" in output or "may not read" in output, output


@pytest.mark.parametrize(
    ("kind", "key", "key_text", "name"),
    [
        ("user_data", 3, "3", r"user_data\[3\]"),
        ("conversations", ("flow", (3, "x")), '["flow",[3,"x"]]', r"conversations\['flow'\]"),
    ],
)
@pytest.mark.parametrize("store", RECORD_STORES)
async def test_one_damaged_record_is_named_or_skipped_and_its_bytes_are_kept(
    store: str,
    kind: str,
    key: object,
    key_text: str,
    name: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    require(store)
    entry = STORES[store]
    assert entry.record_bytes is not None
    assert entry.set_record_bytes is not None
    setup = entry.open(tmp_path)
    await asyncio.gather(
        *(setup.update_user_data(n, {"n": n}) for n in range(5)),
        *(setup.update_conversation("flow", (n, "x"), "S") for n in range(5)),
    )
    await setup.close()
    garbage = bytes.fromhex("80059500")  # a pickle cut short
    entry.set_record_bytes(tmp_path, kind, key_text, garbage)

    stopping = entry.open(tmp_path)

    async def load_the_damaged_kind() -> object:
        if kind == "user_data":
            return await stopping.get_user_data()
        return await stopping.get_conversations("flow")

    with pytest.raises(CorruptDataError, match=f"cannot decode {name}") as caught:
        await load_the_damaged_kind()
    assert (caught.value.kind, caught.value.key) == (kind, key)
    await stopping.close()

    skipping = entry.open(tmp_path, on_corrupt="skip")
    with caplog.at_level(logging.WARNING):
        users = await skipping.get_user_data()
        conversations = await skipping.get_conversations("flow")
    loaded = {("user_data", k): v for k, v in users.items()}
    loaded |= {("conversations", ("flow", k)): v for k, v in conversations.items()}
    assert len(loaded) == 9
    assert (kind, key) not in loaded
    assert f"skipped {name.replace(chr(92), '')}" in caplog.text
    assert skipping.store.skipped == [(kind, key_text)]  # type: ignore[attr-defined]
    await skipping.close()
    assert entry.record_bytes(tmp_path, kind, key_text) == garbage
