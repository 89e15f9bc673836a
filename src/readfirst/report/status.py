"""`readfirst status`: one row per experiment of a run summary, as a rich table or JSON rows.

Also holds the small formatting helpers the reports share (change, CI, duration, numbers).
"""

from __future__ import annotations

import math
from typing import Any

from rich import box
from rich.table import Table
from rich.text import Text

from readfirst.core.notation import (
    format_level,
    format_result_change,
    result_significant,
    seconds_str,
    shared_ci_level,
)

PENDING = ("queued", "running")
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


def num(x: float | None, decimals: int | None = None) -> str:
    """A number with about four significant digits; "–" for None."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    if decimals is None:
        decimals = max(0, 3 - math.floor(math.log10(abs(x)))) if x else 2
    return f"{x:.{decimals}f}"


def pct(ratio: float | None) -> float | None:
    """ratio - 1 in percent (None stays None)."""
    return None if ratio is None else round((ratio - 1) * 100, 4)


def evidence_str(r: dict[str, Any], metric: dict[str, Any] | None = None) -> str:
    """A measurement in one line: "tok_s 36.9 -> 41.9 tok/s (+13.6 % [+12.0, +15.0] % (99.5 %
    CI), p=0.002, 10 rounds)", "~" before a change that is not significant. Takes a compare
    result or an experiment row."""
    m = r.get("metric") or metric or {}
    base, cand = (r.get("base") or {}).get("median"), (r.get("cand") or {}).get("median")
    head = f"{m.get('name') or 'metric'} " if m.get("name") or base is not None else ""
    if base is not None and cand is not None:
        head += f"{num(base)} -> {num(cand)}" + (f" {m['unit']}" if m.get("unit") else "") + " "
    parts = [format_result_change(r)]
    if r.get("p_value") is not None:
        parts.append(f"p={r['p_value']:.3g}")
    if r.get("rounds"):
        parts.append(f"{r['rounds']} rounds")
    if r.get("ratio") is None:
        return f"{r.get('verdict') or r.get('status') or '?'}: {r.get('reason') or ''}".strip()
    return f"{head}({', '.join(parts)})"


def better(ratio: float | None, direction: str) -> bool | None:
    """Whether the ratio means better for this metric direction (None when unknown/equal)."""
    if ratio is None or ratio == 1:
        return None
    return ratio < 1 if direction == "lower" else ratio > 1


def duration(exp: dict[str, Any]) -> float | None:
    """Seconds an experiment took: finished - started, else its timings' total."""
    start, end = exp.get("started"), exp.get("finished")
    if start is not None and end is not None:
        return max(0.0, end - start)
    total = (exp.get("timings") or {}).get("total")
    return float(total) if total is not None else None


def result_label(exp: dict[str, Any]) -> str:
    """The verdict, or the row status when there is none (skipped, queued, worker_died...)."""
    return exp.get("verdict") or exp.get("status") or "?"


def experiments(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """The summary's experiment rows in seq order."""
    return sorted(summary.get("experiments") or [], key=lambda e: e.get("seq") or 0)


def status_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows for `readfirst status --json`, in seq order.

    `change`, `ci_low` and `ci_high` are relative changes in percent (ratio - 1) * 100, or None;
    the ratios themselves are `ratio`, `ratio_ci_low`, `ratio_ci_high`, with `ci_level`;
    `significant` is false where the text shows "~"; `change_text` is that text; `duration` is
    in seconds.
    """
    rows = []
    for e in experiments(summary):
        d = duration(e)
        rows.append({
            "seq": e.get("seq"),
            "candidate_id": e.get("candidate_id"),
            "title": e.get("title") or "",
            "source": e.get("source"),
            "verdict": e.get("verdict"),
            "outcome": e.get("outcome"),
            "status": e.get("status"),
            "change": pct(e.get("ratio")),
            "ci_low": pct(e.get("ci_low")),
            "ci_high": pct(e.get("ci_high")),
            "ratio": e.get("ratio"),
            "ratio_ci_low": e.get("ci_low"),
            "ratio_ci_high": e.get("ci_high"),
            "ci_level": e.get("ci_level"),
            "significant": None if e.get("ratio") is None else result_significant(e),
            "change_text": format_result_change(e),
            "duration": None if d is None else round(d, 3),
            "worker": e.get("worker"),
            "reason": e.get("reason") or "",
        })
    return rows


def status_table(summary: dict[str, Any]) -> Table:
    """A rich table of the run's experiments, one line each, readable at 80 columns: titles are
    cut with an ellipsis rather than wrapped, and never read as rich markup."""
    metric = summary.get("metric") or {}
    direction = metric.get("direction") or "higher"
    table = Table(
        title=Text(f"{summary.get('run_id', '?')}  {summary.get('status', '?')}"
                   f"  ({metric.get('name') or 'metric'}, {direction} is better)"),
        title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True,
    )
    table.add_column("#", justify="right", no_wrap=True)
    # the only column rich may shrink; its cells are cut, not wrapped
    table.add_column("experiment", min_width=12)
    table.add_column("result", no_wrap=True)
    level = shared_ci_level(experiments(summary))
    # one CI level for every row goes in the header, so the rows stay short at 80 columns
    table.add_column("change (CI)" if level is None else f"change ({format_level(level)} CI)",
                     justify="right", no_wrap=True)
    table.add_column("time", justify="right", no_wrap=True)
    table.add_column("wkr", no_wrap=True)
    for e in experiments(summary):
        good = better(e.get("ratio"), direction)
        label = "kept" if e.get("outcome") == "kept" else result_label(e)
        style = "bold green" if label == "kept" else VERDICT_STYLE.get(
            label, "dim" if label in PENDING else "")
        kind = "confirm: " if e.get("kind") == "confirm" else ""
        table.add_row(
            str(e.get("seq", "")),
            Text(kind + (e.get("title") or ""), no_wrap=True, overflow="ellipsis"),
            Text(label, style=style),
            Text(format_result_change(e, level=level is None),
                 style={True: "green", False: "red", None: ""}[good]),
            seconds_str(duration(e)),
            Text(e.get("worker") or ""),
        )
    return table
