"""Loads run with the cyclic garbage collector paused, and leave it as they found it."""

from __future__ import annotations

import gc
import threading

import pytest

from botstate._gc import collection_paused


def test_the_collector_is_paused_during_the_call_and_running_afterwards() -> None:
    assert collection_paused(gc.isenabled)() is False
    assert gc.isenabled()


def test_the_collector_runs_again_after_a_call_that_raised() -> None:
    def fails() -> None:
        raise RuntimeError("broken store")

    with pytest.raises(RuntimeError, match="broken store"):
        collection_paused(fails)()
    assert gc.isenabled()


def test_a_collector_the_program_switched_off_stays_off() -> None:
    gc.disable()
    try:
        collection_paused(lambda: None)()
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_overlapping_loads_resume_the_collector_after_the_last_one() -> None:
    inside, may_end = threading.Event(), threading.Event()

    def slow_load() -> None:
        inside.set()
        may_end.wait(5)

    thread = threading.Thread(target=collection_paused(slow_load))
    thread.start()
    try:
        assert inside.wait(5)
        collection_paused(lambda: None)()
        assert not gc.isenabled()
    finally:
        may_end.set()
        thread.join(5)
    assert gc.isenabled()


def test_what_a_load_made_goes_to_the_oldest_generation() -> None:
    loaded = collection_paused(lambda: [[number] for number in range(1000)])()
    oldest = {id(obj) for obj in gc.get_objects(generation=2)}
    assert id(loaded) in oldest
    assert all(id(item) in oldest for item in loaded)


def test_objects_the_program_froze_stay_frozen() -> None:
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        collection_paused(lambda: [[number] for number in range(100)])()
        assert gc.get_freeze_count() == frozen
        assert gc.isenabled()
    finally:
        gc.unfreeze()
