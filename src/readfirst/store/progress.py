"""Live progress: what each experiment is doing right now.

The process that does the work (a worker, on this machine) writes its stage, rounds and current
estimate into the journal's `progress` table; `readfirst run`'s live lines, `status --watch`
and the dashboard read it. One row per experiment, kept after it ends (readers show the rows
of experiments still running). Remote workers cannot reach the journal: their experiments show
as running with their elapsed time only.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel

from readfirst.core import constants as C
from readfirst.core.notation import format_result_change, seconds_str

SCHEMA = """
CREATE TABLE IF NOT EXISTS progress (
    exp_id INTEGER PRIMARY KEY,      -- experiments.id
    worker TEXT,
    stage TEXT NOT NULL,             -- e.g. "building candidate", "benchmark rounds"
    rounds_done INTEGER,
    rounds_max INTEGER,
    ratio REAL,                      -- interim cand/base median ratio and its bootstrap CI
    ci_low REAL,
    ci_high REAL,
    started REAL NOT NULL,
    bench_started REAL,
    updated REAL NOT NULL
);
"""


class Estimate(BaseModel):
    """The change so far: median of the paired ratios with a percentile bootstrap CI. Advisory
    (no alpha spending): the verdict comes from the judge at the end."""

    ratio: float
    ci_low: float
    ci_high: float

    def as_result(self) -> dict[str, float]:
        """The fields `notation.format_result_change` reads, with the live CI's level."""
        return {"ratio": self.ratio, "ci_low": self.ci_low, "ci_high": self.ci_high,
                "ci_level": C.LIVE_CI_LEVEL}


def interim_estimate(base: list[float], cand: list[float]) -> Estimate | None:
    n = min(len(base), len(cand))
    if n < 2:
        return None
    ratios = np.asarray(cand[:n], dtype=float) / np.asarray(base[:n], dtype=float)
    rng = np.random.default_rng(C.BOOTSTRAP_SEED)
    idx = rng.integers(0, n, size=(C.LIVE_BOOTSTRAP_RESAMPLES, n))
    medians = np.median(ratios[idx], axis=1)
    tail = (1.0 - C.LIVE_CI_LEVEL) / 2.0 * 100.0
    low, high = np.percentile(medians, [tail, 100.0 - tail])
    return Estimate(ratio=float(np.median(ratios)), ci_low=float(low), ci_high=float(high))


class ProgressBoard:
    """The writer: one experiment's row, updated as its compare moves on. Never raises: a
    journal that is busy or gone must not cost the experiment."""

    def __init__(self, journal_path: Path, exp_id: int, worker: str) -> None:
        self.exp_id, self.worker = exp_id, worker
        self.started = time.time()
        self.bench_started: float | None = None
        try:
            self.db: sqlite3.Connection | None = sqlite3.connect(
                journal_path, isolation_level=None, timeout=5)
            self.db.executescript(SCHEMA)
        except sqlite3.Error:
            self.db = None

    def update(self, message: str, done: int | None, total: int | None,
               estimate: Estimate | None = None) -> None:
        if self.db is None:
            return
        now = time.time()
        if done is not None and self.bench_started is None:
            self.bench_started = now
        ratio, low, high = ((estimate.ratio, estimate.ci_low, estimate.ci_high) if estimate
                            else (None, None, None))
        with contextlib.suppress(sqlite3.Error):
            self.db.execute(
                "INSERT INTO progress (exp_id, worker, stage, rounds_done, rounds_max, ratio,"
                " ci_low, ci_high, started, bench_started, updated)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(exp_id) DO UPDATE SET"
                " stage = excluded.stage, rounds_done = excluded.rounds_done,"
                " rounds_max = excluded.rounds_max,"
                " ratio = COALESCE(excluded.ratio, ratio), ci_low = COALESCE(excluded.ci_low,"
                " ci_low), ci_high = COALESCE(excluded.ci_high, ci_high),"
                " bench_started = excluded.bench_started, updated = excluded.updated",
                (self.exp_id, self.worker, message, done, total, ratio, low, high, self.started,
                 self.bench_started, now))

    def close(self) -> None:
        if self.db is not None:
            self.db.close()
            self.db = None


class WorkerState(BaseModel):
    """One running experiment as the live views show it."""

    worker: str
    seq: int
    kind: str
    title: str
    stage: str
    rounds_done: int | None = None
    rounds_max: int | None = None
    ratio: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    elapsed: float
    eta: float | None = None  # seconds until max_rounds at the pace so far (an upper bound)


def live_states(db: sqlite3.Connection, loop_id: str, now: float | None = None
                ) -> list[WorkerState]:
    """The running experiments of a loop run, with their progress when a worker wrote it."""
    now = time.time() if now is None else now
    with contextlib.suppress(sqlite3.Error):  # read-only: the table exists, or none wrote yet
        db.executescript(SCHEMA)
    try:
        rows = db.execute(
            "SELECT e.id, e.seq, e.kind, e.worker, e.started, e.candidate_json, p.stage,"
            " p.rounds_done, p.rounds_max, p.ratio, p.ci_low, p.ci_high, p.bench_started"
            " FROM experiments e LEFT JOIN progress p ON p.exp_id = e.id"
            " WHERE e.loop_id = ? AND e.status = 'running' ORDER BY e.worker, e.seq",
            (loop_id,)).fetchall()
    except sqlite3.OperationalError:
        return []
    out = []
    for r in rows:
        title = json.loads(r[5]).get("title", "")
        eta = None
        done, most, bench_started = r[7], r[8], r[12]
        if done and most and bench_started:
            eta = (now - bench_started) / done * max(0, most - done)
        out.append(WorkerState(
            worker=r[3] or "?", seq=r[1], kind=r[2], title=title, stage=r[6] or "starting",
            rounds_done=done, rounds_max=most, ratio=r[9], ci_low=r[10], ci_high=r[11],
            elapsed=max(0.0, now - r[4]), eta=eta))
    return out


def state_line(s: WorkerState) -> str:
    """`w0  #3 explore  benchmark rounds 7/30  +12.1 % [+9.0, +15.2] %  41.0 s  ETA ≤ 1 m 10 s
    rmsnorm: fuse ...`"""
    parts = [f"{s.worker}", f"#{s.seq} {s.kind}", s.stage]
    if s.rounds_max:
        parts[-1] += f" {s.rounds_done or 0}/{s.rounds_max}"
    if s.ratio is not None:
        parts.append(format_result_change({"ratio": s.ratio, "ci_low": s.ci_low,
                                           "ci_high": s.ci_high, "ci_level": C.LIVE_CI_LEVEL}))
    parts.append(seconds_str(s.elapsed))
    if s.eta is not None:
        parts.append(f"ETA ≤ {seconds_str(s.eta)}")
    parts.append(s.title)
    return "  ".join(parts)


def states_dicts(states: list[WorkerState]) -> list[dict[str, Any]]:
    return [s.model_dump() for s in states]
