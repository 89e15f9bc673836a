"""Export a run summary in other tools' formats: pi-autoresearch's `log.jsonl`."""

from __future__ import annotations

import json
from statistics import median
from typing import Any

from readfirst.report.status import PENDING, experiments


def _median_of(side: dict[str, Any] | None) -> float | None:
    return None if not side else side.get("median")


def _pi_status(exp: dict[str, Any]) -> str:
    if exp.get("outcome") == "kept":
        return "keep"
    if exp.get("verdict") == "checks_failed":
        return "checks_failed"
    if exp.get("verdict") == "crash" or exp.get("status") == "worker_died":
        return "crash"
    return "discard"


def _mad(values: list[float]) -> float | None:
    """Median absolute deviation from the median; None for no values."""
    if not values:
        return None
    m = median(values)
    return median(abs(v - m) for v in values)


def _baseline_row(summary: dict[str, Any], name: str) -> dict[str, Any] | None:
    """The run's starting point as pi-autoresearch's first row: the base's median as measured
    by the first experiment that measured it, status keep."""
    first = next((e for e in experiments(summary) if _median_of(e.get("base")) is not None
                  and e.get("baseline") == summary.get("base_commit")), None)
    if first is None:
        return None
    value = _median_of(first.get("base"))
    return {
        "run": 1,
        "commit": (summary.get("base_commit") or "")[:7],
        "metric": value,
        "metrics": {name: value},
        "status": "keep",
        "description": "baseline",
        "timestamp": int((first.get("started") or summary.get("started") or 0) * 1000),
        "segment": 0,
        "confidence": None,
    }


def pi_jsonl(summary: dict[str, Any]) -> str:
    """pi-autoresearch's log.jsonl: a config line, a baseline row, then one run line per
    experiment row.

    Rows still queued or running have not happened yet and are left out; `run` numbers the
    emitted lines from 1 in seq order (the baseline is run 1). A row without a measurement
    (skipped, refused, crashed, checks failed) has `"metric": null` and empty `metrics`,
    never a 0 that would plot as a drop. `confidence` is |cand median - base median| divided
    by the MAD of all candidate medians up to and including this row (null when either median
    is missing or the MAD is 0).
    """
    metric = summary.get("metric") or {}
    name = metric.get("name") or "metric"
    dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
    lines = [dumps({
        "type": "config",
        "name": summary.get("run_id"),
        "metricName": name,
        "metricUnit": metric.get("unit") or "",
        "bestDirection": "lower" if metric.get("direction") == "lower" else "higher",
    })]
    baseline = _baseline_row(summary, name)
    if baseline is not None:
        lines.append(dumps(baseline))
    seen: list[float] = []
    n = len(lines) - 1
    for exp in experiments(summary):
        if exp.get("status") in PENDING:
            continue
        n += 1
        cand, base = _median_of(exp.get("cand")), _median_of(exp.get("base"))
        if cand is not None:
            seen.append(cand)
        mad = _mad(seen)
        confidence = None
        if cand is not None and base is not None and mad:
            confidence = round(abs(cand - base) / mad, 6)
        title, reason = exp.get("title") or "", exp.get("reason") or ""
        stamp = exp.get("finished") or exp.get("started") or 0
        lines.append(dumps({
            "run": n,
            "commit": (exp.get("cand_commit") or exp.get("baseline") or "")[:7],
            "metric": cand,
            "metrics": {} if cand is None else {name: cand},
            "status": _pi_status(exp),
            "description": f"{title} — {reason}" if reason else title,
            "timestamp": int(stamp * 1000),
            "segment": 0,
            "confidence": confidence,
        }))
    return "\n".join(lines) + "\n"
