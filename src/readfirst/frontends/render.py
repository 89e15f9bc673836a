"""Human output: a compact benchstat-like table, and progress on long work."""

from __future__ import annotations

import math
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

VERDICT_STYLE = {
    "improved": "bold green",
    "regressed": "bold red",
    "no_change": "bold",
    "inconclusive": "bold yellow",
    "checks_failed": "bold red",
    "refused": "bold magenta",
    "crash": "bold red",
    "suspect": "bold magenta",
}


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
            from readfirst.report.status import seconds_str

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


def format_level(level: float) -> str:
    """A CI level as text: 0.95 -> "95 %", 0.983 -> "98.3 %"."""
    pct = level * 100
    return f"{pct:.0f} %" if abs(pct - round(pct)) < 0.05 else f"{pct:.1f} %"


def format_change(ratio: float | None, ci_low: float | None = None, ci_high: float | None = None,
                  ci_level: float | None = None, *, significant: bool = True,
                  decimals: int = 1) -> str:
    """A cand/base (or new/old) ratio as readfirst writes it everywhere: the change in percent,
    its CI in percent with the level, and a leading "~" (benchstat's mark) when it is not
    significant, e.g. "-17.2 % [-17.6, -16.8] % (95 % CI)" or "~ +0.3 % [-1.2, +1.8] % (95 % CI)".
    Ratios stay in the JSON; this is only the text."""
    if ratio is None or not math.isfinite(ratio):
        return "–"
    text = f"{(ratio - 1) * 100:+.{decimals}f} %"
    if ci_low is not None and ci_high is not None:
        text += f" [{(ci_low - 1) * 100:+.{decimals}f}, {(ci_high - 1) * 100:+.{decimals}f}] %"
        if ci_level is not None:
            text += f" ({format_level(ci_level)} CI)"
    return text if significant else f"~ {text}"


def result_significant(r: dict[str, Any]) -> bool:
    """Whether a measured change is significant, as benchstat reads it: p below the level of the
    look that decided; without that level (an experiment row), the CI excludes no change (the
    same thing for compare's t-interval). Nothing to judge by: significant (no "~")."""
    p, level = r.get("p_value"), r.get("alpha_look")
    if p is not None and level:
        return bool(p < level)
    low, high = r.get("ci_low"), r.get("ci_high")
    if low is not None and high is not None:
        return not low <= 1.0 <= high
    return True


def format_result_change(r: dict[str, Any], *, decimals: int = 1, level: bool = True) -> str:
    """`format_change` of a compare result, experiment row or live estimate (a dict with
    `ratio`, `ci_low`, `ci_high`, `ci_level`, and `p_value` / `alpha_look` when known);
    `level=False` leaves the CI level out for a table that prints it in its header."""
    return format_change(r.get("ratio"), r.get("ci_low"), r.get("ci_high"),
                         r.get("ci_level") if level else None,
                         significant=result_significant(r), decimals=decimals)


def shared_ci_level(rows: list[dict[str, Any]]) -> float | None:
    """The one CI level of all measured rows, for a table header; None when they differ."""
    levels = {r.get("ci_level") for r in rows if r.get("ratio") is not None}
    return levels.pop() if len(levels) == 1 else None


def format_p(p: float | None) -> str:
    return "p=–" if p is None else f"p={p:.2g}" if p >= 0.0001 else "p<0.0001"


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
