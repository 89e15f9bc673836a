"""Human output: a compact benchstat-like table, and progress on long work."""

from __future__ import annotations

import math
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

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
            from readfirst.report.status import change_str, ci_str

            text += f"  {change_str(estimate.ratio)} {ci_str(estimate.ci_low, estimate.ci_high)}"
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
        console.print(
            f"\ncand/base {r['ratio']:.4f}  [{r['ci_low']:.4f}, {r['ci_high']:.4f}] "
            f"{r['ci_level']:.1%} CI   p={r['p_value']:.3g}   "
            f"wall-time ratio {r['wall']['ratio']:.4f}"
        )
        for name, s in r.get("secondary", {}).items():
            ratio = s["ratio"]
            change = f"{ratio - 1:+.1%}" if ratio is not None else "?"
            console.print(
                f"  {name}: {_num(s['base_median'])} -> {_num(s['cand_median'])} ({change})"
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
