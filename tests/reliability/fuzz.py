"""Fuzzing botstate's loaders with random and mutated input (hypothesis).

Each target hands one input to a loader: the pickle codec, a pickle file of either layout (as
damaged, and with its checksum made to match again, so the loader behind the check is reached
too), an SQLite database file, one row of an SQLite database. The only exception a loader may
raise is :class:`~botstate.errors.CorruptDataError` (with its subclasses);
:func:`fuzz_trial` counts the inputs tried and reports any other exception with its input.
"""

from __future__ import annotations

import asyncio
import logging
import pickle
import shutil
import sqlite3
import tempfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from botstate import CorruptDataError
from botstate.codecs import PickleCodec
from botstate.stores.files import CHECKSUM_MARK
from tests.stores import STORES

from .corrupt import files_of, write_reference
from .workload import load_all

Mutation = tuple[str, int, int]


@dataclass
class FuzzFigures:
    """Inputs one target was given, and what the loader made of them."""

    target: str
    inputs: int = 0
    rejected: int = 0
    problems: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Target:
    """A loader to fuzz: ``run(input, scratch folder)``, its input strategy, and hostile inputs
    always tried."""

    run: Callable[[Any, Path], None]
    inputs: Callable[[dict[str, bytes]], st.SearchStrategy[Any]]
    hostile: tuple[Any, ...] = ()
    #: The store the target needs, if any.
    store: str | None = None


# -- inputs ------------------------------------------------------------------------------------

_mutations = st.lists(
    st.tuples(
        st.sampled_from(["flip", "set", "insert", "delete", "cut"]),
        st.integers(0, 1 << 16),
        st.integers(0, 255),
    ),
    min_size=1,
    max_size=4,
)


def mutate(data: bytes, mutations: list[Mutation]) -> bytes:
    """Apply byte mutations: flip bits of, set, insert or delete a byte, or cut the data."""
    result = bytearray(data)
    for action, where, byte in mutations:
        position = where % (len(result) + 1)
        if action == "insert":
            result.insert(position, byte)
        elif action == "cut":
            del result[position:]
        elif position < len(result):
            if action == "flip":
                result[position] ^= byte or 1
            elif action == "set":
                result[position] = byte
            else:
                del result[position]
    return bytes(result)


def deeply_nested(content: object, depth: int = 100_000) -> bytes:
    """Pickle *content* with its string ``"NESTED"`` replaced by lists nested *depth* deep:
    cheap to unpickle, but copying it needs a Python frame per level."""
    nested = b"]" * depth + b"a" * (depth - 1)
    return pickle.dumps(content, protocol=5).replace(b"\x8c\x06NESTED", nested)


def seal(body: bytes, kind: str | None) -> bytes:
    """End *body* with a matching checksum, in the format botstate's pickle files use."""
    start = 0 if kind is None else zlib.crc32(kind.encode())
    return body + CHECKSUM_MARK + b"%08x" % zlib.crc32(body, start)


def _unsealed(data: bytes) -> bytes:
    mark = data.rfind(CHECKSUM_MARK)
    return data if mark < 0 else data[:mark]


def _bytes_from(seed_names: list[str]) -> Callable[[dict[str, bytes]], st.SearchStrategy[bytes]]:
    """Random bytes, or one of the named seeds mutated."""

    def inputs(seeds: dict[str, bytes]) -> st.SearchStrategy[bytes]:
        mutated = st.builds(
            mutate, st.sampled_from([seeds[name] for name in seed_names]), _mutations
        )
        return st.one_of(st.binary(max_size=1024), mutated)

    return inputs


def _resealed(seed_name: str, kind: str | None) -> Callable[[dict[str, bytes]], Any]:
    """A damaged file whose checksum was made to match the damage, so the loader behind the
    check is reached."""

    def inputs(seeds: dict[str, bytes]) -> st.SearchStrategy[bytes]:
        body = _unsealed(seeds[seed_name])
        return st.builds(lambda mutations: seal(mutate(body, mutations), kind), _mutations)

    return inputs


# -- targets -----------------------------------------------------------------------------------

_BOT = object()


def _decode(data: bytes, folder: Path) -> None:
    PickleCodec().decode(data, bot=_BOT)


def _load_file(store: str, name: str | None = None) -> Callable[[bytes, Path], None]:
    """Load a copy of *store*'s reference data with file *name* (default: its first file)
    replaced by the input."""

    def run(data: bytes, folder: Path) -> None:
        reference = _reference(folder, store)
        work = _fresh(folder / "work")
        shutil.copytree(reference, work, dirs_exist_ok=True)
        (work / (name or files_of(STORES[store], reference)[0].name)).write_bytes(data)
        asyncio.run(_load(store, work))

    return run


def _load_record(store: str) -> Callable[[bytes, Path], None]:
    """Load *store*'s reference data with one record's stored bytes replaced by the input."""

    def run(data: bytes, folder: Path) -> None:
        reference = _reference(folder, store)
        set_record_bytes = STORES[store].set_record_bytes
        assert set_record_bytes is not None
        set_record_bytes(reference, "user_data", "1", data)
        for on_corrupt in ("raise", "skip"):
            asyncio.run(_load(store, reference, on_corrupt=on_corrupt))

    return run


_sqlite_integers = st.integers(-(2**63), 2**63 - 1)
_sqlite_rows = st.tuples(
    st.one_of(st.sampled_from(["user_data", "chat_data", "bot_data", "conversations"]), st.text()),
    st.one_of(st.text(max_size=24), _sqlite_integers, st.sampled_from(["", "1", '["flow",[1]]'])),
    st.one_of(
        st.binary(max_size=64),
        st.text(max_size=16),
        _sqlite_integers,
        st.floats(allow_nan=False),
        st.sampled_from([pickle.dumps({"a": [1, 2]}), b"\x80\x05\x95"]),
    ),
    st.one_of(_sqlite_integers, st.text(max_size=4), st.floats(allow_nan=False)),
)


def _load_sqlite_row(row: tuple[Any, Any, Any, Any], folder: Path) -> None:
    """Add one row of any column types to a copy of the reference database, load it."""
    work = _fresh(folder / "work")
    shutil.copy(_reference(folder, "sqlite") / "state.db", work / "state.db")
    with sqlite3.connect(work / "state.db") as connection:
        connection.execute(
            "INSERT OR REPLACE INTO botstate_records VALUES (?, ?, ?, ?, 0, NULL)", row
        )
    connection.close()
    for on_corrupt in ("raise", "skip"):
        asyncio.run(_load("sqlite", work, on_corrupt=on_corrupt))


def targets() -> dict[str, Target]:
    """Every fuzz target: codecs, then per store its files or its records, then extras."""
    found = {
        "pickle codec": Target(
            _decode,
            _bytes_from(["record", "placeholder", "protocol 0", "protocol 2"]),
            (deeply_nested("NESTED"),),
        ),
    }
    for name, store in STORES.items():
        if store.files is not None:
            found[f"{name}: its first file"] = Target(
                _load_file(name), _bytes_from([name]), store=name
            )
        if store.set_record_bytes is not None:
            found[f"{name}: one record's bytes"] = Target(
                _load_record(name), _bytes_from(["record", "protocol 0"]), store=name
            )
    found.update(
        {
            "pickle: file with its checksum made to match": Target(
                _load_file("pickle", "state.pickle"),
                _resealed("pickle", None),
                (seal(deeply_nested({"user_data": {1: "NESTED"}, "conversations": {}}), None),),
                store="pickle",
            ),
            "pickle-multi: user_data file with its checksum made to match": Target(
                _load_file("pickle-multi", "state_user_data"),
                _resealed("pickle-multi", "user_data"),
                (seal(deeply_nested({1: "NESTED"}), "user_data"),),
                store="pickle-multi",
            ),
            "sqlite: one row of any column types": Target(
                _load_sqlite_row, lambda seeds: _sqlite_rows, store="sqlite"
            ),
        }
    )
    return found


def _reference(folder: Path, store: str) -> Path:
    return folder / "references" / store


def _seeds(folder: Path, store: str | None) -> dict[str, bytes]:
    """Valid inputs to mutate: encoded records and, for a target that needs *store*, that
    store's first file (of its reference data, written under *folder* for the target)."""
    record = {"name": "Ada", "ids": (1, -5), "tags": {"x"}, "when": 1.5, "raw": b"\x00", "n": None}
    seeds = {
        "record": pickle.dumps(record, protocol=5),
        "protocol 0": pickle.dumps(record, protocol=0),
        "protocol 2": pickle.dumps(record, protocol=2),
        "placeholder": PickleCodec().encode({"bot": _BOT, "list": [_BOT]}, bot=_BOT),
    }
    if store is not None:
        reference = _reference(folder, store)
        reference.mkdir(parents=True, exist_ok=True)
        asyncio.run(write_reference(reference, store))
        if STORES[store].files is not None:
            seeds[store] = files_of(STORES[store], reference)[0].read_bytes()
    return seeds


def fuzz_trial(target: str, examples: int, folder: Path | None = None) -> FuzzFigures:
    """Give *target* *examples* generated inputs; collect anything but CorruptDataError."""
    figures = FuzzFigures(target)
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch) if folder is None else folder
        fuzzed = targets()[target]
        seeds = _seeds(work, fuzzed.store)

        @settings(
            max_examples=examples,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(fuzzed.inputs(seeds))
        def check(data: Any) -> None:
            figures.inputs += 1
            try:
                fuzzed.run(data, work)
            except CorruptDataError:
                figures.rejected += 1

        for hostile in fuzzed.hostile:
            check = example(hostile)(check)

        # Loaders log every file they reject; thousands of warnings say nothing here.
        logging.disable(logging.WARNING)
        try:
            check()
        except Exception as exc:
            # Hypothesis reports distinct failures together; each says its input in a note.
            failures = getattr(exc, "exceptions", (exc,))
            for failure in failures:
                notes = "; ".join(getattr(failure, "__notes__", []))
                figures.problems.append(
                    f"{target}: {type(failure).__name__}: {failure} ({notes})"[:2000]
                )
        finally:
            logging.disable(logging.NOTSET)
    return figures


async def _load(store: str, folder: Path, **options: Any) -> None:
    persistence = STORES[store].open(folder, **options)
    try:
        await load_all(persistence)
    finally:
        await persistence.close()


def _fresh(folder: Path) -> Path:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    return folder
