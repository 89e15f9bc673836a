"""A journal written before the schema was versioned (the previous readfirst's CREATE
statements, copied here as they were) is upgraded on open, and its interrupted run resumes."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pytest
from conftest import BASE_WORK, git, make_target, params, run_cli, write

from readfirst.store import schema
from readfirst.store.journal import Journal

# The previous readfirst's journal.py SCHEMA (worker_noise came later, on first use).
PREVIOUS_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY, kind TEXT NOT NULL, status TEXT NOT NULL, started REAL NOT NULL,
    finished REAL, pid INTEGER NOT NULL, host TEXT NOT NULL, target TEXT NOT NULL, metric TEXT,
    spec_json TEXT NOT NULL, verdict TEXT, result_json TEXT, error TEXT);
CREATE TABLE IF NOT EXISTS revisions (
    run_id INTEGER NOT NULL REFERENCES runs(id), role TEXT NOT NULL, rev TEXT NOT NULL,
    commit_sha TEXT NOT NULL, tree_sha TEXT NOT NULL, worktree TEXT,
    PRIMARY KEY (run_id, role));
CREATE TABLE IF NOT EXISTS steps (
    id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL REFERENCES runs(id), role TEXT NOT NULL,
    step TEXT NOT NULL, round INTEGER, cmd TEXT NOT NULL, exit_code INTEGER,
    timed_out INTEGER NOT NULL, seconds REAL NOT NULL, stdout_path TEXT NOT NULL,
    stderr_path TEXT NOT NULL, finished REAL NOT NULL);
CREATE TABLE IF NOT EXISTS samples (
    run_id INTEGER NOT NULL REFERENCES runs(id), round INTEGER NOT NULL, role TEXT NOT NULL,
    position INTEGER NOT NULL, value REAL, metrics_json TEXT NOT NULL,
    wall_seconds REAL NOT NULL, step_id INTEGER REFERENCES steps(id),
    PRIMARY KEY (run_id, round, role));
CREATE TABLE IF NOT EXISTS loop_runs (
    id TEXT PRIMARY KEY, status TEXT NOT NULL, started REAL NOT NULL, finished REAL,
    pid INTEGER NOT NULL, host TEXT NOT NULL, target TEXT NOT NULL, branch TEXT NOT NULL,
    base_commit TEXT NOT NULL, baseline TEXT NOT NULL, options_json TEXT NOT NULL,
    stop_reason TEXT, report TEXT);
CREATE TABLE IF NOT EXISTS experiments (
    id INTEGER PRIMARY KEY, loop_id TEXT NOT NULL REFERENCES loop_runs(id),
    seq INTEGER NOT NULL, wave INTEGER NOT NULL, kind TEXT NOT NULL,
    candidate_id TEXT NOT NULL, candidate_json TEXT NOT NULL, baseline TEXT NOT NULL,
    worker TEXT, pid INTEGER, status TEXT NOT NULL, verdict TEXT, outcome TEXT, reason TEXT,
    result_json TEXT, cand_commit TEXT, landed_commit TEXT, timings_json TEXT,
    started REAL NOT NULL, finished REAL, UNIQUE (loop_id, seq));
CREATE INDEX IF NOT EXISTS samples_by_run ON samples(run_id, role);
CREATE INDEX IF NOT EXISTS revisions_by_tree ON revisions(tree_sha);
"""
# LoopOptions as the previous readfirst stored them (no `waves`)
PREVIOUS_OPTIONS = {"proposer": "patches", "workers": 1, "max_experiments": None,
                    "max_time": None, "patience": None, "patches_dir": None, "pin_cpus": False,
                    "base": "HEAD", "executor": None, "dry_run": False, "max_cost": None}


def _diff(target: Path, text: str) -> str:
    original = (target / "src/params.h").read_text()
    write(target, "src/params.h", text)
    diff = git(target, "diff", "--", "src/params.h") + "\n"
    write(target, "src/params.h", original)
    return diff


def _candidate(cid: str, title: str, diff: str) -> str:
    return json.dumps({"id": cid, "title": title, "rationale": "", "diff": diff,
                       "source": "patches", "provenance": []})


@pytest.fixture
def old_run(tmp_path: Path) -> tuple[Path, str]:
    """A target whose journal the previous readfirst wrote: a run killed with one experiment
    finished (regressed, discarded) and one cut off mid-flight."""
    target = make_target(tmp_path / "target")
    patches = tmp_path / "patches"
    patches.mkdir()
    double = _diff(target, params(BASE_WORK * 2))
    half = _diff(target, params(BASE_WORK // 2))
    (patches / "01-double.patch").write_text(double)
    (patches / "02-half.patch").write_text(half)
    base = git(target, "rev-parse", "HEAD")
    state = target / ".readfirst"
    state.mkdir()
    (state / ".gitignore").write_text("*\n")
    db = sqlite3.connect(state / "journal.db")
    db.executescript(PREVIOUS_SCHEMA)
    assert db.execute("PRAGMA user_version").fetchone()[0] == 0
    run_id = "20260101-000000-abcd"
    options = {"loop": {**PREVIOUS_OPTIONS, "patches_dir": str(patches)},
               "metric": {"name": "time_ms", "unit": "ms", "direction": "lower"},
               "workers": 1, "proposer": "patches"}
    now = time.time()
    db.execute("INSERT INTO loop_runs VALUES (?, 'interrupted', ?, ?, 999999, 'elsewhere', ?,"
               " ?, ?, ?, ?, 'interrupted', NULL)",
               (run_id, now - 60, now - 30, str(target), f"readfirst/{run_id}", base, base,
                json.dumps(options)))
    db.execute("INSERT INTO experiments (loop_id, seq, wave, kind, candidate_id, candidate_json,"
               " baseline, worker, pid, status, verdict, outcome, reason, result_json,"
               " timings_json, started, finished) VALUES (?, 1, 1, 'explore', ?, ?, ?, 'w0', 1,"
               " 'finished', 'regressed', 'discarded', '+100.00%', ?, '{}', ?, ?)",
               (run_id, "patch:01-double.patch", _candidate("patch:01-double.patch",
                                                            "01-double", double), base,
                json.dumps({"verdict": "regressed", "ratio": 2.0, "reason": "+100.00%"}),
                now - 50, now - 40))
    db.execute("INSERT INTO experiments (loop_id, seq, wave, kind, candidate_id, candidate_json,"
               " baseline, worker, pid, status, started) VALUES (?, 2, 2, 'explore', ?, ?, ?,"
               " 'w0', 2, 'running', ?)",
               (run_id, "patch:02-half.patch", _candidate("patch:02-half.patch", "02-half",
                                                          half), base, now - 35))
    db.commit()
    db.close()
    return target, run_id


def test_a_run_written_by_the_previous_schema_resumes(old_run: tuple[Path, str]) -> None:
    target, run_id = old_run
    code, s, proc = run_cli("run", "--resume", "--json", cwd=target)
    assert code == 0, proc.stderr
    assert s["run_id"] == run_id and s["status"] == "done"
    rows = {(e["seq"], e["title"]): e for e in s["experiments"]}
    # the finished experiment is kept as it was; the cut-off one is marked and redone
    assert rows[(1, "01-double")]["verdict"] == "regressed"
    assert rows[(2, "02-half")]["status"] == "cancelled"
    redone = [e for e in s["experiments"] if e["title"] == "02-half" and e["seq"] > 2]
    assert redone and redone[0]["verdict"] == "improved"
    assert {e["title"] for e in s["experiments"] if e["outcome"] == "kept"} == {"02-half"}
    journal = Journal(target / ".readfirst" / "journal.db")
    try:
        assert schema.version_of(journal.db) == schema.VERSION
        tables = {r[0] for r in journal.db.execute(
            "SELECT name FROM sqlite_master WHERE type IN ('table', 'index')")}
        assert {"worker_noise", "experiments_by_baseline"} <= tables
    finally:
        journal.close()


def test_a_journal_from_a_newer_readfirst_is_refused(old_run: tuple[Path, str]) -> None:
    target, _ = old_run
    db_path = target / ".readfirst" / "journal.db"
    with sqlite3.connect(db_path) as db:
        db.execute(f"PRAGMA user_version = {schema.VERSION + 1}")
    code, _, proc = run_cli("run", "--resume", cwd=target)
    assert code == 2
    assert f"journal schema {schema.VERSION + 1} is newer" in proc.stderr
    assert str(db_path) in proc.stderr
