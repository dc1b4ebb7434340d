"""Damaged and hostile store files: each must be an error naming the file, or harmless.

:func:`damage_trial` writes a small reference store, then tries each damage on a fresh copy of
it: a file truncated at an offset, one byte flipped, an empty file, a folder in its place, a
file of another format. Opening and loading the damaged copy must either

* raise :class:`~botstate.errors.CorruptDataError` naming the damaged file, leave its bytes as
  they were, and (for snapshot stores) refuse writes; or
* load exactly the reference data (damage in bytes nothing reads, such as free space).

A store that keeps no checksum of its values (``every_damaged_byte_found=False``) may also load
different data after a flipped byte; such loads are counted and reported, and fail the trial
for every other store and every other damage.

:func:`unreadable_trial` covers a file its user may not read; it needs a user that file modes
apply to (not root), so as root it runs the load as ``nobody``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botstate import BotStateError, CorruptDataError
from botstate.persistence import Persistence
from tests.stores import FILE_STORES, STORES, StoreKind

from . import Unavailable
from .crash import ROOT
from .workload import HANDLER, load_all

Damage = Callable[[Path], None]


@dataclass
class CorruptionFigures:
    """What :func:`damage_trial` tried on one store, by damage, and what came of it."""

    store: str
    tried: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)


async def write_reference(folder: Path, store: str) -> None:
    """Write the small reference data set: a few records of every kind."""
    persistence = STORES[store].open(folder)
    await asyncio.gather(
        *(
            persistence.update_user_data(user, {"name": f"user {user}", "tags": ["a", "b"]})
            for user in range(1, 9)
        ),
        *(
            persistence.update_chat_data(-100 - chat, {"title": f"chat {chat}"})
            for chat in range(3)
        ),
        persistence.update_bot_data({"started": 1700000000, "counter": 41}),
        persistence.update_callback_data(
            ([("kb", 1700000000.5, {"b": {"page": 2}})], {"q": "kb"})
        ),
        *(persistence.update_conversation(HANDLER, (user, user), "ASK") for user in range(1, 5)),
    )
    await persistence.close()


def damage_trial(store: str, folder: Path, budget: int, seed: int) -> CorruptionFigures:
    """Try every kind of damage on *store*'s files, up to *budget* offsets per file for
    truncation and for flipped bytes (every offset when the file is no longer)."""
    rng = random.Random(seed)
    kind = STORES[store]
    figures = CorruptionFigures(store)
    references = {name: folder / "reference" / name for name in FILE_STORES}
    for name, reference in references.items():
        reference.mkdir(parents=True)
        asyncio.run(write_reference(reference, name))
    expected = asyncio.run(_load(store, references[store]))

    for target in files_of(kind, references[store]):
        for family, damage in _damages(target, references, budget, rng):
            outcome, problem = asyncio.run(
                _try(store, references[store], folder / "work", target.name, damage, expected)
            )
            figures.tried[family] += 1
            figures.outcomes[outcome] += 1
            known_limit = (family == "byte flipped" and not kind.every_damaged_byte_found) or (
                family.startswith("another format") and not kind.tells_files_apart
            )
            if outcome == "different" and not known_limit:
                problem = "loaded different data without an error"
            if outcome == "new" and not (family == "empty file" and kind.empty_file_is_new):
                problem = "loaded as a new, empty store"
            if problem:
                figures.problems.append(f"{store}, {target.name}, {family}: {problem}")
    return figures


def files_of(store: StoreKind, folder: Path) -> list[Path]:
    """The files of a store kept in files."""
    assert store.files is not None, f"{store.name} is not kept in files"
    return store.files(folder)


def _damages(
    target: Path, references: dict[str, Path], budget: int, rng: random.Random
) -> Iterator[tuple[str, Damage]]:
    """(family, damage) pairs for one file of the reference store."""
    data = target.read_bytes()
    # Cut to nothing is the "empty file" case, tried on its own.
    for offset in _offsets(len(data), budget, rng, start=1):
        yield "truncated", _writer(data[:offset])
    for offset in _offsets(len(data), budget, rng):
        flipped = bytearray(data)
        flipped[offset] ^= rng.randrange(1, 256)
        yield "byte flipped", _writer(bytes(flipped))
    yield "empty file", _writer(b"")
    yield "folder in its place", _folder
    for name, content in _foreign_files(references, rng).items():
        if content != data:
            yield f"another format: {name}", _writer(content)


def _offsets(size: int, budget: int, rng: random.Random, start: int = 0) -> list[int]:
    if size - start <= budget:
        return list(range(start, size))
    return sorted(rng.sample(range(start, size), budget))


def _writer(content: bytes) -> Damage:
    def write(path: Path) -> None:
        path.write_bytes(content)

    return write


def _folder(path: Path) -> None:
    path.unlink()
    path.mkdir()
    (path / "inside.txt").write_text("kept")


def _foreign_files(references: dict[str, Path], rng: random.Random) -> dict[str, bytes]:
    """Files of other formats: other programs' and other botstate stores'.

    Pickles of other data are not among them: any pickle is a valid ``bot_data`` file of
    python-telegram-bot's layout. ``tests/test_pickle_files.py`` covers the shapes a pickle
    file must have where the layout asks for one.
    """
    foreign = {
        "random bytes": rng.randbytes(4096),
        "JSON text": json.dumps({"user_data": {"1": {"a": 1}}, "chat_data": {}}).encode(),
    }
    with tempfile.TemporaryDirectory() as scratch:
        other = Path(scratch) / "other.db"
        connection = sqlite3.connect(other)
        connection.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)")
        connection.execute("INSERT INTO notes (text) VALUES ('not a bot')")
        connection.commit()
        connection.close()
        foreign["another program's SQLite database"] = other.read_bytes()
    for name, reference in references.items():
        for path in files_of(STORES[name], reference):
            foreign[f"{name} file {path.name}"] = path.read_bytes()
    return foreign


async def _load(store: str, folder: Path) -> dict[Any, Any]:
    persistence = STORES[store].open(folder)
    try:
        return await load_all(persistence)
    finally:
        await persistence.close()


async def _try(
    store: str,
    reference: Path,
    work: Path,
    target_name: str,
    damage: Damage,
    expected: dict[Any, Any],
) -> tuple[str, str | None]:
    """Damage a copy of the reference store, open it; return the outcome and any problem.

    Outcomes: ``error`` (CorruptDataError), ``intact`` (the reference data), ``new`` (an empty
    store), ``different`` (other data) and ``exception`` (any other exception: a problem).
    """
    if work.exists():
        shutil.rmtree(work)
    shutil.copytree(reference, work)
    target = work / target_name
    damage(target)
    names = [path.name for path in files_of(STORES[store], reference)]
    before = _snapshot(work, names)

    persistence = STORES[store].open(work)
    try:
        try:
            loaded = await load_all(persistence)
        except CorruptDataError as exc:
            return "error", await _refusal_problem(store, persistence, target, exc, before)
        except Exception as exc:
            return "exception", f"{type(exc).__name__}: {exc}"
    finally:
        with contextlib.suppress(BotStateError):
            await persistence.close()
    if loaded == expected:
        return "intact", None
    return ("new" if not loaded else "different"), None


async def _refusal_problem(
    store: str,
    persistence: Persistence[Any, Any, Any],
    target: Path,
    error: CorruptDataError,
    before: dict[str, object],
) -> str | None:
    """What is wrong with how a load failed, or None."""
    if str(target) not in str(error):
        return f"the error does not name {target}: {error}"
    if _snapshot(target.parent, list(before)) != before:
        return "opening changed the damaged file"
    if STORES[store].record_bytes is None:
        # A snapshot store rewrites whole files: a write of any kind must leave the file it
        # could not read alone (refused, or written to another kind's file).
        await asyncio.gather(
            persistence.update_user_data(999, {"new": True}),
            persistence.update_chat_data(-999, {"new": True}),
            persistence.update_bot_data({"new": True}),
            persistence.update_callback_data(([], {})),
            persistence.update_conversation(HANDLER, (999,), "NEW"),
            return_exceptions=True,
        )
        if _snapshot(target.parent, [target.name]) != {
            k: v for k, v in before.items() if k == target.name
        }:
            return "a write changed the file that could not be read"
    return None


def _snapshot(work: Path, names: list[str]) -> dict[str, object]:
    state: dict[str, object] = {}
    for name in names:
        path = work / name
        if path.is_dir():
            state[name] = sorted((p.name, p.read_bytes()) for p in path.iterdir())
        elif path.exists():
            state[name] = path.read_bytes()
    return state


# -- a file its user may not read --------------------------------------------------------------


def unreadable_trial(store: str) -> tuple[str, list[str]]:
    """Make the store's files unreadable and load it as a user file modes apply to.

    Returns what the load printed (``CorruptDataError: ...`` expected) and the files, or raises
    :class:`Unavailable` saying why no such user can run it here.
    """
    shared = Path(tempfile.mkdtemp(prefix="botstate-perm-"))
    try:
        shared.chmod(0o755)  # Another user may enter; the store files stay private.
        asyncio.run(write_reference(shared, store))
        files = files_of(STORES[store], shared)
        for path in files:
            path.chmod(0o000)
        result = run_as_unprivileged_user(
            "from tests.reliability.corrupt import load_and_report\n"
            f"load_and_report({store!r}, {str(shared)!r})\n"
        )
        for path in files:
            path.chmod(0o600)
        return result.stdout + result.stderr[-1500:], [str(path) for path in files]
    finally:
        shutil.rmtree(shared)


def load_and_report(store: str, folder: str) -> None:
    """Load the store and print the CorruptDataError it raises (run by unreadable_trial)."""
    try:
        asyncio.run(_load(store, Path(folder)))
    except CorruptDataError as exc:
        print(f"CorruptDataError: {exc}")
    else:
        print("loaded without an error")


def run_as_unprivileged_user(code: str) -> subprocess.CompletedProcess[str]:
    """Run Python *code* with botstate and the tests importable, as a user whom file modes
    apply to.

    root reads any file whatever its mode, so as root the code runs as ``nobody`` with an
    interpreter that user may execute; raises :class:`Unavailable` where there is none.
    """
    path = os.pathsep.join([str(ROOT / "src"), str(ROOT)])
    if os.geteuid() != 0:
        command, user = [sys.executable], None
    else:
        command, user = ["/usr/bin/python3"], "nobody"
        probe = subprocess.run(
            [
                *command,
                "-c",
                "import sys, botstate, tests.stores; assert sys.version_info >= (3, 10)",
            ],
            user=user,
            env={"PYTHONPATH": path},
            capture_output=True,
            check=False,
            timeout=60,
        )
        if probe.returncode != 0:
            raise Unavailable(
                "running as root, and user 'nobody' cannot run /usr/bin/python3 (3.10+) with "
                f"botstate from {ROOT}: {probe.stderr.decode()[-300:]}"
            )
    return subprocess.run(
        [*command, "-c", code],
        user=user,
        env={**os.environ, "PYTHONPATH": path, "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
