"""A run summary as what a report shows: the funnel, the rows, the winners, the stages' time,
the cost (`build_context`); the report's templates and the dashboard read it.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from readfirst.core.notation import format_result_change, seconds_str
from readfirst.report.status import PENDING, better, duration, experiments, num, result_label

STAGES = ("apply", "build", "checks", "warmup", "bench")


def _by_candidate(summary: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Rows grouped per candidate_id, in order of first appearance (rows in seq order)."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for e in experiments(summary):
        groups.setdefault(str(e.get("candidate_id") or f"seq{e.get('seq')}"), []).append(e)
    return groups


def _build_failed(e: dict[str, Any]) -> bool:
    return e.get("verdict") == "crash" and "build_failed" in (e.get("flags") or [])


def _built(e: dict[str, Any]) -> bool:
    # A row without a verdict (skipped, queued, running, worker_died) has shown nothing built.
    return e.get("verdict") not in (None, "refused") and not _build_failed(e)


def funnel(summary: dict[str, Any]) -> dict[str, int]:
    """Counts of distinct candidates: proposed, built, checks passed, faster, kept."""
    counts = dict.fromkeys(("proposed", "built", "checks passed", "faster", "kept"), 0)
    for rows in _by_candidate(summary).values():
        counts["proposed"] += 1
        counts["built"] += any(_built(e) for e in rows)
        counts["checks passed"] += any(
            _built(e) and e.get("verdict") != "checks_failed" for e in rows)
        counts["faster"] += any(e.get("verdict") == "improved" for e in rows)
        counts["kept"] += any(e.get("outcome") == "kept" for e in rows)
    return counts


def _median(side: dict[str, Any] | None) -> float | None:
    return side.get("median") if side else None


def _mean_sd(side: dict[str, Any] | None) -> str:
    if not side or side.get("mean") is None:
        return "–"
    mean, sd = side["mean"], side.get("stddev")
    d = max(0, 3 - math.floor(math.log10(abs(mean)))) if mean else 2
    return num(mean, d) + ("" if sd is None else f" ± {num(sd, d)}")


def _stamp(ts: float | None) -> str:
    if ts is None:
        return "–"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _wall(summary: dict[str, Any]) -> tuple[float | None, bool]:
    """Wall time of the run and whether it is only "so far" (no finish time yet)."""
    start = summary.get("started")
    if start is None:
        return None, False
    if summary.get("finished") is not None:
        return max(0.0, summary["finished"] - start), False
    stamps = [t for e in experiments(summary) for t in (e.get("started"), e.get("finished"))
              if t is not None]
    return (max(0.0, max(stamps) - start) if stamps else None), True


def _stages(summary: dict[str, Any]) -> dict[str, Any]:
    totals = dict.fromkeys(STAGES, 0.0)
    exp_total = 0.0
    for e in experiments(summary):
        for key, secs in (e.get("timings") or {}).items():
            if secs is None:
                continue
            if key == "total":
                exp_total += secs
            else:
                totals[key] = totals.get(key, 0.0) + secs
    stage_sum = sum(totals.values())
    workers = max(1, int(summary.get("workers") or 1))
    wall, so_far = _wall(summary)
    orchestration = None if wall is None else max(0.0, wall - stage_sum / workers)
    return {
        "rows": [(k, seconds_str(v)) for k, v in totals.items()],
        "stage_sum": seconds_str(stage_sum), "exp_total": seconds_str(exp_total),
        "wall": seconds_str(wall) + (" (so far)" if so_far and wall is not None else ""),
        "orchestration": seconds_str(orchestration), "workers": workers,
    }


def _row(e: dict[str, Any], direction: str) -> dict[str, Any]:
    good = better(e.get("ratio"), direction)
    return {
        "seq": e.get("seq"), "wave": e.get("wave"), "kind": e.get("kind") or "",
        "title": e.get("title") or "", "candidate_id": e.get("candidate_id") or "",
        "source": e.get("source") or "", "result": result_label(e),
        "outcome": e.get("outcome") or "", "reason": e.get("reason") or "",
        # the text in readfirst's one notation; the numbers too, for the dashboard's JSON view
        "change": format_result_change(e), "ratio": e.get("ratio"),
        "ci_low": e.get("ci_low"), "ci_high": e.get("ci_high"), "ci_level": e.get("ci_level"),
        "tone": {True: "good", False: "bad", None: ""}[good], "worker": e.get("worker") or "",
        "duration": seconds_str(duration(e)), "provenance": ", ".join(e.get("provenance") or []),
        "base": _mean_sd(e.get("base")), "cand": _mean_sd(e.get("cand")),
        "commit": (e.get("landed_commit") or e.get("cand_commit") or "")[:10],
        "cand_commit": (e.get("cand_commit") or "")[:12],
        "baseline": (e.get("baseline") or "")[:12], "logs": e.get("logs") or "",
        "p": "–" if e.get("p_value") is None else f"{e['p_value']:.3g}",
    }


def build_context(summary: dict[str, Any]) -> dict[str, Any]:
    """Everything the templates show, already formatted (no plot)."""
    metric = summary.get("metric") or {}
    direction = "lower" if metric.get("direction") == "lower" else "higher"
    winners, failures, pending = [], [], 0
    for rows in _by_candidate(summary).values():
        kept = [e for e in rows if e.get("outcome") == "kept"]
        if kept:
            kept.sort(key=lambda e: (e.get("kind") == "confirm", e.get("seq") or 0))
            winners.append(_row(kept[-1], direction))
        elif rows[-1].get("status") in PENDING:
            pending += 1
        else:
            failures.append(_row(rows[-1], direction) | {"title": rows[0].get("title") or ""})
    counts = funnel(summary)
    wall, so_far = _wall(summary)
    return {
        "run_id": summary.get("run_id") or "?", "target": summary.get("target") or "",
        "branch": summary.get("branch") or "", "status": summary.get("status") or "?",
        "stop_reason": summary.get("stop_reason") or "", "proposer": summary.get("proposer"),
        "workers": summary.get("workers"),
        "metric": {"name": metric.get("name") or "metric", "unit": metric.get("unit") or "",
                   "direction": direction},
        "started": _stamp(summary.get("started")), "finished": _stamp(summary.get("finished")),
        "duration": seconds_str(wall) + (" so far" if so_far and wall is not None else ""),
        "base_commit": (summary.get("base_commit") or "")[:10],
        "final_commit": (summary.get("final_commit") or "")[:10],
        "funnel": list(counts.items()), "funnel_max": max(counts["proposed"], 1),
        "funnel_line": " → ".join(f"{k} {v}" for k, v in counts.items()),
        "winners": winners, "failures": failures, "pending": pending,
        "stages": _stages(summary),
        "cost": _cost(summary),
        "noise": [{"worker": w, "cv": "–" if n.get("cv") is None else f"{n['cv']:.2%}",
                   "runs": n.get("n") or "–", "checks": n.get("checks", 1),
                   "quarantined": "yes" if n.get("quarantined") else "no"}
                  for w, n in sorted((summary.get("workers_noise") or {}).items())],
        "rows": [_row(e, direction) for e in experiments(summary)],
        "measured": any(e.get("status") == "finished" and _median(e.get("cand")) is not None
                        for e in experiments(summary)),
    }


def _cost(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """Compute (catalog price x time), API (the proposer's model calls) and their total."""
    cost = summary.get("cost") or {}
    api = summary.get("api_cost") or {}
    if not cost or not cost.get("total_usd"):  # a local offline run costs nothing to show
        return []
    calls = f" ({api.get('calls', 0)} calls, {api.get('input_tokens', 0)} in / " \
            f"{api.get('output_tokens', 0)} out tokens)" if api.get("calls") else ""
    return [("compute", f"${cost.get('compute_usd', 0):.4f}"),
            ("API" + calls, f"${cost.get('api_usd', 0):.4f}"),
            ("total", f"${cost.get('total_usd', 0):.4f}")]
