"""The one notation of a change, used everywhere readfirst writes one (terminal tables, reasons,
commit messages, MCP answers, reports, the dashboard, live lines): the change in percent, its
CI in percent with the level, a leading "~" when it is not significant; and durations.
"""

from __future__ import annotations

import math
from typing import Any


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


def seconds_str(s: float | None) -> str:
    """Human duration: "11.6 s", "1 m 40 s", "2 h 03 m"."""
    if s is None:
        return "–"
    if s < 60:
        return f"{s:.1f} s"
    if s < 3600:
        return f"{int(s // 60)} m {int(s % 60):02d} s"
    return f"{int(s // 3600)} h {int(s % 3600 // 60):02d} m"
