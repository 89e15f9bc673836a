"""One run per target, and faults as one-line errors (issue 9's last two attack rows)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import BASE_WORK, commit, params, run_cli, write

needs_root_mounts = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None,
    reason="needs root and unshare(1) to mount a read-only or tiny .readfirst/")

def test_a_second_run_is_refused_and_the_first_keeps_its_winner(target: Path) -> None:
    gate = target / "gate"  # the first run's benchmarks wait for it (the sandbox sees the repo)
    write(target, "autoresearch.sh",
          f"#!/bin/sh\nwhile [ ! -e {gate} ]; do sleep 0.05; done\nexec ./build/prog\n", True)
    commit(target, "a benchmark that waits for the test")
    write(target, "src/params.h", params(BASE_WORK // 2))
    commit(target, "half the work")
    first = subprocess.Popen([sys.executable, "-m", "readfirst", "compare", "HEAD~1", "HEAD",
                              "--json"], cwd=target, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    lock = target / ".readfirst" / "run.lock"
    while not (lock.is_file() and lock.read_text().strip() == str(first.pid)):
        assert first.poll() is None, first.communicate()
        time.sleep(0.05)
    code, _, proc = run_cli("compare", "HEAD~1", "HEAD", "--json", cwd=target)
    assert code == 2, (proc.stdout[-300:], proc.stderr, first.poll())
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "another readfirst run" in lines[0], proc.stderr
    assert f"pid {first.pid}" in lines[0]
    assert first.poll() is None  # the refused run did not touch the first one
    gate.touch()
    out, err = first.communicate()
    assert first.returncode == 0, err

    assert json.loads(out)["verdict"] == "improved"

def _in_private_mounts(target: Path, setup: str, *args: str, journal: str = ".readfirst/journal.db"
                       ) -> subprocess.CompletedProcess[str]:
    """Run readfirst in a private mount namespace after `setup` (shell, in the target), then
    print the statuses of the journal's runs."""
    cmd = (f"{setup} && {sys.executable} -m readfirst " + " ".join(args)
           + "; code=$?; " + f"{sys.executable} -c \"import sqlite3,sys; "
           f"db=sqlite3.connect('{journal}', uri=True); "
           "print('STATUSES', sorted({r[0] for r in db.execute('SELECT status FROM runs')}))\""
           " >&2; exit $code")
    return subprocess.run(["unshare", "-m", "sh", "-c", cmd], cwd=target, capture_output=True,
                          text=True)

def _one_line_exit_2(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = [ln for ln in proc.stderr.splitlines() if not ln.startswith("STATUSES")]
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert "Traceback" not in proc.stderr

@needs_root_mounts
def test_a_read_only_state_dir_is_one_line(target: Path) -> None:
    code, _, proc = run_cli("bench", "--rounds", "2", "--json", cwd=target)
    assert code == 0, proc.stderr
    proc = _in_private_mounts(
        target, "mount --bind .readfirst .readfirst && mount -o remount,bind,ro .readfirst",
        "compare", "HEAD", "HEAD", "--json",
        journal="file:.readfirst/journal.db?immutable=1")
    _one_line_exit_2(proc, ".readfirst", "read-only")
    assert "running" not in proc.stderr.split("STATUSES", 1)[1]

@needs_root_mounts
def test_a_full_state_dir_is_one_line_and_the_run_is_interrupted(target: Path) -> None:
    # the candidate floods its output: readfirst's own log of it fills a 3 MiB .readfirst/
    write(target, "src/prog.c", (target / "src/prog.c").read_text().replace(
        "    struct timespec a, b;",
        '    if (system("head -c 8000000 /dev/zero | tr \'\\\\0\' x")) {}\n'
        "    struct timespec a, b;"))
    commit(target, "floods")
    proc = _in_private_mounts(
        target, "mkdir .readfirst && mount -t tmpfs -o size=3m tmpfs .readfirst",
        "compare", "HEAD~1", "HEAD", "--json")
    _one_line_exit_2(proc, ".readfirst", "no space left")
    statuses = proc.stderr.split("STATUSES", 1)[1]
    assert "interrupted" in statuses and "running" not in statuses, statuses
