"""botstate's reliability harness: crash, corruption, fuzz and bad-value trials, shared by the
quick tests in CI (``tests/test_crash.py``, ...) and the full run that writes
``docs/reliability.md`` (``python -m tests.reliability``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Sizes:
    """How much each trial tries: kills per store, offsets per file for each damage, fuzz
    inputs per target."""

    kills: int
    damage_budget: int
    fuzz_inputs: int


#: The full run, whose figures go into docs/reliability.md.
FULL = Sizes(kills=500, damage_budget=3000, fuzz_inputs=3000)
#: The quick run of the test suite.
QUICK = Sizes(kills=40, damage_budget=12, fuzz_inputs=80)


class Unavailable(Exception):
    """A trial cannot run here (no root, no unprivileged user...); the message says why."""
