"""The journal: one SQLite file (WAL) holding every run, revision, step, raw sample and verdict.

Each write is its own transaction, so a kill -9 at any moment leaves the file consistent and
loses at most the sample being measured. A run still marked `running` whose process is gone is
marked `interrupted` the next time the journal is opened.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,              -- compare | bench
    status TEXT NOT NULL,            -- running | done | interrupted | error
    started REAL NOT NULL,
    finished REAL,
    pid INTEGER NOT NULL,
    host TEXT NOT NULL,
    target TEXT NOT NULL,
    metric TEXT,
    spec_json TEXT NOT NULL,
    verdict TEXT,
    result_json TEXT,
    error TEXT
);
CREATE TABLE IF NOT EXISTS revisions (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    role TEXT NOT NULL,              -- base | cand
    rev TEXT NOT NULL,               -- as the user wrote it
    commit_sha TEXT NOT NULL,
    tree_sha TEXT NOT NULL,
    worktree TEXT,
    PRIMARY KEY (run_id, role)
);
CREATE TABLE IF NOT EXISTS steps (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES runs(id),
    role TEXT NOT NULL,
    step TEXT NOT NULL,              -- build | checks | warmup | bench
    round INTEGER,
    cmd TEXT NOT NULL,
    exit_code INTEGER,
    timed_out INTEGER NOT NULL,
    seconds REAL NOT NULL,
    stdout_path TEXT NOT NULL,
    stderr_path TEXT NOT NULL,
    finished REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS samples (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    round INTEGER NOT NULL,
    role TEXT NOT NULL,
    position INTEGER NOT NULL,       -- order within the round (0 first); duet: both 0
    value REAL,                      -- the primary metric; NULL when missing
    metrics_json TEXT NOT NULL,      -- every metric the benchmark printed
    wall_seconds REAL NOT NULL,      -- timed by readfirst itself
    step_id INTEGER REFERENCES steps(id),
    PRIMARY KEY (run_id, round, role)
);
CREATE TABLE IF NOT EXISTS loop_runs (
    id TEXT PRIMARY KEY,             -- the run id, also in the branch name readfirst/<id>
    status TEXT NOT NULL,            -- running | done | interrupted
    started REAL NOT NULL,
    finished REAL,
    pid INTEGER NOT NULL,
    host TEXT NOT NULL,
    target TEXT NOT NULL,
    branch TEXT NOT NULL,
    base_commit TEXT NOT NULL,
    baseline TEXT NOT NULL,          -- the current baseline: the branch head
    options_json TEXT NOT NULL,      -- proposer, workers, limits: what --resume reuses
    stop_reason TEXT,
    report TEXT
);
CREATE TABLE IF NOT EXISTS experiments (
    id INTEGER PRIMARY KEY,
    loop_id TEXT NOT NULL REFERENCES loop_runs(id),
    seq INTEGER NOT NULL,            -- 1, 2, ... within the loop run
    wave INTEGER NOT NULL,
    kind TEXT NOT NULL,              -- explore | confirm
    candidate_id TEXT NOT NULL,
    candidate_json TEXT NOT NULL,    -- the Candidate, diff included
    baseline TEXT NOT NULL,
    worker TEXT,
    pid INTEGER,
    status TEXT NOT NULL,            -- running | finished | skipped | worker_died | cancelled
    verdict TEXT,
    outcome TEXT,                    -- kept | discarded | NULL (pending or not final)
    reason TEXT,
    result_json TEXT,                -- the compare verdict object
    cand_commit TEXT,
    landed_commit TEXT,
    timings_json TEXT,
    started REAL NOT NULL,
    finished REAL,
    UNIQUE (loop_id, seq)
);
CREATE INDEX IF NOT EXISTS samples_by_run ON samples(run_id, role);
CREATE INDEX IF NOT EXISTS revisions_by_tree ON revisions(tree_sha);
"""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Journal:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.host = socket.gethostname()
        self.db = sqlite3.connect(path, isolation_level=None, timeout=30)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA foreign_keys=ON")
        self.db.executescript(SCHEMA)
        self._mark_interrupted()

    def close(self) -> None:
        self.db.close()

    def _mark_interrupted(self) -> None:
        rows = self.db.execute(
            "SELECT id, pid FROM runs WHERE status = 'running' AND host = ?", (self.host,)
        ).fetchall()
        for row in rows:
            if row["pid"] != os.getpid() and not _pid_alive(row["pid"]):
                self.finish_run(row["id"], "interrupted", error="process ended mid-run")

    # --- writes (each one transaction) ---------------------------------------------------

    def start_run(self, kind: str, target: Path, spec: dict[str, Any], metric: str | None) -> int:
        cur = self.db.execute(
            "INSERT INTO runs (kind, status, started, pid, host, target, metric, spec_json)"
            " VALUES (?, 'running', ?, ?, ?, ?, ?, ?)",
            (kind, time.time(), os.getpid(), self.host, str(target), metric, json.dumps(spec)),
        )
        return int(cur.lastrowid or 0)

    def set_metric(self, run_id: int, metric: str) -> None:
        self.db.execute("UPDATE runs SET metric = ? WHERE id = ?", (metric, run_id))

    def add_revision(
        self, run_id: int, role: str, rev: str, commit: str, tree: str, worktree: str | None
    ) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO revisions VALUES (?, ?, ?, ?, ?, ?)",
            (run_id, role, rev, commit, tree, worktree),
        )

    def add_step(self, run_id: int, role: str, step: str, rnd: int | None, res: Any) -> int:
        cur = self.db.execute(
            "INSERT INTO steps (run_id, role, step, round, cmd, exit_code, timed_out, seconds,"
            " stdout_path, stderr_path, finished) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                run_id,
                role,
                step,
                rnd,
                res.cmd,
                res.exit_code,
                int(res.timed_out),
                res.seconds,
                res.stdout_path,
                res.stderr_path,
                time.time(),
            ),
        )
        return int(cur.lastrowid or 0)

    def add_sample(
        self,
        run_id: int,
        rnd: int,
        role: str,
        position: int,
        value: float | None,
        metrics: dict[str, float],
        wall: float,
        step_id: int | None,
    ) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO samples VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (run_id, rnd, role, position, value, json.dumps(metrics), wall, step_id),
        )

    def finish_run(
        self,
        run_id: int,
        status: str,
        *,
        verdict: str | None = None,
        result: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> None:
        self.db.execute(
            "UPDATE runs SET status = ?, finished = ?, verdict = ?, result_json = ?, error = ?"
            " WHERE id = ?",
            (
                status,
                time.time(),
                verdict,
                json.dumps(result) if result is not None else None,
                error,
                run_id,
            ),
        )

    # --- reads ---------------------------------------------------------------------------

    def run(self, run_id: int) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self.db.execute(
            "SELECT * FROM runs WHERE id = ?", (run_id,)
        ).fetchone()
        return row

    def samples(self, run_id: int, role: str) -> list[sqlite3.Row]:
        return self.db.execute(
            "SELECT * FROM samples WHERE run_id = ? AND role = ? ORDER BY round",
            (run_id, role),
        ).fetchall()

    def step_seconds(self, run_id: int) -> dict[str, float]:
        """Seconds spent per kind of step (build, checks, warmup, bench), both sides summed."""
        out: dict[str, float] = {}
        for row in self.db.execute(
            "SELECT step, seconds FROM steps WHERE run_id = ?", (run_id,)
        ).fetchall():
            kind = "warmup" if row["step"].startswith("warmup") else row["step"]
            out[kind] = out.get(kind, 0.0) + row["seconds"]
        return out

    def last_baseline(self, tree: str, metric: str, exclude_run: int) -> list[float]:
        """Samples of the most recent finished run on this host that measured `tree` (as base,
        or as the revision of a bench run), for drift detection."""
        row = self.db.execute(
            "SELECT r.id FROM runs r JOIN revisions v ON v.run_id = r.id"
            " WHERE v.tree_sha = ? AND v.role = 'base' AND r.host = ? AND r.metric = ?"
            " AND r.status = 'done' AND r.id != ? ORDER BY r.id DESC LIMIT 1",
            (tree, self.host, metric, exclude_run),
        ).fetchone()
        if row is None:
            return []
        return [
            s["value"] for s in self.samples(row["id"], "base") if s["value"] is not None
        ]
