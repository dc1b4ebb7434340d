"""Turning measuring runs into medians, markdown tables, target verdicts and an SVG chart."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from benchmarks.contenders import CONTENDERS, Contender
from benchmarks.measure import RunResult

__all__ = ["Summary", "chart_svg", "markdown", "summarize"]


@dataclass
class Cell:
    """The medians of one contender at one N, over its repeated runs."""

    load: float
    flush: float
    full_write: float | None
    # None for a server store: its data is on the server, not in files.
    size: float | None
    peak_rss: float
    # Per K: median cycle seconds, median and worst stall, median bytes written (None for a
    # server store), cycles run.
    cycle: dict[int, float]
    stall: dict[int, float]
    worst_stall: dict[int, float]
    written: dict[int, float | None]
    samples: dict[int, int]


@dataclass
class Summary:
    sizes: list[int]
    ks: list[int]
    contenders: list[Contender]
    cells: dict[tuple[str, int], Cell]

    def cell(self, name: str, n: int) -> Cell | None:
        return self.cells.get((name, n))

    def reference(self) -> Contender | None:
        return next((c for c in self.contenders if c.is_reference), None)

    def reference_cycle(self, k: int, n: int) -> tuple[float, int] | None:
        """python-telegram-bot's cycle at *n*, or at the largest N below it where it ran."""
        reference = self.reference()
        if reference is None:
            return None
        for size in sorted((s for s in self.sizes if s <= n), reverse=True):
            cell = self.cell(reference.name, size)
            if cell is not None and k in cell.cycle:
                return cell.cycle[k], size
        return None


def summarize(runs: Sequence[RunResult], ks: Sequence[int]) -> Summary:
    """Group *runs* by contender and N and take medians over the repeats."""
    groups: dict[tuple[str, int], list[RunResult]] = {}
    for run in runs:
        groups.setdefault((run.contender, run.n), []).append(run)
    cells = {}
    for key, group in groups.items():
        cycles = {}
        for k in ks:
            samples = [sample for run in group for sample in run.cycles.get(k, [])]
            if samples:
                cycles[k] = samples
        full_writes = [run.full_write for run in group if run.full_write is not None]
        cells[key] = Cell(
            load=statistics.median(run.load for run in group),
            flush=statistics.median(run.flush for run in group),
            full_write=statistics.median(full_writes) if full_writes else None,
            size=_median_or_none([run.size for run in group]),
            peak_rss=statistics.median(run.peak_rss for run in group),
            cycle={k: statistics.median(s.seconds for s in v) for k, v in cycles.items()},
            stall={k: statistics.median(s.stall for s in v) for k, v in cycles.items()},
            worst_stall={k: max(s.stall for s in v) for k, v in cycles.items()},
            written={k: _median_or_none([s.written for s in v]) for k, v in cycles.items()},
            samples={k: len(v) for k, v in cycles.items()},
        )
    names = {name for name, _ in groups}
    return Summary(
        sizes=sorted({n for _, n in groups}),
        ks=list(ks),
        contenders=[c for c in CONTENDERS.values() if c.name in names],
        cells=cells,
    )


def _median_or_none(values: Sequence[float | None]) -> float | None:
    """The median of *values*; None where a figure does not apply (a server store's)."""
    known = [value for value in values if value is not None]
    return statistics.median(known) if known and len(known) == len(values) else None


# -- formatting ----------------------------------------------------------------------------------


def seconds(value: float) -> str:
    if value >= 1:
        return f"{value:.2f} s"
    if value >= 0.01:
        return f"{value * 1000:.0f} ms"
    return f"{value * 1000:.2f} ms"


def size(value: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if value >= scale:
            return f"{value / scale:.1f} {unit}"
    return f"{value:.0f} B"


#: What a table shows for a figure that does not apply to a store.
NOT_APPLICABLE = "n/a"


def size_or_na(value: float | None) -> str:
    return NOT_APPLICABLE if value is None else size(value)


def ratio(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}x"
    if value >= 10:
        return f"{value:.0f}x"
    return f"{value:.2f}x"


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


# -- tables --------------------------------------------------------------------------------------


def markdown(summary: Summary) -> str:
    """The results as markdown: per N a table of cycles and one of the rest, then targets."""
    lines: list[str] = []
    for n in summary.sizes:
        lines += [f"### N = {n:,} ({3 * n + 1:,} records)", ""]
        lines += [*_cycle_table(summary, n), ""]
        lines += [*_other_table(summary, n), ""]
    lines += ["### Targets", ""]
    lines += [f"- {verdict}" for verdict in targets(summary)]
    return "\n".join(lines) + "\n"


def _cycle_table(summary: Summary, n: int) -> list[str]:
    lines = [
        _row(
            ["store", "K", "cycle", "vs PTB", "vs floor", "loop stall: median / worst", "written"]
        ),
        _row(["---", "---:", "---:", "---:", "---:", "---:", "---:"]),
    ]
    notes = []
    for contender in summary.contenders:
        cell = summary.cell(contender.name, n)
        if cell is None:
            continue
        for k in summary.ks:
            if k not in cell.cycle:
                lines.append(_row([contender.label, str(k), "not run", "", "", "", ""]))
                notes.append(
                    f"{contender.label} at K = {k}: not run, its cycle rewrites the whole file "
                    f"once per changed record (N times K = {n * k:,} > {contender.max_work:,})."
                )
                continue
            cycle = cell.cycle[k]
            against_ptb = ""
            reference = summary.reference_cycle(k, n)
            if reference is not None and not contender.is_reference:
                against_ptb = ratio(reference[0] / cycle) + " faster"
                if reference[1] != n:
                    against_ptb += f" (PTB at N = {reference[1]:,})"
            against_floor = ""
            floor = summary.cell(contender.floor, n) if contender.floor else None
            if floor is not None and k in floor.cycle:
                against_floor = ratio(cycle / floor.cycle[k])
            lines.append(
                _row(
                    [
                        contender.label,
                        str(k),
                        seconds(cycle),
                        against_ptb,
                        against_floor,
                        f"{seconds(cell.stall[k])} / {seconds(cell.worst_stall[k])}",
                        size_or_na(cell.written[k]),
                    ]
                )
            )
    if any(c.server is not None for c in summary.contenders if summary.cell(c.name, n)):
        notes.append(_SERVER_NOTE)
    if notes:
        lines += [""] + [f"*{note}*" for note in notes]
    return lines


_SERVER_NOTE = (
    f"{NOT_APPLICABLE}: a server store hands its data to the server over a socket; the bytes "
    "the server writes to its disk are not the benchmark process's. Server cycles include the "
    "round trips to a server on the same machine (loopback)."
)


def _other_table(summary: Summary, n: int) -> list[str]:
    lines = [
        _row(["store", "cold load", "vs PTB", "flush", "one full write", "files", "peak RSS"]),
        _row(["---", "---:", "---:", "---:", "---:", "---:", "---:"]),
    ]
    reference = summary.reference()
    base = summary.cell(reference.name, n) if reference else None
    for contender in summary.contenders:
        cell = summary.cell(contender.name, n)
        if cell is None:
            continue
        lines.append(
            _row(
                [
                    contender.label,
                    seconds(cell.load),
                    ratio(cell.load / base.load) if base and not contender.is_reference else "",
                    seconds(cell.flush),
                    seconds(cell.full_write) if cell.full_write is not None else "",
                    size_or_na(cell.size),
                    size(cell.peak_rss),
                ]
            )
        )
    if any(c.server is not None for c in summary.contenders if summary.cell(c.name, n)):
        lines += [
            "",
            f"*{NOT_APPLICABLE}: a server store keeps its data on the server, not in files; its "
            "peak RSS is the benchmark process's alone.*",
        ]
    return lines


# -- targets -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One goal of the comparison, judged at the largest N and K measured."""

    text: str
    needs: tuple[str, ...]
    judge: Callable[[Summary, int, int], tuple[bool, str] | None]


def _sqlite_vs_ptb(summary: Summary, n: int, k: int) -> tuple[bool, str] | None:
    cell = summary.cell("botstate-sqlite", n)
    reference = summary.reference_cycle(k, n)
    if cell is None or reference is None or k not in cell.cycle:
        return None
    factor = reference[0] / cell.cycle[k]
    where = "" if reference[1] == n else f", python-telegram-bot measured at N = {reference[1]:,}"
    return factor >= 1000, (
        f"{ratio(factor)} faster ({seconds(cell.cycle[k])} against {seconds(reference[0])}{where})"
    )


def _within_floor(name: str) -> Callable[[Summary, int, int], tuple[bool, str] | None]:
    """Judge *name*'s cycle against its own floor's: met when at most twice as long."""

    def judge(summary: Summary, n: int, k: int) -> tuple[bool, str] | None:
        floor_name = CONTENDERS[name].floor
        cell = summary.cell(name, n)
        floor = summary.cell(floor_name, n) if floor_name else None
        if cell is None or floor is None or k not in cell.cycle or k not in floor.cycle:
            return None
        factor = cell.cycle[k] / floor.cycle[k]
        return factor <= 2, (
            f"{ratio(factor)} the floor ({seconds(cell.cycle[k])} against "
            f"{seconds(floor.cycle[k])})"
        )

    return judge


def _pickle_vs_full_write(summary: Summary, n: int, k: int) -> tuple[bool, str] | None:
    cell = summary.cell("botstate-pickle", n)
    if cell is None or cell.full_write is None or k not in cell.cycle:
        return None
    factor = cell.cycle[k] / cell.full_write
    return factor <= 1.5, (
        f"{ratio(factor)} one full write ({seconds(cell.cycle[k])} against "
        f"{seconds(cell.full_write)})"
    )


def _compare_with_ptb(
    summary: Summary, n: int, figure: Callable[[Cell], float], show: Callable[[float], str]
) -> tuple[bool, str] | None:
    """botstate SQLite's *figure* against python-telegram-bot's at the same N: met when not
    larger."""
    cell, reference = summary.cell("botstate-sqlite", n), summary.reference()
    base = summary.cell(reference.name, n) if reference else None
    if cell is None or base is None:
        return None
    mine, theirs = figure(cell), figure(base)
    return mine <= theirs, f"{show(mine)} against {show(theirs)}"


def _sqlite_stall(summary: Summary, n: int, k: int) -> tuple[bool, str] | None:
    cell = summary.cell("botstate-sqlite", n)
    if cell is None or not cell.worst_stall:
        return None
    worst = max(cell.worst_stall.values())
    cycles = sum(cell.samples.values())
    return worst <= 0.005, f"worst {seconds(worst)} over {cycles} cycles"


TARGETS = (
    Target(
        "SQLite cycle at least 1,000x faster than python-telegram-bot's PicklePersistence",
        ("botstate-sqlite", "ptb-pickle"),
        _sqlite_vs_ptb,
    ),
    Target(
        "SQLite cycle within 2x the raw sqlite3 floor",
        ("botstate-sqlite", "sqlite-floor"),
        _within_floor("botstate-sqlite"),
    ),
    Target(
        "Redis cycle within 2x its raw redis-py floor",
        ("botstate-redis", "redis-floor"),
        _within_floor("botstate-redis"),
    ),
    Target(
        "PostgreSQL cycle within 2x its raw psycopg floor",
        ("botstate-postgres", "postgres-floor"),
        _within_floor("botstate-postgres"),
    ),
    Target(
        "botstate PicklePersistence cycle at most 1.5x one full-file write",
        ("botstate-pickle",),
        _pickle_vs_full_write,
    ),
    Target(
        "SQLite cold load no slower than python-telegram-bot's pickle load",
        ("botstate-sqlite", "ptb-pickle"),
        lambda summary, n, k: _compare_with_ptb(summary, n, lambda c: c.load, seconds),
    ),
    Target(
        "peak RSS with SQLite below python-telegram-bot's PicklePersistence",
        ("botstate-sqlite", "ptb-pickle"),
        lambda summary, n, k: _compare_with_ptb(summary, n, lambda c: c.peak_rss, size),
    ),
    Target(
        "event loop never blocked more than 5 ms in a SQLite cycle",
        ("botstate-sqlite",),
        _sqlite_stall,
    ),
)


def targets(summary: Summary) -> list[str]:
    """One line per target: met or missed, with the measured figures."""
    n, k = max(summary.sizes), max(summary.ks)
    names = {c.name for c in summary.contenders}
    verdicts = []
    for target in TARGETS:
        judged = target.judge(summary, n, k) if set(target.needs) <= names else None
        if judged is None:
            verdicts.append(f"{target.text}: not measured in this run.")
            continue
        met, figures = judged
        mark = "**met**" if met else "**missed**"
        verdicts.append(f"{target.text} (N = {n:,}, K = {k}): {mark}, {figures}.")
    return verdicts


# -- chart ---------------------------------------------------------------------------------------

_COLOURS = (
    "#c0392b",
    "#2471a3",
    "#1e8449",
    "#7d3c98",
    "#b9770e",
    "#555555",
    "#17a589",
    "#d4ac0d",
)
_WIDTH, _HEIGHT = 860, 460
_LEFT, _RIGHT, _TOP, _BOTTOM = 70, 320, 40, 50


def _power_of_ten(power: int) -> str:
    """A tick label of the time axis: 0.1 ms, 1 ms, ..., 1 s, 10 s."""
    if power >= 0:
        return f"{10**power:,} s"
    if power >= -3:
        return f"{10 ** (power + 3):,} ms"
    return f"{10.0 ** (power + 3):g} ms"


def _log_range(values: Sequence[float]) -> tuple[int, int]:
    return math.floor(math.log10(min(values))), math.ceil(math.log10(max(values)))


def chart_svg(summary: Summary) -> str:
    """Per-cycle time against N for every contender, both axes logarithmic, as SVG.

    A solid line is the largest K, a dashed line the smallest.
    """
    points = [
        cell.cycle[k] for cell in summary.cells.values() for k in summary.ks if k in cell.cycle
    ]
    if not points:
        return ""
    y_low, y_high = _log_range(points)
    x_low, x_high = math.log10(min(summary.sizes)), math.log10(max(summary.sizes))
    if x_high == x_low:
        x_low, x_high = x_low - 0.5, x_high + 0.5
    plot_width = _WIDTH - _LEFT - _RIGHT
    plot_height = _HEIGHT - _TOP - _BOTTOM

    def x(n: float) -> float:
        return _LEFT + (math.log10(n) - x_low) / (x_high - x_low) * plot_width

    def y(value: float) -> float:
        return _TOP + (y_high - math.log10(value)) / (y_high - y_low) * plot_height

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_WIDTH}" height="{_HEIGHT}" '
        f'viewBox="0 0 {_WIDTH} {_HEIGHT}" font-family="sans-serif" font-size="12">',
        f'<rect width="{_WIDTH}" height="{_HEIGHT}" fill="white"/>',
        f'<text x="{_LEFT}" y="22" font-size="14" font-weight="bold">Time of one persistence '
        "cycle against the number of users N</text>",
    ]

    # Grid and axis labels: one line per power of ten of time, one per measured N.
    for power in range(y_low, y_high + 1):
        top = y(10.0**power)
        parts.append(
            f'<line x1="{_LEFT}" y1="{top:.1f}" x2="{_LEFT + plot_width}" y2="{top:.1f}" '
            'stroke="#dddddd"/>'
        )
        parts.append(
            f'<text x="{_LEFT - 6}" y="{top + 4:.1f}" text-anchor="end">'
            f"{_power_of_ten(power)}</text>"
        )
    for n in summary.sizes:
        left = x(n)
        parts.append(
            f'<line x1="{left:.1f}" y1="{_TOP}" x2="{left:.1f}" y2="{_TOP + plot_height}" '
            'stroke="#dddddd"/>'
        )
        parts.append(
            f'<text x="{left:.1f}" y="{_TOP + plot_height + 18}" text-anchor="middle">{n:,}</text>'
        )
    parts.append(
        f'<text x="{_LEFT + plot_width / 2:.1f}" y="{_HEIGHT - 10}" text-anchor="middle">'
        "N (users; as many chats and conversation states)</text>"
    )
    parts.append(
        f'<rect x="{_LEFT}" y="{_TOP}" width="{plot_width}" height="{plot_height}" '
        'fill="none" stroke="#333333"/>'
    )

    # One line per contender and K, then the legend.
    legend_left, legend_top = _LEFT + plot_width + 16, _TOP + 10
    for index, contender in enumerate(summary.contenders):
        colour = _COLOURS[index % len(_COLOURS)]
        for k in summary.ks:
            dash = "" if k == max(summary.ks) else ' stroke-dasharray="5,4"'
            line = [
                (x(n), y(cell.cycle[k]))
                for n in summary.sizes
                if (cell := summary.cell(contender.name, n)) is not None and k in cell.cycle
            ]
            if len(line) > 1:
                coordinates = " ".join(f"{px:.1f},{py:.1f}" for px, py in line)
                parts.append(
                    f'<polyline points="{coordinates}" fill="none" stroke="{colour}" '
                    f'stroke-width="2"{dash}/>'
                )
            parts += [
                f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3" fill="{colour}"/>' for px, py in line
            ]
        top = legend_top + index * 40
        parts.append(
            f'<line x1="{legend_left}" y1="{top}" x2="{legend_left + 24}" y2="{top}" '
            f'stroke="{colour}" stroke-width="2"/>'
        )
        parts.append(f'<text x="{legend_left + 30}" y="{top + 4}">{contender.label}</text>')
    bottom = legend_top + len(summary.contenders) * 40
    parts.append(
        f'<text x="{legend_left}" y="{bottom}">solid: K = {max(summary.ks)} changed</text>'
    )
    parts.append(
        f'<text x="{legend_left}" y="{bottom + 18}">dashed: K = {min(summary.ks)} changed</text>'
    )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
