"""The journal's tables, versioned: migration N takes a journal from schema N-1 to N.

`PRAGMA user_version` holds the version a journal is at. Opening a journal applies the
migrations it lacks, each in one transaction (so a kill mid-way leaves the previous version);
a journal from a newer readfirst is refused rather than misread. Journals written before the
schema was versioned are at 0 and hold exactly migration 1's tables, which it creates only if
missing. Add a migration at the end; never edit one that has shipped.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from readfirst.core.errors import ConfigError

V1_TABLES = """
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

V2_LOOP_EXTRAS = """
-- each worker's A-vs-A noise checks (created on first use before schema 2)
CREATE TABLE IF NOT EXISTS worker_noise (
    loop_id TEXT NOT NULL,
    worker TEXT NOT NULL,
    ts REAL NOT NULL,
    cv REAL,
    n INTEGER,
    quarantined INTEGER NOT NULL
);
-- the novelty check asks which edits earlier runs measured on a baseline
CREATE INDEX IF NOT EXISTS experiments_by_baseline ON experiments(baseline);
CREATE INDEX IF NOT EXISTS experiments_by_loop ON experiments(loop_id, status);
"""

MIGRATIONS = (V1_TABLES, V2_LOOP_EXTRAS)  # MIGRATIONS[i] takes a journal to version i + 1
VERSION = len(MIGRATIONS)


def version_of(db: sqlite3.Connection) -> int:
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def migrate(db: sqlite3.Connection, path: Path) -> int:
    """Bring the journal at `db` up to VERSION; the version it was at."""
    found = version_of(db)
    if found > VERSION:
        raise ConfigError(f"{path}: journal schema {found} is newer than this readfirst's "
                          f"({VERSION}); upgrade readfirst to read it")
    if found == VERSION:
        return found
    db.execute("BEGIN IMMEDIATE")  # one process migrates; the others wait, then see it done
    try:
        for number in range(version_of(db) + 1, VERSION + 1):
            for statement in _statements(MIGRATIONS[number - 1]):
                db.execute(statement)
            db.execute(f"PRAGMA user_version = {number}")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return found


def _statements(script: str) -> list[str]:
    """The statements of a migration (they hold no `;` inside strings or comments)."""
    lines = [ln.split("--", 1)[0] for ln in script.splitlines()]
    return [st.strip() for st in "\n".join(lines).split(";") if st.strip()]
