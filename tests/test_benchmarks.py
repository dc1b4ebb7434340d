"""The benchmark command in quick mode: every store measured, sane figures, docs regenerated.

Speed itself is not asserted here; the figures live in docs/benchmarks.md.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from benchmarks.contenders import CONTENDERS

ROOT = Path(__file__).resolve().parent.parent
KS = (1, 5)

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
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, Any], Path]:
    """One quick run with tiny N: its printed tables, its figures and the figures' file."""
    figures = tmp_path_factory.mktemp("benchmark") / "figures.json"
    completed = run_benchmark(
        "--quick", "--sizes", "40,80", "--changes", "1,5", "--cycles", "2", "--json", str(figures)
    )
    assert completed.returncode == 0, completed.stderr
    return completed.stdout, json.loads(figures.read_text(encoding="utf-8")), figures


def test_the_tables_have_a_row_for_every_store_and_k_at_every_n(
    quick: tuple[str, dict[str, Any], Path],
) -> None:
    tables, _, _ = quick
    for n in ("40", "80"):
        assert f"### N = {n} ({3 * int(n) + 1} records)" in tables
    for contender in CONTENDERS.values():
        for k in KS:
            assert tables.count(f"| {contender.label} | {k} | ") == 2, (contender.label, k)


def test_every_store_was_loaded_cycled_and_measured_with_non_zero_figures(
    quick: tuple[str, dict[str, Any], Path],
) -> None:
    _, figures, _ = quick
    runs = figures["runs"]
    assert {(run["contender"], run["n"]) for run in runs} == {
        (name, n) for name in CONTENDERS for n in (40, 80)
    }
    for run in runs:
        assert run["load"] > 0
        assert run["size"] > 0
        assert run["peak_rss"] > 10_000_000
        assert sorted(int(k) for k in run["cycles"]) == list(KS)
        for samples in run["cycles"].values():
            assert len(samples) == 2
            for sample in samples:
                assert sample["seconds"] > 0
                assert sample["stall"] >= 0
                # Every cycle changes data, so every store writes.
                assert sample["written"] > 0
    snapshot = [run for run in runs if run["contender"] == "botstate-pickle"]
    assert all(run["full_write"] > 0 for run in snapshot)


def test_every_target_gets_a_verdict_with_its_figures(
    quick: tuple[str, dict[str, Any], Path],
) -> None:
    tables, _, _ = quick
    verdicts = tables.split("### Targets", 1)[1].strip().splitlines()
    assert len(verdicts) == 6
    for verdict in verdicts:
        assert "(N = 80, K = 5): **met**" in verdict or "(N = 80, K = 5): **missed**" in verdict


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
    for contender in CONTENDERS.values():
        assert contender.label in chart
    assert json.loads((tmp_path / "benchmarks.json").read_text(encoding="utf-8")) == json.loads(
        figures.read_text(encoding="utf-8")
    )


def test_an_unknown_store_is_refused_with_the_known_names() -> None:
    completed = run_benchmark("--quick", "--stores", "botstate-sqlite,floppy")
    assert completed.returncode != 0
    assert "unknown store floppy; choose from ptb-pickle, botstate-pickle" in completed.stderr
