"""Run every reliability trial in full and write the figures to ``docs/reliability.md``.

    python -m tests.reliability                 # full run, writes docs/reliability.md
    python -m tests.reliability --quick -o -    # the CI sizes, printed

``scripts/reliability`` runs the first line. The full run takes 5 to 15 minutes on
two cores. It exits with status 1 when any trial found a problem; the file then lists them.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import logging
import os
import platform
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from tests import servers
from tests.stores import DURABLE, FILE_STORES, RECORD_STORES, STORES

from . import FULL, QUICK, Sizes, Unavailable
from .badvalues import BAD_VALUES, PLACES, RECORDS, BadValueFigures, bad_value_trial
from .corrupt import CorruptionFigures, damage_trial, unreadable_trial
from .crash import ROOT, CrashFigures, crash_trial
from .diskfull import on_small_disk, over_file_size_limit, small_disk
from .fuzz import FuzzFigures, fuzz_trial, targets

_T = TypeVar("_T")


@dataclass
class Report:
    sizes: Sizes
    seed: int
    crashes: list[CrashFigures] = field(default_factory=list)
    full_disks: dict[str, dict[str, str]] = field(default_factory=dict)
    damage: list[CorruptionFigures] = field(default_factory=list)
    unreadable: dict[str, str] = field(default_factory=dict)
    fuzz: list[FuzzFigures] = field(default_factory=list)
    bad_values: list[BadValueFigures] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def problems(self) -> list[str]:
        found = [
            p
            for group in (self.crashes, self.damage, self.fuzz)
            for f in group
            for p in f.problems
        ]
        found += [p for f in self.bad_values for p in f.problems]
        found += [
            f"{store}, {way}: {outcome}"
            for store, ways in self.full_disks.items()
            for way, outcome in ways.items()
            if not outcome.startswith(("passed", "not run"))
        ]
        found += [
            f"{store}, unreadable file: {outcome}"
            for store, outcome in self.unreadable.items()
            if not outcome.startswith(("CorruptDataError", "not run"))
        ]
        return found


def run(sizes: Sizes, seed: int) -> Report:
    report = Report(sizes, seed)
    started = time.monotonic()
    stores = [name for name in STORES if STORES[name].unavailable() is None]
    durable = [name for name in DURABLE if name in stores]
    in_files = [name for name in FILE_STORES if name in stores]
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        for store in durable:
            report.crashes.append(
                _step(
                    f"crash {store}",
                    crash_trial,
                    store,
                    folder / f"crash-{store}",
                    sizes.kills,
                    seed,
                )
            )
        for store in in_files:
            report.full_disks[store] = _step(f"disk full {store}", _full_disks, store, folder)
        for store in in_files:
            report.damage.append(
                _step(
                    f"damage {store}",
                    damage_trial,
                    store,
                    folder / f"damage-{store}",
                    sizes.damage_budget,
                    seed,
                )
            )
            report.unreadable[store] = _step(f"unreadable {store}", _unreadable, store)
        for target, fuzzed in targets().items():
            if fuzzed.store is None or fuzzed.store in stores:
                report.fuzz.append(_step(f"fuzz {target}", fuzz_trial, target, sizes.fuzz_inputs))
        for store in stores:
            report.bad_values.append(
                _step(f"bad values {store}", bad_value_trial, store, folder / f"bad-{store}")
            )
    report.seconds = time.monotonic() - started
    return report


def _step(what: str, trial: Callable[..., _T], *args: Any) -> _T:
    print(f"{what} ...", end=" ", file=sys.stderr, flush=True)
    started = time.monotonic()
    result = trial(*args)
    print(f"{time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
    return result


def _full_disks(store: str, folder: Path) -> dict[str, str]:
    outcomes = {}
    try:
        with small_disk() as disk:
            asyncio.run(on_small_disk(store, disk))
        outcomes["small tmpfs filled to the last byte"] = "passed"
    except Unavailable as exc:
        outcomes["small tmpfs filled to the last byte"] = f"not run: {exc}"
    except AssertionError as exc:
        outcomes["small tmpfs filled to the last byte"] = f"FAILED: {exc}"
    work = folder / f"limit-{store}"
    work.mkdir()
    problem = over_file_size_limit(store, work)
    outcomes["file size limit (RLIMIT_FSIZE)"] = (
        "passed" if problem is None else f"FAILED: {problem}"
    )
    return outcomes


def _unreadable(store: str) -> str:
    try:
        output, files = unreadable_trial(store)
    except Unavailable as exc:
        return f"not run: {exc}"
    if output.startswith("CorruptDataError: ") and any(path in output for path in files):
        return "CorruptDataError naming the file: " + output.split(": ", 1)[1].strip()
    return f"FAILED: {output.strip()}"


# -- the page ----------------------------------------------------------------------------------


def render(report: Report) -> str:
    lines = [
        "# Reliability: what was tried and what survived",
        "",
        "botstate promises that a bot loses no state when its process is killed while writing,",
        "when stored data is damaged or unreadable, or when one value cannot be stored. This",
        "page gives the figures of the trials that check those promises. It is written by the",
        "full run of the harness in `tests/reliability/`; regenerate it with one command:",
        "",
        "    ./scripts/reliability",
        "",
        "The same trials run in CI at small sizes (`tests/test_crash.py`, `test_disk_full.py`,",
        "`test_corruption.py`, `test_fuzz.py`, `test_bad_values.py`, `test_model.py`).",
        "",
        f"Run of {datetime.date.today().isoformat()} at commit {_commit()}: Python "
        f"{platform.python_version()}, SQLite {sqlite3.sqlite_version}, {platform.system()} "
        f"{platform.release()}, {os.cpu_count()} cores, seed {report.seed}; "
        f"{report.seconds / 60:.0f} min.",
        "",
        *_crash_section(report),
        *_disk_section(report),
        *_damage_section(report),
        *_fuzz_section(report),
        *_bad_value_section(report),
        *_limits_section(report),
    ]
    return "\n".join(lines).rstrip() + "\n"


def _commit() -> str:
    try:
        result = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return "(unknown)"
    return result.stdout.strip()


def _table(header: list[str], rows: list[list[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return [*lines, ""]


def _crash_section(report: Report) -> list[str]:
    rows = [
        [
            f.store,
            f.kills,
            f.killed_while_starting,
            f.cycles_confirmed,
            f.in_flight_whole,
            f.in_flight_absent,
            f.in_flight_partial,
            f.temporaries_left,
            len(f.problems),
        ]
        for f in report.crashes
    ]
    return [
        "## Killed while writing",
        "",
        "A bot-like writer (`tests/reliability/workload.py`) hands its store update cycles as",
        "python-telegram-bot does: the data of up to 30 users and 8 chats (1.5 KB each), a few",
        "of them dropped, conversation states set or ended, `bot_data` and the callback data",
        "cache. It reports each cycle once the persistence calls returned. It is killed with",
        "SIGKILL at a random moment: mostly within a quarter of a second of writing, one kill in",
        "ten while it opens and loads the store. The store is then reopened and checked: it",
        "must open; every reported cycle must be there in full, every value exactly as written;",
        "the cycle in flight must be there whole or not at all (in the one-file-per-kind pickle",
        "layout each kind's file is replaced on its own, so there each record must be old or",
        "new). The next writer continues from the state found.",
        "",
        *_table(
            [
                "store",
                "kills",
                "while opening",
                "cycles reported done (all found in full)",
                "cycle in flight: whole",
                "absent",
                "some kinds",
                "kills that left a half-written temporary file",
                "problems",
            ],
            rows,
        ),
        '"Kills that left a half-written temporary file" are kills that landed inside a file',
        "write: the new file was not yet renamed over the old one, and the old one loaded.",
        "",
    ]


def _disk_section(report: Report) -> list[str]:
    rows = [
        [store, way, outcome]
        for store, ways in report.full_disks.items()
        for way, outcome in ways.items()
    ]
    return [
        "## Disk full",
        "",
        "After a first save, the disk is filled and a 1 MiB value is saved: the save must raise",
        "`WriteError` naming the store, a new persistence must load the data of the first save",
        "unchanged, and once there is room again the next save must store everything, the",
        "failed record included (`tests/reliability/diskfull.py`).",
        "",
        *_table(["store", "full disk", "result"], rows),
    ]


def _damage_section(report: Report) -> list[str]:
    families = ["truncated", "byte flipped", "empty file", "folder in its place"]
    rows = []
    for f in report.damage:
        other = sum(n for family, n in f.tried.items() if family.startswith("another format"))
        rows.append(
            [
                f.store,
                *(f.tried[family] for family in families),
                other,
                f.outcomes["error"],
                f.outcomes["intact"],
                f.outcomes["new"],
                f.outcomes["different"],
                f.outcomes["exception"],
                len(f.problems),
            ]
        )
    unreadable = [[store, outcome] for store, outcome in report.unreadable.items()]
    return [
        "## Damaged, foreign and unreadable files",
        "",
        "A small reference store (8 users, 3 chats, `bot_data`, callback data, 4 conversations)",
        "is written, then each damage is tried on a fresh copy of it: every file cut at up to",
        f"{report.sizes.damage_budget} offsets (every offset of a smaller file), one byte changed",
        "at as many offsets, an empty file, a folder in its place, and files of other formats",
        "(random bytes, JSON, another program's SQLite database, the files of the other",
        "stores). Opening and loading it must raise `CorruptDataError` naming the damaged file",
        "and leave its bytes as they were (pickle stores must also refuse to write over it), or",
        "load exactly the reference data (damage in bytes nothing reads).",
        "",
        *_table(
            [
                "store",
                "cut",
                "byte changed",
                "empty",
                "folder",
                "other formats",
                "CorruptDataError",
                "loaded unchanged",
                "loaded as new",
                "loaded other data",
                "other exception",
                "problems",
            ],
            rows,
        ),
        "Pickle files end with a CRC-32 of their content (after the pickle, where",
        "python-telegram-bot's reader does not look): every changed byte is an error, except in",
        "the mark before the checksum, where the file then loads as one without a checksum,",
        "unchanged. SQLite is checked with its own `quick_check` and a page-size check on open;",
        "an empty SQLite file is a new database by design (a process killed while creating one",
        "leaves it). Each SQLite record carries a CRC-32 of its kind, key and value, so a",
        "changed byte in any of them is an error naming the record; what SQLite counts under",
        '"loaded other data" are changed bytes in the key of a conversation, which loads by its',
        "handler's name: the changed key can read as another handler's, or another chat's.",
        "JSON files carry no checksum, so that people can read and edit them: a changed digit",
        'or letter that leaves valid JSON loads as that other value ("loaded other data").',
        "",
        "A file its user may not read (mode 000, loaded as a user file modes apply to):",
        "",
        *_table(["store", "result"], unreadable),
        "One damaged record of a record store (" + ", ".join(RECORD_STORES) + ") stops the load",
        'with `CorruptDataError` naming its kind and key, or, with `on_corrupt="skip"`, is left',
        "out with a warning while the other records load; its stored bytes are kept",
        "(`tests/test_corruption.py`).",
        "",
    ]


def _fuzz_section(report: Report) -> list[str]:
    rows = [
        [f.target, f.inputs, f.rejected, f.inputs - f.rejected, len(f.problems)]
        for f in report.fuzz
    ]
    return [
        "## Fuzzing the loaders",
        "",
        "Hypothesis generates random bytes and mutations (changed, inserted and deleted bytes,",
        "cuts) of valid input for each loader (`tests/reliability/fuzz.py`), plus hostile input",
        "(lists nested 100 000 deep). The only exception a loader may raise is",
        "`CorruptDataError`.",
        "",
        *_table(["target", "inputs", "CorruptDataError", "loaded", "other exceptions"], rows),
    ]


def _bad_value_section(report: Report) -> list[str]:
    rows = [[f.store, f.tried, len(f.problems)] for f in report.bad_values]
    return [
        "## Values that cannot be stored",
        "",
        f"Each of {len(BAD_VALUES)} values no codec stores ({', '.join(BAD_VALUES)}) is put",
        f"{' and '.join(PLACES)} of a record of each of the {len(RECORDS)} kinds, in a cycle",
        "that also changes every other record. The bad record's call must raise `EncodingError`",
        "naming the record and the path inside it (`user_data[42]['cart'][1]`); every other",
        "record of the cycle must be stored; the bad record must keep its last stored version",
        "after a restart; writing it again must raise again (`tests/reliability/badvalues.py`).",
        "",
        *_table(["store", "trials", "problems"], rows),
        "In a python-telegram-bot application, python-telegram-bot deep-copies user, chat and",
        "bot data before handing them over, and a lock, socket or generator makes that copy",
        "raise inside the application: the cycle is lost and the periodic saving task ends. With",
        "`botstate.telegram.copy_safe_context_types()` the copy cannot fail, and the application",
        "reports the bad record through its error handlers on every cycle that writes it while",
        "saving everything else (`tests/test_bad_values.py`, with a real offline application).",
        "",
    ]


def _limits_section(report: Report) -> list[str]:
    problems = report.problems
    lines = [
        "## Known limits",
        "",
        "- Kills are SIGKILL of the process. Power loss, where the disk itself loses writes it",
        "  acknowledged, is not simulated; it is what `fsync` and SQLite's",
        '  `synchronous="FULL"` are for.',
        "- A changed byte in a JSON file, or in the key of a conversation stored in SQLite, can",
        "  load as different data (see above).",
        "- Some damaged pickles make Python's own unpickler print `SystemError: deallocated",
        "  bytearray object has exported buffers` on standard error while it fails; the load",
        "  still raises `CorruptDataError` and nothing else is affected.",
        "- python-telegram-bot also deep-copies its callback data cache; a value that cannot be",
        "  copied inside a button's callback data still breaks its save cycle.",
        "",
        "## Problems found by this run",
        "",
    ]
    if not problems:
        return [*lines, "None.", ""]
    return [*lines, *(f"- {problem}" for problem in problems), ""]


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.reliability", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="the small sizes CI uses")
    parser.add_argument("--seed", type=int, default=None, help="seed of the random choices")
    parser.add_argument(
        "-o",
        "--output",
        default=str(ROOT / "docs" / "reliability.md"),
        help="file, or - for stdout",
    )
    options = parser.parse_args()
    # Loaders warn about every file they reject; thousands of such warnings say nothing here.
    logging.disable(logging.WARNING)
    seed = options.seed if options.seed is not None else random.randrange(2**32)
    try:
        report = run(QUICK if options.quick else FULL, seed)
    finally:
        # Leave nothing of this run on the shared Redis and PostgreSQL servers.
        servers.remove_session()
    page = render(report)
    if options.output == "-":
        print(page)
    else:
        Path(options.output).parent.mkdir(parents=True, exist_ok=True)
        Path(options.output).write_text(page)
        print(f"wrote {options.output}", file=sys.stderr)
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
