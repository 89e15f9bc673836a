"""Ctrl-C at any point of a run's start-up ends it `interrupted`, with exit code 130 and no
process left behind: as soon as the run exists, as its first experiment is journaled (its
worker is being spawned), once the first worker runs, and once the first result is in. Each
point is an event the run writes to its journal; the test waits for it, then signals. (A
Ctrl-C landing while a worker was forked used to be printed by an at-fork hook and lost.)"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from conftest import (
    BASE_WORK,
    TOML,
    diff_for,
    journal_rows,
    make_target,
    params,
    processes_under,
    start_run,
    wait_for,
)

# the moment the SIGINT is sent: the first row of this query
POINTS = {
    "run created": "SELECT status FROM loop_runs",
    "first experiment journaled": "SELECT id FROM experiments WHERE wave > 0",
    "first worker spawned": "SELECT pid FROM experiments WHERE pid > 0",
    "first result in": "SELECT id FROM experiments WHERE status != 'running' AND wave > 0",
}


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return "(gone)"


@pytest.mark.parametrize("point", list(POINTS))
def test_ctrl_c_during_start_up_ends_the_run_interrupted(point: str, tmp_path: Path) -> None:
    target = make_target(tmp_path / "target", TOML)
    patches = tmp_path / "patches"
    patches.mkdir()
    for i, work in enumerate((BASE_WORK // 2, BASE_WORK * 2, BASE_WORK // 3, BASE_WORK * 3)):
        (patches / f"{i:02d}.patch").write_text(
            diff_for(target, "src/params.h", params(work)))
    db = target / ".readfirst/journal.db"
    proc = start_run(target, patches, 2)
    # no time limit: the run cannot end before the point (every candidate is measured)
    wait_for(db, POINTS[point], bool, point, proc, poll=0.002)
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate()
    assert proc.returncode == 130, err
    assert journal_rows(db, "SELECT status, stop_reason FROM loop_runs") == [
        ("interrupted", "interrupted")]
    # nothing readfirst started is left: no worker (they run in the target), no step
    left = {pid: _cmdline(pid) for pid in processes_under(target)}
    assert left == {}
    for (pid,) in journal_rows(db, "SELECT pid FROM experiments WHERE pid > 0"):
        status = Path(f"/proc/{pid}/status")
        assert not status.exists() or "State:\tZ" in status.read_text(), f"worker {pid} left"
