"""Clean-up by ownership (issue 9, item 5): what a step starts ends with it, what readfirst did
not start is never touched.

A hostile candidate daemonizes during its benchmark (double fork, new session, chdir /): with
and without the sandbox, nothing of it is left after the step, nor after `cancel` mid-benchmark.
A process readfirst did not start, sitting in the very worktree being cleaned, and a second
readfirst whose benchmark runs in a same-named directory of another checkout, both survive.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from conftest import TOML, git, make_target, write
from test_security import hostile

from readfirst.core.candidate import Candidate
from readfirst.core.config import load_spec
from readfirst.loop.executors.base import Job
from readfirst.loop.executors.local import LocalExecutor
from readfirst.measure.process import run_step
from readfirst.measure.proctree import kill_tree
from readfirst.measure.sandbox import policy_for, probe
from readfirst.vcs.workspace import Workspace

MODES = [pytest.param(True, id="sandboxed", marks=pytest.mark.skipif(
    probe() is not None, reason=f"no usable sandbox: {probe()}")),
    pytest.param(False, id="unsandboxed")]


def _marked(token: str) -> list[int]:
    """Live (not zombie) processes whose command line holds `token`."""
    found = []
    for proc_dir in Path("/proc").glob("[0-9]*"):
        try:
            state = (proc_dir / "stat").read_bytes().rsplit(b")", 1)[1].split()[0]
            cmd = (proc_dir / "cmdline").read_bytes().replace(b"\0", b" ")
        except (OSError, IndexError):
            continue
        if state != b"Z" and token.encode() in cmd and int(proc_dir.name) != os.getpid():
            found.append(int(proc_dir.name))
    return found


def _alive(pid: int) -> bool:
    try:
        return "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False


def _daemonize(token: str) -> str:
    """A shell line that leaves a daemon: new session, double fork, chdir /, output closed."""
    return (f"setsid sh -c 'cd / && (while :; do sleep 1; done) & exit 0' {token} "
            "</dev/null >/dev/null 2>&1 &")


def _target(tmp_path: Path, sandbox: bool) -> Path:
    toml = TOML if sandbox else TOML.replace("[target]", "[target]\nsandbox = false")
    return make_target(tmp_path / "t", toml)


def _job(target: Path, exp_id: int, cand_commit: str | None, base: str) -> Job:
    diff = git(target, "diff", "--binary", base, cand_commit) + "\n" if cand_commit else ""
    cand = Candidate(f"c{exp_id}", f"candidate {exp_id}", "", diff, "test")
    return Job(exp_id, str(target), base, cand.to_dict(), load_spec(target).model_dump(),
               kind="experiment" if cand_commit else "noise")


@pytest.mark.parametrize("sandbox", MODES)
def test_a_daemon_started_by_a_step_ends_with_the_step(tmp_path: Path, sandbox: bool) -> None:
    token = "rf-daemon-" + uuid.uuid4().hex[:10]
    work = tmp_path / "work"
    work.mkdir()
    policy = policy_for(work, work, tmp_path / "state", False) if sandbox else None
    res = run_step(_daemonize(token) + "\nsleep 0.3; echo METRIC x=1", work, tmp_path / "log",
                   60, sandbox=policy)
    assert res.ok and res.metric_lines == [("x", 1.0)] and res.sandboxed == sandbox
    assert _marked(token) == []


@pytest.mark.parametrize("sandbox", MODES)
def test_cancel_mid_benchmark_ends_the_daemon_and_nothing_else(tmp_path: Path,
                                                               sandbox: bool) -> None:
    token = "rf-daemon-" + uuid.uuid4().hex[:10]
    target = _target(tmp_path, sandbox)
    base = git(target, "rev-parse", "HEAD")
    # the candidate daemonizes each time its program runs, then hangs in its benchmark
    cand = hostile(target, _daemonize(token), extra="    sleep(600);\n")
    git(target, "checkout", "-q", base)
    # a second readfirst, its own checkout also named `t`, its benchmark hanging in the
    # same-named worktree directory, started by another process
    other = make_target(tmp_path / "other" / "t", TOML.replace(
        'bench = "./autoresearch.sh"', f'bench = "sleep 600 # {token}-other"').replace(
        "bench_timeout = 20", "bench_timeout = 900"))
    second = subprocess.Popen([sys.executable, "-m", "readfirst", "bench", "--rounds", "2",
                               "--no-sandbox"], cwd=other, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL,  # its timed runs take no turns
                              env={**os.environ, "READFIRST_TIMED_LOCK": str(tmp_path / "l")})
    ws = Workspace(target)
    ex = LocalExecutor(ws, tmp_path / "jobs", workers=1)
    bystander = None
    try:
        handle = ex.submit(_job(target, 1, cand, base), "w0")
        while not _marked(token + " "):  # the daemon of the candidate's benchmark is up
            assert ex.poll(handle) is None, "the hanging job ended on its own"
            time.sleep(0.1)
        while not _marked(f"{token}-other"):
            assert second.poll() is None, "the second readfirst ended early"
            time.sleep(0.1)
        # someone else's process inside the very worktree readfirst cleans
        bystander = subprocess.Popen(["sleep", "600"], cwd=ws.slot_path("w0-cand"))
        ex.cancel(handle)
        assert not _alive(handle.pid or 0)
        assert _marked(token + " ") == [], "the candidate's daemon outlived the cancel"
        again = ex.submit(_job(target, 2, None, base), "w0")
        (res,) = ex.wait_any([again])
        assert res.status == "finished", res.reason
        assert _alive(bystander.pid), "a process readfirst did not start was killed"
        assert _marked(f"{token}-other"), "the second readfirst's benchmark was killed"
        assert second.poll() is None
    finally:
        ex.close()
        if bystander is not None:
            bystander.kill()
            bystander.wait()
        second.send_signal(signal.SIGINT)
        second.wait(timeout=60)
    assert _marked(token) == []


def test_kill_tree_freezes_a_forking_tree_and_ends_all_of_it(tmp_path: Path) -> None:
    token = "rf-forker-" + uuid.uuid4().hex[:10]
    write(tmp_path, "forker.sh", f"#!/bin/sh\nwhile :; do\n  sh -c 'sleep 60; :' {token} &\n"
          "  sleep 0.02\ndone\n", executable=True)
    root = subprocess.Popen(["sh", "-c", f"'{tmp_path / 'forker.sh'}' & wait"],
                            start_new_session=True)
    while len(_marked(token)) < 4:
        time.sleep(0.05)
    killed = kill_tree(root.pid, include_root=True)
    root.wait()
    assert len(killed) >= 5 and _marked(token) == []


def test_no_step_leaves_a_keeper_behind(tmp_path: Path) -> None:
    before = set(_marked("proctree.py"))
    codes = [run_step(cmd, tmp_path, tmp_path / "log", 30).exit_code
             for cmd in ("true", "exit 3", "kill -TERM $$")]
    assert codes == [0, 3, -signal.SIGTERM]  # the step's own status, through its keeper
    res = run_step("sleep 600", tmp_path, tmp_path / "log", 0.5)
    assert res.timed_out
    assert set(_marked("proctree.py")) <= before
