"""Compare the persistences side by side: ``python -m benchmarks``.

One run seeds every store with the same bot state for each N, then measures each store in a
process of its own, repeatedly, and prints the medians as markdown tables with the targets met or
missed. ``--write-docs`` also rewrites the results part of ``docs/benchmarks.md``, the chart
``docs/benchmarks-cycle.svg`` and the raw figures ``docs/benchmarks.json``; ``--from-json``
redraws those from a results file without measuring again.

    python -m benchmarks                 # N = 1,000, 10,000 and 100,000: about 20 minutes
    python -m benchmarks --quick         # small N, one repeat: about a minute
    python -m benchmarks --write-docs    # the full run, then the docs
    python -m benchmarks --no-servers    # leave out the Redis and PostgreSQL stores

The Redis and PostgreSQL stores run on the servers named by ``--redis-url`` and
``--postgres-url`` (local ones by default), each run under a key prefix or table of its own
(``bsbench-<random token>-...``), all of it removed when the run ends. A server that does not
answer is an error when its stores were asked for with ``--stores`` or for ``--write-docs``;
otherwise its stores are left out with a message.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import secrets
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from benchmarks.contenders import CONTENDERS, SERVERS, Contender, Place, offline_bot
from benchmarks.measure import RunResult, RunSpec, measure
from benchmarks.report import chart_svg, markdown, summarize
from benchmarks.workload import initial_state
from botstate.urls import mask_url

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
START, END = "<!-- results: start -->", "<!-- results: end -->"

FULL = {"sizes": "1000,10000,100000", "repeats": 3, "cycles": 7, "budget": 20.0}
QUICK = {"sizes": "200,1000", "repeats": 1, "cycles": 3, "budget": 2.0}


def main(argv: Sequence[str] | None = None) -> None:
    options = _parser().parse_args(argv)
    if options.child:
        result = asyncio.run(measure(RunSpec(**json.loads(options.child))))
        print(json.dumps(result.to_json()))
        return

    if options.from_json:
        data = json.loads(Path(options.from_json).read_text(encoding="utf-8"))
    else:
        data = run(options)
    summary = summarize([RunResult.from_json(r) for r in data["runs"]], data["ks"])
    tables = markdown(summary)
    print(tables)
    if options.json:
        Path(options.json).write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    if options.write_docs:
        write_docs(Path(options.docs), data, tables, chart_svg(summary))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="small N, one repeat (for CI)")
    parser.add_argument("--sizes", help="N values, comma separated (default 1000,10000,100000)")
    parser.add_argument("--changes", default="1,100", help="K values, comma separated")
    parser.add_argument("--repeats", type=int, help="measuring processes per store and N")
    parser.add_argument("--cycles", type=int, help="cycles per K in each process, at most")
    parser.add_argument(
        "--budget", type=float, help="seconds of cycles per K in each process, after the first"
    )
    parser.add_argument(
        "--stores", help=f"contenders, comma separated (default: all of {', '.join(CONTENDERS)})"
    )
    parser.add_argument(
        "--no-servers",
        action="store_true",
        help="leave out the stores that need a database server (Redis, PostgreSQL)",
    )
    for server in SERVERS.values():
        parser.add_argument(
            f"--{server.name}-url",
            default=server.default_url,
            help=f"the {server.title} server (default {server.default_url})",
        )
    parser.add_argument("--json", help="also write the raw figures to this file")
    parser.add_argument("--from-json", help="report the figures of an earlier --json file")
    parser.add_argument(
        "--write-docs", action="store_true", help="rewrite docs/benchmarks.md's results and chart"
    )
    parser.add_argument("--docs", default=str(DOCS), help="the docs folder (default: docs/)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    return parser


def run(options: argparse.Namespace) -> dict[str, Any]:
    """Seed, measure every store in its own processes, and return the raw figures."""
    if not os.path.exists("/proc/self/io"):
        raise SystemExit("the benchmark reads /proc/self/io and /proc/self/status: Linux only")
    defaults = QUICK if options.quick else FULL
    sizes = _numbers(options.sizes or str(defaults["sizes"]))
    ks = _numbers(options.changes)
    repeats = options.repeats or int(defaults["repeats"])
    cycles = options.cycles or int(defaults["cycles"])
    budget = options.budget if options.budget is not None else float(defaults["budget"])
    names = _chosen(options)
    if max(ks) > min(sizes):
        raise SystemExit(f"K = {max(ks)} is larger than N = {min(sizes)}")
    urls = {name: str(getattr(options, f"{name}_url")) for name in SERVERS}
    servers = sorted({c.server.name for name in names if (c := CONTENDERS[name]).server})
    # A random token in every namespace: runs at the same time never touch each other's data.
    token = secrets.token_hex(4)
    if servers:
        _log(
            "server stores under "
            + " and ".join(f"{SERVERS[s].title} {SERVERS[s].pattern(token)}" for s in servers)
        )

    started = time.monotonic()
    load_before = _load_average()
    runs: list[dict[str, Any]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="botstate-bench-") as scratch:
            for n in sizes:
                pristine = Path(scratch) / f"seed-{n}"
                _log(f"N = {n:,}: seeding {', '.join(names)}")
                asyncio.run(_seed_all(names, pristine, n, token, urls))
                for repeat in range(repeats):
                    # Each repeat starts with another store, so a slow stretch of a shared
                    # machine does not always hit the same one.
                    order = names[repeat % len(names) :] + names[: repeat % len(names)]
                    for name in order:
                        contender = CONTENDERS[name]
                        folder = Path(scratch) / f"run-{n}-{name}-{repeat}"
                        spec = RunSpec(name, n, str(folder), tuple(ks), cycles, budget, repeat)
                        try:
                            place = _place(contender, folder.name, token, urls)
                            asyncio.run(contender.copy(pristine / name, folder, place))
                            runs.append(_measure_in_child(spec))
                        finally:
                            contender.discard(folder)
                        _log(f"N = {n:,}: {name} run {repeat + 1}/{repeats} done")
                for name in names:
                    CONTENDERS[name].discard(pristine / name)
                shutil.rmtree(pristine, ignore_errors=True)
    finally:
        # Whatever a failure left behind on the servers goes too.
        for server in servers:
            left = SERVERS[server].sweep(urls[server], token)
            if left:
                _log(f"removed {left} leftovers from {SERVERS[server].title}")
    _log(f"done in {time.monotonic() - started:.0f} s")
    return {
        "command": "python -m benchmarks " + " ".join(sys.argv[1:]),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": {
            **machine(Path(tempfile.gettempdir()), {s: urls[s] for s in servers}),
            # Other work on a shared machine shows in the figures; this says how much there was.
            "load average (1, 5, 15 min) at the start": load_before,
            "load average at the end": _load_average(),
        },
        "ks": ks,
        "runs": runs,
    }


def _chosen(options: argparse.Namespace) -> list[str]:
    """The contenders to measure: those asked for, less those whose server does not answer.

    Raises:
        SystemExit: For an unknown name, or a server that does not answer when its stores were
            asked for by name or for the docs.
    """
    explicit = options.stores is not None
    names = [n.strip() for n in options.stores.split(",")] if explicit else list(CONTENDERS)
    unknown = [name for name in names if name not in CONTENDERS]
    if unknown:
        raise SystemExit(
            f"unknown store {', '.join(unknown)}; choose from {', '.join(CONTENDERS)}"
        )
    if options.no_servers:
        names = [name for name in names if CONTENDERS[name].server is None]
    for server in SERVERS.values():
        on_it = [name for name in names if CONTENDERS[name].server is server]
        if not on_it:
            continue
        url = str(getattr(options, f"{server.name}_url"))
        reason = server.unavailable(url)
        if reason is None:
            continue
        message = (
            f"{server.title} at {mask_url(url)} does not answer ({' '.join(reason.split())}); "
            f"{', '.join(on_it)} {'needs' if len(on_it) == 1 else 'need'} it"
        )
        if explicit or options.write_docs:
            raise SystemExit(f"{message}. Start it, or leave them out (--no-servers).")
        _log(f"{message}: left out of this run (--no-servers leaves them out silently)")
        names = [name for name in names if name not in on_it]
    if not names:
        raise SystemExit("no store left to measure")
    return names


def _place(contender: Contender, label: str, token: str, urls: dict[str, str]) -> Place | None:
    """Where on its server the store with *label* (the name of its folder) keeps its data;
    None for a file store."""
    server = contender.server
    if server is None:
        return None
    return Place(server.name, urls[server.name], server.namespace(token, label))


async def _seed_all(
    names: Sequence[str], pristine: Path, n: int, token: str, urls: dict[str, str]
) -> None:
    state = initial_state(n)
    bot = offline_bot()
    for name in names:
        contender = CONTENDERS[name]
        folder = pristine / name
        contender.prepare(folder, _place(contender, f"{pristine.name}-{name}", token, urls))
        await contender.seed(folder, state, bot)


def _measure_in_child(spec: RunSpec) -> dict[str, Any]:
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--child", json.dumps(asdict(spec))],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        raise SystemExit(
            f"measuring {spec.contender} at N = {spec.n} failed:\n{completed.stderr.strip()}"
        )
    result: dict[str, Any] = json.loads(completed.stdout)
    return result


def _numbers(text: str) -> list[int]:
    return sorted({int(part.replace("_", "")) for part in text.split(",") if part.strip()})


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- the machine and the docs --------------------------------------------------------------------


def machine(folder: Path, servers: dict[str, str] | None = None) -> dict[str, str]:
    """What the figures depend on: processor, memory, file system, versions, and the version
    and durability settings of each server in *servers* (name to URL)."""
    info = {
        "processor": _proc_value("/proc/cpuinfo", "model name") or platform.processor(),
        "cores": str(os.cpu_count()),
        "memory": _proc_value("/proc/meminfo", "MemTotal"),
        "system": f"{platform.system()} {platform.release()}",
        "file system": _file_system(folder),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
    }
    try:
        import telegram

        info["python-telegram-bot"] = telegram.__version__
    except ImportError:
        info["python-telegram-bot"] = "not installed"
    for name, url in (servers or {}).items():
        info[SERVERS[name].title] = f"{SERVERS[name].describe(url)}, on {mask_url(url)}"
    return info


def _load_average() -> str:
    return ", ".join(f"{value:.1f}" for value in os.getloadavg())


def _proc_value(path: str, name: str) -> str:
    try:
        with open(path, encoding="utf-8") as file:
            for line in file:
                if line.startswith(name):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def _file_system(folder: Path) -> str:
    """The type of the file system *folder* is on, from the longest matching mount point."""
    best, kind = "", "unknown"
    try:
        with open("/proc/mounts", encoding="utf-8") as file:
            for line in file:
                fields = line.split()
                mount = fields[1]
                if str(folder.resolve()).startswith(mount) and len(mount) > len(best):
                    best, kind = mount, fields[2]
    except OSError:
        pass
    return kind


def write_docs(docs: Path, data: dict[str, Any], tables: str, chart: str) -> None:
    """Replace the results part of benchmarks.md in *docs*; write the chart and raw figures."""
    page = docs / "benchmarks.md"
    if not page.is_file():
        raise SystemExit(f"{page} does not exist; --docs names the folder holding benchmarks.md")
    text = page.read_text(encoding="utf-8")
    if START not in text or END not in text:
        raise SystemExit(f"{page} lacks the markers {START} and {END}")
    machine_lines = "\n".join(f"- {name}: {value}" for name, value in data["machine"].items())
    generated = (
        f"{START}\n"
        f"Measured {data['date']} with `{data['command'].strip()}` on:\n\n"
        f"{machine_lines}\n\n"
        "![Time of one persistence cycle against N](benchmarks-cycle.svg)\n\n"
        f"{tables}"
        f"{END}"
    )
    before, rest = text.split(START, 1)
    after = rest.split(END, 1)[1]
    page.write_text(before + generated + after, encoding="utf-8")
    (docs / "benchmarks-cycle.svg").write_text(chart, encoding="utf-8")
    (docs / "benchmarks.json").write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    _log(f"wrote {page}, {docs / 'benchmarks-cycle.svg'} and {docs / 'benchmarks.json'}")


if __name__ == "__main__":
    main()
