"""The loop's part of the journal: loop runs and their experiments (tables in journal.py).

The journal is the truth a `--resume` starts from: which candidates are finished, which winner
still awaits its confirmation, and the current baseline.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

from readfirst.core.candidate import Candidate
from readfirst.core.results import RunSummary
from readfirst.store.journal import Journal, _pid_alive

FINAL_STATUSES = ("finished", "skipped", "worker_died")


class LoopLog:
    def __init__(self, journal: Journal) -> None:
        self.j = journal
        self.db = journal.db
        for row in self.db.execute(
            "SELECT id, pid FROM loop_runs WHERE status = 'running' AND host = ?", (journal.host,)
        ).fetchall():
            if row["pid"] != os.getpid() and not _pid_alive(row["pid"]):
                self.finish(row["id"], "interrupted", "process ended mid-run")

    @classmethod
    def reader(cls, db: sqlite3.Connection) -> LoopLog:
        """Queries only, on a connection of its own (e.g. read-only, for the dashboard): no
        interrupted-run bookkeeping, which writes."""
        log = cls.__new__(cls)
        log.db = db
        return log

    # --- loop runs -----------------------------------------------------------------------

    def create(self, loop_id: str, target: Path, branch: str, base: str,
               options: dict[str, Any]) -> None:
        self.db.execute(
            "INSERT INTO loop_runs (id, status, started, pid, host, target, branch, base_commit,"
            " baseline, options_json) VALUES (?, 'running', ?, ?, ?, ?, ?, ?, ?, ?)",
            (loop_id, time.time(), os.getpid(), self.j.host, str(target), branch, base, base,
             json.dumps(options)),
        )

    def reopen(self, loop_id: str) -> None:
        self.db.execute(
            "UPDATE loop_runs SET status = 'running', pid = ?, finished = NULL, stop_reason = NULL"
            " WHERE id = ?", (os.getpid(), loop_id))
        # experiments cut off mid-flight are redone: they never reached a verdict
        self.db.execute(
            "UPDATE experiments SET status = 'cancelled', finished = ?,"
            " reason = 'interrupted before it finished; redone on resume'"
            " WHERE loop_id = ? AND status = 'running'", (time.time(), loop_id))

    def finish(self, loop_id: str, status: str, stop_reason: str,
               report: str | None = None) -> None:
        self.db.execute(
            "UPDATE loop_runs SET status = ?, finished = ?, stop_reason = ?,"
            " report = COALESCE(?, report) WHERE id = ?",
            (status, time.time(), stop_reason, report, loop_id),
        )

    def set_report(self, loop_id: str, report: str) -> None:
        self.db.execute("UPDATE loop_runs SET report = ? WHERE id = ?", (report, loop_id))

    def get(self, loop_id: str | None = None) -> sqlite3.Row | None:
        """A loop run by id, or the latest one."""
        if loop_id:
            row = self.db.execute("SELECT * FROM loop_runs WHERE id = ?", (loop_id,)).fetchone()
        else:
            row = self.db.execute(
                "SELECT * FROM loop_runs ORDER BY started DESC, rowid DESC LIMIT 1").fetchone()
        return row  # type: ignore[no-any-return]

    # --- experiments ---------------------------------------------------------------------

    def start_experiment(self, loop_id: str, wave: int, kind: str, cand: Candidate,
                         baseline: str, worker: str | None, status: str = "running") -> int:
        seq = self.db.execute(
            "SELECT COALESCE(MAX(seq), 0) + 1 FROM experiments WHERE loop_id = ?", (loop_id,)
        ).fetchone()[0]
        cur = self.db.execute(
            "INSERT INTO experiments (loop_id, seq, wave, kind, candidate_id, candidate_json,"
            " baseline, worker, status, started) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (loop_id, seq, wave, kind, cand.id, json.dumps(cand.to_dict()), baseline, worker,
             status, time.time()),
        )
        return int(cur.lastrowid or 0)

    def seq_of(self, exp_id: int) -> int:
        return int(self.db.execute("SELECT seq FROM experiments WHERE id = ?",
                                   (exp_id,)).fetchone()[0])

    def set_pid(self, exp_id: int, pid: int) -> None:
        self.db.execute("UPDATE experiments SET pid = ? WHERE id = ?", (pid, exp_id))

    def finish_experiment(self, exp_id: int, status: str, *, verdict: str | None = None,
                          reason: str = "", result: dict[str, Any] | None = None,
                          cand_commit: str | None = None,
                          timings: dict[str, float] | None = None,
                          outcome: str | None = None) -> None:
        self.db.execute(
            "UPDATE experiments SET status = ?, verdict = ?, reason = ?, result_json = ?,"
            " cand_commit = ?, timings_json = ?, outcome = ?, finished = ? WHERE id = ?",
            (status, verdict, reason, json.dumps(result) if result else None, cand_commit,
             json.dumps(timings or {}), outcome, time.time(), exp_id),
        )

    def land(self, loop_id: str, exp_ids: list[int], commit: str) -> None:
        """Mark a winner kept and advance the baseline, in one transaction."""
        with self.db:  # BEGIN ... COMMIT
            self.db.execute("BEGIN")
            for exp_id in exp_ids:
                self.db.execute(
                    "UPDATE experiments SET outcome = 'kept', landed_commit = ? WHERE id = ?",
                    (commit, exp_id))
            self.db.execute("UPDATE loop_runs SET baseline = ? WHERE id = ?", (commit, loop_id))

    def discard(self, exp_ids: list[int], reason: str | None = None) -> None:
        for exp_id in exp_ids:
            self.db.execute(
                "UPDATE experiments SET outcome = 'discarded',"
                " reason = COALESCE(?, reason) WHERE id = ?", (reason, exp_id))

    def record_noise(self, loop_id: str, worker: str, cv: float | None, n: int | None,
                     quarantined: bool) -> None:
        self.db.execute("INSERT INTO worker_noise VALUES (?, ?, ?, ?, ?, ?)",
                        (loop_id, worker, time.time(), cv, n, int(quarantined)))

    def workers(self, loop_id: str) -> dict[str, dict[str, Any]]:
        """Each worker's latest noise check: CV of baseline runs, quarantined or not."""
        rows = self.db.execute(
            "SELECT worker, ts, cv, n, quarantined FROM worker_noise WHERE loop_id = ?"
            " ORDER BY ts", (loop_id,)).fetchall()
        out: dict[str, dict[str, Any]] = {}
        for r in rows:
            out[r["worker"]] = {"cv": r["cv"], "n": r["n"], "quarantined": bool(r["quarantined"]),
                                "checks": out.get(r["worker"], {}).get("checks", 0) + 1}
        return out

    def experiments(self, loop_id: str) -> list[sqlite3.Row]:
        return self.db.execute(
            "SELECT * FROM experiments WHERE loop_id = ? ORDER BY seq", (loop_id,)).fetchall()

    # --- summary (the run summary printed by `run --json`, read by the report) -------------

    def summary(self, loop_id: str) -> dict[str, Any]:
        run = self.get(loop_id)
        assert run is not None
        options = json.loads(run["options_json"])
        exps = [self._experiment_dict(r) for r in self.experiments(loop_id)
                if r["kind"] != "noise"]  # noise checks are reported per worker instead
        api = self._api_cost(loop_id)
        compute = round(sum(e["timings"].get("cost_usd", 0.0) for e in exps), 6)
        return RunSummary.model_validate({
            "run_id": run["id"],
            "status": run["status"],
            "target": run["target"],
            "branch": run["branch"],
            "base_commit": run["base_commit"],
            "final_commit": run["baseline"],
            "metric": options.get("metric", {}),
            "started": run["started"],
            "finished": run["finished"],
            "stop_reason": run["stop_reason"],
            "workers": options.get("workers"),
            "proposer": options.get("proposer"),
            "experiments": exps,
            "report": run["report"],
            "api_cost": api,
            "cost": {"compute_usd": compute, "api_usd": api["usd"],
                     "total_usd": round(compute + api["usd"], 6)},
            "workers_noise": self.workers(loop_id),
        }).model_dump()

    def _api_cost(self, loop_id: str) -> dict[str, float]:
        """Tokens and USD the proposer's model calls cost in this run (none: zeros)."""
        try:
            row = self.db.execute(
                "SELECT COUNT(*), COALESCE(SUM(input_tokens), 0), COALESCE(SUM(output_tokens), 0),"
                " COALESCE(SUM(cost_usd), 0) FROM llm_calls WHERE run_id = ?", (loop_id,)
            ).fetchone()
        except sqlite3.OperationalError:  # no model was ever called in this target
            return {"calls": 0, "input_tokens": 0, "output_tokens": 0, "usd": 0.0}
        return {"calls": row[0], "input_tokens": row[1], "output_tokens": row[2],
                "usd": round(row[3], 6)}

    @staticmethod
    def _experiment_dict(r: sqlite3.Row) -> dict[str, Any]:
        cand = json.loads(r["candidate_json"])
        res = json.loads(r["result_json"]) if r["result_json"] else {}

        def side(name: str) -> dict[str, Any] | None:
            s = res.get(name)
            return {k: s[k] for k in ("mean", "stddev", "median", "n")} if s else None

        return {
            "seq": r["seq"],
            "wave": r["wave"],
            "kind": r["kind"],
            "candidate_id": r["candidate_id"],
            "title": cand["title"],
            "source": cand["source"],
            "provenance": cand.get("provenance", []),
            "rationale": cand.get("rationale", ""),
            "parent": cand.get("parent"),
            "attempt": cand.get("attempt", 0),
            "status": r["status"],
            "verdict": r["verdict"],
            "outcome": r["outcome"],
            "reason": r["reason"] or "",
            "ratio": res.get("ratio"),
            "ci_low": res.get("ci_low"),
            "ci_high": res.get("ci_high"),
            "p_value": res.get("p_value"),
            "ci_level": res.get("ci_level"),
            "rounds": res.get("rounds"),
            "base": side("base"),
            "cand": side("cand"),
            "flags": res.get("flags", []),
            "logs": res.get("logs"),
            "worker": r["worker"],
            "baseline": r["baseline"],
            "cand_commit": r["cand_commit"],
            "landed_commit": r["landed_commit"],
            "timings": json.loads(r["timings_json"]) if r["timings_json"] else {},
            "started": r["started"],
            "finished": r["finished"],
        }
