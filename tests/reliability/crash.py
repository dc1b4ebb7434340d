"""Kill a bot-like writer with SIGKILL at random moments, then check what its store kept.

A writer opens a store (see ``tests/stores.py``), loads everything as an application does at
start-up, says ``ready``, then hands the store cycle after cycle of the workload
(``workload.py``) and reports each cycle's number once its persistence calls returned.

:func:`kill_repeatedly` starts writers one after the other on the same store and kills each at
a random moment: mostly while it writes cycles, sometimes while it opens and loads the store.
After each kill it reopens the store and checks that it opens, that every cycle reported done
is there in full, and that the cycle in flight is there whole or not at all (for stores that
are not atomic across kinds: each record old or new, never mixed). The next writer continues
from the state found.

Writers are forked from a launcher process (``python -m tests.reliability.crash``) that has
imported everything already, so a kill costs no interpreter start-up. The launcher reads one
``STORE FOLDER SEED START`` line per writer on stdin and answers ``ended CODE`` once the writer
is gone; before that come the writer's own lines: ``pid N`` first, then ``ready`` and the cycle
numbers.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import queue
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import IO

from botstate._atomic import TEMP_MARK
from tests.stores import STORES

from . import workload

ROOT = Path(__file__).parents[2]

#: Share of kills aimed at the writer's start-up (opening and loading) instead of its cycles.
EARLY_SHARE = 0.1
#: Seconds after start-up within which a kill lands: a few dozen cycles of the slowest store.
WINDOW = 0.25


@dataclass
class CrashFigures:
    """What kill series on one store tried and found."""

    store: str
    kills: int = 0
    cycles_confirmed: int = 0
    in_flight_whole: int = 0
    in_flight_absent: int = 0
    in_flight_partial: int = 0
    killed_while_starting: int = 0
    temporaries_left: int = 0
    problems: list[str] = field(default_factory=list)

    def add(self, other: CrashFigures) -> None:
        for counter in fields(self):
            if counter.type == "int":
                name = counter.name
                setattr(self, name, getattr(self, name) + getattr(other, name))
        self.problems.extend(other.problems)


def crash_trial(store: str, folder: Path, kills: int, seed: int, series: int = 2) -> CrashFigures:
    """Run *series* kill series side by side, each in a folder of its own under *folder*, with
    *kills* kills in all (the series keep both processor cores busy)."""
    with ThreadPoolExecutor(series) as pool:
        runs = [
            pool.submit(
                kill_repeatedly,
                store,
                folder / f"series-{number}",
                kills // series + (number < kills % series),
                seed + number,
            )
            for number in range(series)
        ]
    figures = CrashFigures(store)
    for run in runs:
        figures.add(run.result())
    return figures


def kill_repeatedly(store: str, folder: Path, kills: int, seed: int) -> CrashFigures:
    """Kill *kills* writers in turn on the store kept for *folder*; stop at the first problem."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    figures = CrashFigures(store)
    state: workload.Summary = {}
    start = 0
    with _Launcher() as launcher:
        for attempt in range(kills):
            leftovers = set(folder.glob(f"*{TEMP_MARK}*"))
            reported, started = launcher.run_and_kill(store, folder, seed, start, rng, figures)
            figures.kills += 1
            figures.killed_while_starting += not started
            figures.temporaries_left += bool(set(folder.glob(f"*{TEMP_MARK}*")) - leftovers)
            figures.cycles_confirmed += len(reported)
            last = max(reported, default=start - 1)

            observed, problems = asyncio.run(_observe(store, folder))
            old = workload.expected(state, seed, range(start, last + 1))
            new = workload.expected(old, seed, [last + 1])
            problems += workload.compare(observed, old, new, STORES[store].atomic)
            if problems or figures.problems:
                figures.problems.append(
                    f"{store}, kill {attempt + 1} (seed {seed}, cycles {start}..{last} "
                    "reported): " + "; ".join(problems[:5])
                )
                return figures
            if observed == new != old:
                figures.in_flight_whole += 1
            elif observed == old:
                figures.in_flight_absent += 1
            else:
                figures.in_flight_partial += 1
            state, start = observed, last + 2
    return figures


async def _observe(store: str, folder: Path) -> tuple[workload.Summary, list[str]]:
    persistence = STORES[store].open(folder)
    try:
        loaded = await workload.load_all(persistence)
    except Exception as exc:
        return {}, [f"the store did not open: {type(exc).__name__}: {exc}"]
    finally:
        await persistence.close()
    return workload.summarize(loaded)


class _Launcher:
    """The launcher process, and the lines it and its writers print."""

    def __init__(self) -> None:
        self._errors: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 (closed on exit)
        self._process = subprocess.Popen(
            [sys.executable, "-m", "tests.reliability.crash"],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._errors,
        )
        self._lines: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._read)
        self._reader.start()

    def _read(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            self._lines.put(line.decode().strip())
        self._lines.put("ended launcher")

    def _line(self, timeout: float = 60) -> str:
        try:
            return self._lines.get(timeout=timeout)
        except queue.Empty:
            return "ended timeout"

    def run_and_kill(
        self,
        store: str,
        folder: Path,
        seed: int,
        start: int,
        rng: random.Random,
        figures: CrashFigures,
    ) -> tuple[list[int], bool]:
        """Start a writer, kill it at a random moment; return the cycles it reported and
        whether it had finished opening the store."""
        assert self._process.stdin is not None
        self._process.stdin.write(f"{store} {folder} {seed} {start}\n".encode())
        self._process.stdin.flush()
        lines = [self._line()]
        if lines[0].startswith("pid "):
            pid = int(lines[0].split()[1])
            if rng.random() < EARLY_SHARE:
                time.sleep(rng.uniform(0, 0.03))
            else:
                lines.append(self._line())  # "ready", once the store is open and loaded
                time.sleep(rng.uniform(0, WINDOW))
            os.kill(pid, signal.SIGKILL)
        while not lines[-1].startswith("ended"):
            lines.append(self._line())

        if lines[-1] != f"ended {-signal.SIGKILL}":
            self._errors.seek(0)
            figures.problems.append(
                f"{store}: the writer ended by itself ({lines[-1]}) before the kill: "
                + self._errors.read().decode(errors="replace")[-800:]
            )
        return [int(line) for line in lines if line.isdigit()], "ready" in lines

    def __enter__(self) -> _Launcher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        assert self._process.stdin is not None
        self._process.stdin.close()
        self._process.wait(60)
        self._reader.join()
        self._errors.close()


def _launch_writers() -> None:
    """The launcher: fork one writer per line read; see the module documentation."""
    # What the first persistence of each writer would import (python-telegram-bot, when it is
    # installed), imported once here.
    with contextlib.suppress(ImportError):
        import botstate.telegram  # noqa: F401

    out = sys.stdout.fileno()
    for command in sys.stdin:
        store, folder, seed, start = command.split()
        pid = os.fork()
        if pid == 0:
            try:
                _write_cycles(store, Path(folder), int(seed), int(start))
            except BaseException:
                traceback.print_exc()
            os._exit(1)
        _, status = os.waitpid(pid, 0)
        os.write(out, b"ended %d\n" % os.waitstatus_to_exitcode(status))


def _write_cycles(store: str, folder: Path, seed: int, start: int) -> None:
    """A writer: say its pid, open, load, say ready, then write cycles and report each one."""
    out = sys.stdout.fileno()
    # Written by the writer itself, so that it comes before any other line of the writer.
    os.write(out, b"pid %d\n" % os.getpid())

    async def main() -> None:
        persistence = STORES[store].open(folder)
        await workload.load_all(persistence)
        os.write(out, b"ready\n")
        for number in itertools.count(start):
            await workload.run_cycle(persistence, seed, number)
            os.write(out, b"%d\n" % number)

    asyncio.run(main())


if __name__ == "__main__":
    _launch_writers()
