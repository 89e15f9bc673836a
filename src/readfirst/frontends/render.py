"""Human output: a compact benchstat-like table, and progress on long work."""

from __future__ import annotations

import math
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from readfirst.core.notation import (
    format_change,
    format_level,
    format_p,
    format_result_change,
    seconds_str,
)
from readfirst.report.status import VERDICT_STYLE


class ProgressView:
    """A rich progress line on stderr; `update` is the engine's progress callback."""

    def __init__(self, console: Console, enabled: bool) -> None:
        self.enabled = enabled
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        self.task = self.progress.add_task("starting", total=None)
        self._bench_start: float | None = None

    def __enter__(self) -> ProgressView:
        if self.enabled:
            self.progress.start()
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.enabled:
            self.progress.stop()

    def update(self, message: str, done: int | None, total: int | None,
               estimate: Any = None) -> None:
        """The engine's progress: stage, rounds so far of the most, the change so far with its
        CI, and the time left at this pace if every round is needed (an upper bound)."""
        import time

        now = time.monotonic()
        if done is not None and self._bench_start is None:
            self._bench_start = now
        text = message
        if estimate is not None:
            text += f"  {format_result_change(estimate.as_result())}"
        if done and total and self._bench_start is not None:
            left = (now - self._bench_start) / done * max(0, total - done)
            text += f"  ETA ≤ {seconds_str(left)}"
        self.progress.update(self.task, description=text, completed=done or 0, total=total)


def _decimals(x: float) -> int:
    """Enough decimals for four significant digits of the typical value."""
    return max(0, 3 - math.floor(math.log10(abs(x)))) if x else 2


def _num(x: float | None, decimals: int | None = None) -> str:
    if x is None:
        return "-"
    return f"{x:.{_decimals(x) if decimals is None else decimals}f}"


def _side_row(name: str, side: dict[str, Any]) -> list[str]:
    d = _decimals(side["median"])
    return [
        name,
        _num(side["median"], d),
        f"{_num(side['mean'], d)} ± {_num(side['stddev'], d)}",
        f"{side['cv']:.1%}",
        str(side["n"]),
        str(len(side["outliers"])),
    ]


def _stats_table(rows: list[list[str]]) -> Table:
    table = Table(box=None, pad_edge=False, show_edge=False)
    for col in ("", "median", "mean ± stddev", "CV", "n", "outliers"):
        table.add_column(col, justify="left" if col == "" else "right")
    for row in rows:
        table.add_row(*row)
    return table


def print_compare(console: Console, r: dict[str, Any]) -> None:
    m = r["metric"]
    unit = f"{m['unit']}, " if m.get("unit") else ""
    console.print(
        f"base {r['base_rev']} ({r['base_commit'][:10]})  vs  cand {r['cand_rev']} "
        f"({r['cand_commit'][:10]})   mode {r['mode']}, {r['rounds']} rounds"
    )
    console.print(f"metric {m['name'] or '?'} ({unit}{m['direction']} is better)\n")
    if r["base"] and r["cand"]:
        console.print(_stats_table([_side_row("base", r["base"]), _side_row("cand", r["cand"])]))
        significant = r.get("alpha_look") is None or r["p_value"] < r["alpha_look"]
        change = format_change(r["ratio"], r["ci_low"], r["ci_high"], r["ci_level"],
                               significant=significant, decimals=2)
        console.print(
            f"\nchange {change}   {format_p(r['p_value'])}   "
            f"wall time {format_change(r['wall']['ratio'])}",
            markup=False,
        )
        for name, s in r.get("secondary", {}).items():
            console.print(
                f"  {name}: {_num(s['base_median'])} -> {_num(s['cand_median'])} "
                f"({format_change(s['ratio'])})", markup=False,
            )
    style = VERDICT_STYLE.get(r["verdict"], "bold")
    console.print(f"\nverdict: [{style}]{r['verdict']}[/]  ", end="")
    console.print(r["reason"], markup=False, soft_wrap=True)
    if r.get("files"):
        console.print("files: " + ", ".join(r["files"]), markup=False)
    if r.get("flags"):
        console.print("flags: " + ", ".join(r["flags"]), markup=False)
    if r.get("tail"):
        console.print("last lines of output:", style="dim")
        console.print(r["tail"], markup=False, style="dim")
    console.print(f"logs: {r['logs']}", style="dim", markup=False)


def print_bench(console: Console, r: dict[str, Any]) -> None:
    m = r["metric"]
    console.print(f"{r['rev']} ({r['commit'][:10]})  metric {m['name']} "
                  f"({m['unit'] + ', ' if m.get('unit') else ''}{m['direction']} is better)\n")
    console.print(_stats_table([_side_row(r["rev"], r)]))
    if r.get("flags"):
        console.print("\nflags: " + ", ".join(r["flags"]), markup=False)
    if r.get("reason"):
        console.print(r["reason"], markup=False)
    console.print(f"logs: {r['logs']}", style="dim", markup=False)


# --- the one notation for changes (terminal, report, commit messages, MCP) -----------------


# --- readfirst judge -------------------------------------------------------------------------


def _median_cell(side: dict[str, Any]) -> str:
    spread = side.get("ci_spread")
    pm = "± ∞" if spread is None else f"± {spread:.0%}"
    return f"{_num(side['median'])} {pm}"


def print_judge(console: Console, r: dict[str, Any]) -> None:
    """benchstat-style tables, one per unit: medians ± CI, change with its CI, p and n."""
    level = format_level(r["ci_level"])
    units: dict[str, list[dict[str, Any]]] = {}
    for row in r["rows"]:
        units.setdefault(row["unit"], []).append(row)
    for unit, rows in units.items():
        table = Table(box=None, pad_edge=False, show_edge=False)
        direction = rows[0]["direction"]
        table.add_column(f"{unit or 'value'} ({direction} is better)", justify="left")
        table.add_column(str(r["old"]), justify="right")
        table.add_column(str(r["new"]), justify="right")
        table.add_column(f"change [{level} CI]", justify="right")
        table.add_column("p, n", justify="left")
        table.add_column("verdict", justify="left")
        for row in rows:
            change = "~" if not row["significant"] else format_change(
                row["ratio"], row["ci_low"], row["ci_high"])
            table.add_row(row["name"], _median_cell(row["old"]), _median_cell(row["new"]),
                          change, f"({format_p(row['p_value'])} n={row['old']['n']}+"
                          f"{row['new']['n']})",
                          Text(row["verdict"], style=VERDICT_STYLE.get(row["verdict"], "")))
        geo = r["geomean"].get(unit)
        if geo and len(rows) > 1:
            table.add_row("geomean", _num(geo["old"]), _num(geo["new"]),
                          format_change(geo["ratio"]), "", "")
        console.print(table)
        console.print()
    for side in ("only_old", "only_new"):
        if r.get(side):
            console.print(f"only in {r[side.split('_')[1]]}: " + ", ".join(r[side]),
                          markup=False)
    console.print(f"~: not significant at alpha = {r['alpha']:g} (two-sided rank-sum test); "
                  f"improved / regressed also need the change beyond the "
                  f"{r['noise_threshold']:.0%} noise threshold", style="dim", markup=False)
