"""Everything a view of a run shows, read from the journal without writing to it: the run
summary, each experiment's raw samples per round, the research brief's hypotheses, the live
state of running experiments, and the charts. Used by the dashboard (live) and `report`."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import statistics
import time
from pathlib import Path
from typing import Any

from readfirst.core.errors import ConfigError
from readfirst.report.charts import (
    forest_plot,
    funnel_chart,
    progress_chart,
    result_of,
    samples_chart,
)
from readfirst.report.context import build_context, funnel
from readfirst.store.loop_journal import LoopLog
from readfirst.store.progress import live_states, state_line


def connect_read_only(journal: Path) -> sqlite3.Connection:
    if not journal.is_file():
        raise ConfigError(f"{journal.parent}: no journal yet (run `readfirst run` first)")
    db = sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=5,
                         check_same_thread=False)
    db.row_factory = sqlite3.Row
    return db


def samples_by_seq(db: sqlite3.Connection, loop_id: str) -> dict[int, dict[str, list[float]]]:
    """Each experiment's primary-metric samples per round, base and candidate."""
    out: dict[int, dict[str, list[float]]] = {}
    for row in db.execute("SELECT seq, result_json FROM experiments WHERE loop_id = ?"
                          " AND result_json IS NOT NULL AND kind != 'noise'", (loop_id,)):
        run_id = json.loads(row["result_json"]).get("run_id")
        if not isinstance(run_id, int):
            continue
        sides: dict[str, list[float]] = {"base": [], "cand": []}
        for s in db.execute("SELECT role, value FROM samples WHERE run_id = ? ORDER BY round",
                            (run_id,)):
            if s["role"] in sides and s["value"] is not None:
                sides[s["role"]].append(s["value"])
        out[row["seq"]] = sides
    return out


def hypotheses(db: sqlite3.Connection) -> list[dict[str, Any]]:
    """The latest research brief's hypotheses with their statuses (none: [])."""
    try:
        row = db.execute("SELECT MAX(id) FROM research_runs").fetchone()
        if not row or row[0] is None:
            return []
        rows = db.execute("SELECT rank, title, kind, score, status, status_reason FROM"
                          " hypotheses WHERE research_id = ? ORDER BY rank", (row[0],))
        return [dict(r) for r in rows]
    except sqlite3.OperationalError:
        return []


def machine(db: sqlite3.Connection, run_id: str,
            samples: dict[int, dict[str, list[float]]]) -> dict[str, Any]:
    """Where the run measured and how noisy it was: host, CPUs (when this is that host), and
    the median CV of the base side over the run's experiments (the noise floor)."""
    row = db.execute("SELECT host FROM loop_runs WHERE id = ?", (run_id,)).fetchone()
    host = row[0] if row else None
    cvs = []
    for s in samples.values():
        base = s["base"]
        if len(base) >= 2 and statistics.fmean(base):
            cvs.append(statistics.stdev(base) / statistics.fmean(base))
    return {"host": host, "cpus": os.cpu_count() if host == socket.gethostname() else None,
            "base_cv_median": statistics.median(cvs) if cvs else None, "measured": len(cvs)}


def latest_run_id(db: sqlite3.Connection) -> str | None:
    try:
        row = db.execute("SELECT id FROM loop_runs ORDER BY started DESC, rowid DESC LIMIT 1"
                         ).fetchone()
    except sqlite3.OperationalError:
        return None
    return row[0] if row else None


def charts(summary: dict[str, Any], samples: dict[int, dict[str, list[float]]]
           ) -> dict[str, Any]:
    small = []
    for e in sorted(summary["experiments"], key=lambda e: e["seq"]):
        s = samples.get(e["seq"])
        if s and (s["base"] or s["cand"]):
            small.append(samples_chart(f"#{e['seq']} {e['title']}", s["base"], s["cand"],
                                       result_of(e)))
    return {"progress": progress_chart(summary), "forest": forest_plot(summary),
            "funnel": funnel_chart(funnel(summary)), "samples": small}


def run_view(db: sqlite3.Connection, run_id: str | None = None) -> dict[str, Any]:
    """The whole view of one run (default: the latest) as plain JSON-able data."""
    run_id = run_id or latest_run_id(db)
    log = LoopLog.reader(db)
    if run_id is None or log.get(run_id) is None:
        raise ConfigError(f"no run {run_id!r} in the journal" if run_id else "no runs yet")
    summary = log.summary(run_id)
    samples = samples_by_seq(db, run_id)
    live = live_states(db, run_id) if summary["status"] == "running" else []
    ctx = build_context(summary)
    return {
        "run_id": run_id, "generated": time.time(), "summary": summary, "context": ctx,
        "live": [s.model_dump() | {"line": state_line(s)} for s in live],
        "hypotheses": hypotheses(db), "charts": charts(summary, samples),
        "machine": machine(db, run_id, samples),
    }
