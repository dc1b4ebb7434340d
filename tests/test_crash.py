"""Crash safety: writers killed with SIGKILL at random moments lose nothing they reported done.

The quick version of the harness in ``tests/reliability/crash.py``; ``python -m
tests.reliability`` runs it with hundreds of kills per store for ``docs/reliability.md``.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from .conftest import require
from .reliability import QUICK
from .reliability.crash import crash_trial
from .stores import DURABLE

KILLS = QUICK.kills


@pytest.mark.parametrize("store", DURABLE)
def test_a_killed_writer_keeps_every_reported_cycle_and_no_half_cycle(
    store: str, tmp_path: Path
) -> None:
    require(store)
    figures = crash_trial(store, tmp_path, KILLS, seed=random.randrange(2**32))
    assert figures.problems == []
    assert figures.kills == KILLS
    # The writers got as far as writing cycles before most kills, so kills hit real writes.
    assert figures.cycles_confirmed > KILLS
