"""The journal survives kill -9 and Ctrl-C: consistent file, interrupted runs marked."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import BASE_WORK, commit, params, processes_under, write

from readfirst.store.journal import Journal


def _start_compare(target: Path) -> subprocess.Popen[str]:
    write(target, "src/params.h", params(BASE_WORK * 3))
    commit(target, "slower")
    return subprocess.Popen(
        [sys.executable, "-m", "readfirst", "compare", "HEAD~1", "HEAD", "--json",
         "--max-rounds", "30", "--noise-threshold", "0.0001"],
        cwd=target, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _wait_for_samples(db_path: Path, n: int, timeout: float = 120) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if db_path.exists():
            try:
                with sqlite3.connect(db_path) as db:
                    got = db.execute("SELECT count(*) FROM samples").fetchone()[0]
            except sqlite3.OperationalError:
                got = 0
            if got >= n:
                return int(got)
        time.sleep(0.05)
    raise AssertionError(f"fewer than {n} samples after {timeout}s")


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT, signal.SIGTERM])
def test_killed_compare_leaves_a_consistent_journal(target: Path, sig: int) -> None:
    proc = _start_compare(target)
    db_path = target / ".readfirst/journal.db"
    _wait_for_samples(db_path, 4)
    proc.send_signal(sig)
    _, stderr = proc.communicate()
    if sig == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL
    else:
        assert proc.returncode == 130, stderr
        assert "interrupted" in stderr
    journal = Journal(db_path)  # opening marks a dead `running` run as interrupted
    try:
        assert journal.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        row = journal.db.execute("SELECT status, verdict FROM runs").fetchone()
        assert (row["status"], row["verdict"]) == ("interrupted", None)
        samples = journal.db.execute("SELECT role, value FROM samples").fetchall()
        assert len(samples) >= 4 and all(s["value"] > 0 for s in samples)
        # every finished bench step has its logs on disk
        for step in journal.db.execute("SELECT stdout_path FROM steps").fetchall():
            assert Path(step["stdout_path"]).exists()
    finally:
        journal.close()
    if sig != signal.SIGKILL:  # readfirst killed its children on the way out
        assert processes_under(target / ".readfirst/worktrees") == []


