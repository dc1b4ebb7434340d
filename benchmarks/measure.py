"""One measuring run: one store, one N, in a process of its own.

The run loads everything (cold load), runs the cycles for each K, flushes and closes, and reports
per-cycle time, the longest stretch the event loop could not run, bytes written, flush time,
file size and the process's peak resident memory. A process of its own per run keeps the peak
memory of one store apart from the others' and makes every load a load by a fresh process (the
files are in the operating system's cache, as they are after a restart). A server store keeps
its data on its server: bytes written and file size say nothing of it and are left out (None).
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.contenders import CONTENDERS, offline_bot
from benchmarks.workload import Handlers

__all__ = ["CycleSample", "LoopMonitor", "RunResult", "RunSpec", "measure"]


@dataclass(frozen=True)
class RunSpec:
    """What one measuring process does."""

    contender: str
    n: int
    folder: str
    ks: tuple[int, ...]
    cycles: int
    budget: float
    seed: int


@dataclass
class CycleSample:
    seconds: float
    stall: float
    #: None for a server store: its writes go to the server over a socket.
    written: int | None


@dataclass
class RunResult:
    contender: str
    n: int
    load: float
    cycles: dict[int, list[CycleSample]] = field(default_factory=dict)
    flush: float = 0.0
    full_write: float | None = None
    #: None for a server store, whose folder holds only the name of its place on the server.
    size: int | None = 0
    peak_rss: int = 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunResult:
        cycles = {
            int(k): [CycleSample(**sample) for sample in samples]
            for k, samples in data["cycles"].items()
        }
        return cls(**{**data, "cycles": cycles})


class LoopMonitor:
    """Measures how late the event loop runs a timer due every *interval* seconds.

    A bot's loop that is busy (or waits for the interpreter lock held by another thread) answers
    nothing; a timer due during that stretch runs only at its end. The largest delay since
    :meth:`reset` is the longest such stretch, to within about a millisecond: the loop sleeps in
    whole milliseconds, so an idle loop is up to 1 ms late too.
    """

    def __init__(self, interval: float = 0.001) -> None:
        self.interval = interval
        self.longest = 0.0
        self._loop = asyncio.get_running_loop()
        self._due = 0.0
        self._handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self._due = self._loop.time() + self.interval
        self._handle = self._loop.call_at(self._due, self._tick)

    def _tick(self) -> None:
        self.longest = max(self.longest, self._loop.time() - self._due)
        self.start()

    def reset(self) -> None:
        self.longest = 0.0

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()


def bytes_written() -> int:
    """Bytes this process has handed to write calls so far (every thread, every file)."""
    with open("/proc/self/io", encoding="ascii") as file:
        for line in file:
            if line.startswith("wchar:"):
                return int(line.split()[1])
    raise RuntimeError("/proc/self/io has no wchar line")


def peak_rss() -> int:
    """The largest resident set size this process has had, in bytes."""
    with open("/proc/self/status", encoding="ascii") as file:
        for line in file:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("/proc/self/status has no VmHWM line")


def folder_size(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.iterdir() if path.is_file())


async def measure(spec: RunSpec) -> RunResult:
    """Run the measurements of *spec* in this process."""
    contender = CONTENDERS[spec.contender]
    folder = Path(spec.folder)
    bot = offline_bot()
    for module in contender.server.modules if contender.server else ():
        importlib.import_module(module)

    started = time.perf_counter()
    subject = contender.open(folder, bot)
    state = await subject.load()
    result = RunResult(spec.contender, spec.n, load=time.perf_counter() - started)
    if state.records() != 3 * spec.n + 1:
        raise RuntimeError(
            f"{spec.contender} loaded {state.records()} records, expected {3 * spec.n + 1}"
        )

    monitor = LoopMonitor()
    monitor.start()
    handlers = Handlers(state, spec.seed)
    # The containers the application made around the loaded data (its dicts of all users and
    # chats, the handlers' lists of ids) are young: the collector's next young collections walk
    # each of them, tens of milliseconds at N = 100,000, whatever the store. A bot pays that
    # once after start-up; the cycles measured here are the ones after it, so it is paid now,
    # untimed.
    gc.collect()
    for k in spec.ks:
        if not contender.runs_cycle(spec.n, k):
            continue
        samples = result.cycles[k] = []
        deadline = time.perf_counter() + spec.budget
        while len(samples) < spec.cycles and (not samples or time.perf_counter() < deadline):
            touched = handlers.next_cycle(k)
            # Let timers the preparation held back run before the cycle is watched.
            await asyncio.sleep(0.005)
            monitor.reset()
            written = bytes_written()
            started = time.perf_counter()
            await subject.cycle(state, touched)
            seconds = time.perf_counter() - started
            written = bytes_written() - written
            # A timer held back until the very end of the cycle runs now.
            await asyncio.sleep(0.005)
            on_server = contender.server is not None
            samples.append(CycleSample(seconds, monitor.longest, None if on_server else written))
    monitor.stop()

    started = time.perf_counter()
    await subject.flush()
    result.flush = time.perf_counter() - started
    result.full_write = subject.full_write()
    await subject.close()
    result.size = None if contender.server is not None else folder_size(folder)
    result.peak_rss = peak_rss()
    return result
