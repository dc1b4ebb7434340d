"""The benchmark command in quick mode: every store measured, sane figures, docs regenerated.

The Redis and PostgreSQL stores and their floors run against the local servers, like the store
tests: without a server they are left out (and their own tests skipped), except under
``CI=true``, where that fails. Speed itself is not asserted here; the figures live in
docs/benchmarks.md.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from statistics import median
from typing import Any

import pytest
from benchmarks.contenders import CONTENDERS, SERVERS
from benchmarks.report import TARGETS, ratio

from . import servers

ROOT = Path(__file__).resolve().parent.parent
KS = (1, 5)


def servers_here() -> set[str]:
    """The servers the quick run uses: those that answer (in CI, all of them, or fail)."""
    up = set()
    for name in SERVERS:
        reason = servers.unavailable(name)
        if reason is None:
            up.add(name)
        elif os.environ.get("CI") == "true":
            pytest.fail(reason)
    return up


#: The contenders of the quick run, in their order.
MEASURED = [
    contender
    for contender in CONTENDERS.values()
    if contender.server is None or contender.server.name in servers_here()
]
ON_SERVERS = [contender for contender in MEASURED if contender.server is not None]

pytestmark = pytest.mark.slow


def run_benchmark(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "benchmarks", *arguments],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture(scope="module")
def quick_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[str, dict[str, Any], Path, str]:
    """One quick run with tiny N: its printed tables, its figures, the figures' file and what
    it logged."""
    figures = tmp_path_factory.mktemp("benchmark") / "figures.json"
    completed = run_benchmark(
        "--quick",
        "--sizes",
        "40,80",
        "--changes",
        "1,5",
        "--cycles",
        "2",
        "--stores",
        ",".join(contender.name for contender in MEASURED),
        "--json",
        str(figures),
    )
    assert completed.returncode == 0, completed.stderr
    return (
        completed.stdout,
        json.loads(figures.read_text(encoding="utf-8")),
        figures,
        completed.stderr,
    )


@pytest.fixture(scope="module")
def quick(quick_run: tuple[str, dict[str, Any], Path, str]) -> tuple[str, dict[str, Any], Path]:
    return quick_run[:3]


@pytest.fixture
def need_servers() -> None:
    for name in SERVERS:
        servers.require(name)


def test_the_tables_have_a_row_for_every_store_and_k_at_every_n(
    quick: tuple[str, dict[str, Any], Path],
) -> None:
    tables, _, _ = quick
    for n in ("40", "80"):
        assert f"### N = {n} ({3 * int(n) + 1} records)" in tables
    for contender in MEASURED:
        for k in KS:
            assert tables.count(f"| {contender.label} | {k} | ") == 2, (contender.label, k)


def test_every_store_was_loaded_cycled_and_measured_with_non_zero_figures(
    quick: tuple[str, dict[str, Any], Path],
) -> None:
    _, figures, _ = quick
    runs = figures["runs"]
    assert {(run["contender"], run["n"]) for run in runs} == {
        (contender.name, n) for contender in MEASURED for n in (40, 80)
    }
    for run in runs:
        on_server = CONTENDERS[run["contender"]].server is not None
        assert run["load"] > 0
        # A server store's data is on the server: no file size, no bytes written to files.
        assert run["size"] is None if on_server else run["size"] > 0
        assert run["peak_rss"] > 10_000_000
        assert sorted(int(k) for k in run["cycles"]) == list(KS)
        for samples in run["cycles"].values():
            assert len(samples) == 2
            for sample in samples:
                assert sample["seconds"] > 0
                assert sample["stall"] >= 0
                # Every cycle changes data, so every file store writes.
                assert sample["written"] is None if on_server else sample["written"] > 0
    snapshot = [run for run in runs if run["contender"] == "botstate-pickle"]
    assert all(run["full_write"] > 0 for run in snapshot)


def test_every_target_gets_a_verdict_with_its_figures(
    quick: tuple[str, dict[str, Any], Path],
) -> None:
    tables, _, _ = quick
    verdicts = tables.split("### Targets", 1)[1].strip().splitlines()
    assert len(verdicts) == len(TARGETS) == 8
    names = {contender.name for contender in MEASURED}
    for target, verdict in zip(TARGETS, verdicts, strict=True):
        assert verdict.startswith(f"- {target.text}")
        if set(target.needs) <= names:
            assert (
                "(N = 80, K = 5): **met**" in verdict or "(N = 80, K = 5): **missed**" in verdict
            )
        else:
            assert verdict.endswith("not measured in this run.")


def test_the_docs_are_regenerated_from_stored_figures(
    quick: tuple[str, dict[str, Any], Path], tmp_path: Path
) -> None:
    tables, _, figures = quick
    page = tmp_path / "benchmarks.md"
    page.write_text(
        "# Benchmarks\n\nkept\n\n<!-- results: start -->\nstale figures\n"
        "<!-- results: end -->\n\ntail\n",
        encoding="utf-8",
    )

    completed = run_benchmark("--from-json", str(figures), "--write-docs", "--docs", str(tmp_path))

    assert completed.returncode == 0, completed.stderr
    assert completed.stdout == tables
    text = page.read_text(encoding="utf-8")
    assert text.startswith("# Benchmarks\n\nkept\n\n<!-- results: start -->\nMeasured ")
    assert text.endswith("<!-- results: end -->\n\ntail\n")
    assert "stale figures" not in text
    assert tables.strip() in text
    assert "- python-telegram-bot: " in text
    chart = (tmp_path / "benchmarks-cycle.svg").read_text(encoding="utf-8")
    assert chart.startswith("<svg ")
    for contender in MEASURED:
        assert contender.label in chart
    assert json.loads((tmp_path / "benchmarks.json").read_text(encoding="utf-8")) == json.loads(
        figures.read_text(encoding="utf-8")
    )


def test_an_unknown_store_is_refused_with_the_known_names() -> None:
    completed = run_benchmark("--quick", "--stores", "botstate-sqlite,floppy")
    assert completed.returncode != 0
    assert "unknown store floppy; choose from ptb-pickle, botstate-pickle" in completed.stderr


@pytest.mark.usefixtures("need_servers")
def test_the_server_stores_are_measured_against_their_own_floors_and_leave_nothing_behind(
    quick_run: tuple[str, dict[str, Any], Path, str],
) -> None:
    tables, figures, _, log = quick_run
    assert {c.name for c in ON_SERVERS} == {
        "botstate-redis",
        "redis-floor",
        "botstate-postgres",
        "postgres-floor",
    }
    cycles = {
        (run["contender"], run["n"], int(k)): [sample["seconds"] for sample in samples]
        for run in figures["runs"]
        for k, samples in run["cycles"].items()
    }
    for contender in ON_SERVERS:
        for n in (40, 80):
            for k in KS:
                # Loopback round trips: more than nothing, far less than a second.
                assert all(0 < t < 1 for t in cycles[contender.name, n, k]), (contender.name, n)
    for name, floor in (
        ("botstate-redis", "redis-floor"),
        ("botstate-postgres", "postgres-floor"),
    ):
        assert CONTENDERS[name].floor == floor
        for n in (40, 80):
            for k in KS:
                cells = _row(tables, n, f"| {CONTENDERS[name].label} | {k} | ")
                # store, K, cycle, vs PTB, vs floor, stall, written: against its own floor.
                factor = median(cycles[name, n, k]) / median(cycles[floor, n, k])
                assert cells[4] == ratio(factor), (name, n, k, cells)
                assert cells[6] == "n/a"
    for contender in ON_SERVERS:
        for n in (40, 80):
            # store, cold load, vs PTB, flush, one full write, files, peak RSS.
            cells = _row(tables, n, f"| {contender.label} | ", table=1)
            assert cells[5] == "n/a"
            assert cells[6].endswith(" MB")

    # Every key and table of the run went when it ended.
    token = re.search(r"bsbench-([0-9a-f]{8})-\*", log)
    assert token is not None, log
    for server in SERVERS.values():
        assert server.leftovers(server.default_url, token.group(1)) == []
    assert _raw_leftovers(token.group(1)) == ([], [])


def _row(tables: str, n: int, start: str, table: int = 0) -> list[str]:
    """The cells of the row starting with *start* in the *table*-th table at N = *n*."""
    section = tables.split(f"### N = {n} (", 1)[1].split("### ", 1)[0]
    lines = section.split("\n\n| store |")[table + 1].splitlines()
    row = next(line for line in lines if line.startswith(start))
    return [cell.strip() for cell in row.strip().strip("|").split("|")]


def _raw_leftovers(token: str) -> tuple[list[bytes], list[str]]:
    """The run's Redis keys and PostgreSQL relations, found without the benchmark's code."""
    import psycopg
    import redis

    with redis.Redis.from_url(SERVERS["redis"].default_url) as client:
        keys = list(client.scan_iter(match=f"bsbench-{token}-*"))
    with psycopg.connect(SERVERS["postgres"].default_url, autocommit=True) as connection:
        tables = [
            name
            for (name,) in connection.execute(
                "SELECT relname FROM pg_class WHERE relname LIKE %s",
                (f"bsbench\\_{token}\\_%",),
            )
        ]
    return keys, tables


@pytest.mark.parametrize("server", list(SERVERS))
def test_a_server_asked_for_that_does_not_answer_stops_the_benchmark_naming_its_url(
    server: str,
) -> None:
    url = (
        f"redis://127.0.0.1:{servers.closed_port()}/0"
        if server == "redis"
        else f"postgresql://postgres@127.0.0.1:{servers.closed_port()}/test"
    )
    store = next(c.name for c in CONTENDERS.values() if c.server is SERVERS[server])

    completed = run_benchmark("--quick", "--stores", store, f"--{server}-url", url)

    assert completed.returncode == 1
    assert f"{SERVERS[server].title} at {url} does not answer" in completed.stderr
    assert "Traceback" not in completed.stderr


def test_no_servers_leaves_the_server_stores_out() -> None:
    completed = run_benchmark(
        "--quick", "--stores", "botstate-redis,botstate-postgres", "--no-servers"
    )
    assert completed.returncode == 1
    assert "no store left to measure" in completed.stderr
