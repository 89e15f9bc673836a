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

from readfirst.store.schema import migrate


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
        migrate(self.db, path)
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
