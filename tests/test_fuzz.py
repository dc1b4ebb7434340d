"""Loaders given random, mutated and hostile input raise nothing but CorruptDataError.

The quick version of ``tests/reliability/fuzz.py``; ``python -m tests.reliability`` gives each
target thousands of inputs for ``docs/reliability.md``.
"""

from __future__ import annotations

import pytest

from .conftest import require
from .reliability import QUICK
from .reliability.fuzz import fuzz_trial, targets

EXAMPLES = QUICK.fuzz_inputs


@pytest.mark.parametrize("target", list(targets()))
def test_a_loader_raises_only_corrupt_data_error_on_random_and_mutated_input(target: str) -> None:
    store = targets()[target].store
    if store is not None:
        require(store)
    figures = fuzz_trial(target, EXAMPLES)
    assert figures.problems == []
    assert figures.inputs >= EXAMPLES
    assert figures.rejected > 0
