"""Several workers on one machine: timed benchmark runs never overlap; oversubscription is
reported."""

from __future__ import annotations

import fcntl
import multiprocessing
import shutil
import tempfile
import time
from pathlib import Path

import pytest
from conftest import BASE_WORK, TOML, diff_for, git, make_target, params, run_cli, write

from readfirst.core import constants as C
from readfirst.measure.process import run_step
from readfirst.measure.runner import StepFailed
from readfirst.measure.sandbox import policy_for, probe
from readfirst.measure.timedlock import LockTimeout, lock_path, timed_run, timed_runs

BENCH = """#!/bin/sh
start=$(date +%s.%N)
./build/prog
end=$(date +%s.%N)
echo "$start $end $PWD" >> "$TIMING_LOG"
"""


def test_timed_runs_of_two_workers_never_overlap(tmp_path: Path) -> None:
    # the benchmark appends to a log outside its worktree: only without the sandbox, and with
    # TIMING_LOG passed through the steps' allow-listed environment
    toml = TOML.replace("max_rounds = 20", "max_rounds = 10").replace(
        "[metric]", 'env = ["TIMING_LOG"]\n\n[metric]')
    target = make_target(tmp_path / "target", toml)
    write(target, "autoresearch.sh", BENCH, executable=True)
    git(target, "commit", "-qam", "bench records its interval")
    patches = tmp_path / "patches"
    patches.mkdir()
    for i, work in enumerate((BASE_WORK // 2, BASE_WORK * 2, BASE_WORK // 3, BASE_WORK * 3)):
        (patches / f"0{i}-work.patch").write_text(diff_for(target, "src/params.h", params(work)))
    log = tmp_path / "intervals.log"
    env = {"TIMING_LOG": str(log), "READFIRST_TIMED_LOCK": str(tmp_path / "timed.lock")}
    code, s, proc = run_cli("run", "--proposer", "patches", "--patches", str(patches),
                            "--workers", "2", "--json", "--no-sandbox", cwd=target, env=env)
    assert code == 0, proc.stderr
    runs = []
    for line in log.read_text().splitlines():
        start, end, where = line.split(" ", 2)
        runs.append((float(start), float(end), where.split("/worktrees/")[1].split("-")[0]))
    workers = {w for _s, _e, w in runs}
    assert workers == {"w0", "w1"}  # both workers ran timed rounds ...
    runs.sort()
    for (_s1, e1, w1), (s2, _e2, w2) in zip(runs, runs[1:], strict=False):
        assert e1 <= s2, f"{w1} ran until {e1}, {w2} started at {s2}"  # ... never at once
    # and their builds were not serialised: both experiments of wave 1 were measured
    wave1 = [e for e in s["experiments"] if e["wave"] == 1 and e["kind"] == "explore"]
    assert len(wave1) == 2 and {e["worker"] for e in wave1} == {"w0", "w1"}


def _hold(path: str, seconds: float, ready: multiprocessing.synchronize.Event,
          announce: float | None = None) -> None:
    import os

    os.environ["READFIRST_TIMED_LOCK"] = path
    with timed_run(hold=announce):
        ready.set()
        time.sleep(seconds)
        Path(path + ".released").touch()  # still holding: whoever gets it next sees this


def _hold_silently(path: str, ready: multiprocessing.synchronize.Event) -> None:
    """What a hostile leftover process does: take the lock, announce nothing, never let go."""
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        ready.set()
        time.sleep(600)


def test_lock_waits_for_the_holder_and_gives_up_on_a_stuck_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = str(tmp_path / "timed.lock")
    monkeypatch.setenv("READFIRST_TIMED_LOCK", path)
    ctx = multiprocessing.get_context("fork")
    ready = ctx.Event()
    holder = ctx.Process(target=_hold, args=(path, 1.0, ready))
    holder.start()
    assert ready.wait()
    with timed_run() as waited:  # blocks until the holder is done
        assert Path(path + ".released").exists()
    assert waited > 0
    holder.join()
    ready.clear()
    stuck = ctx.Process(target=_hold_silently, args=(path, ready))
    stuck.start()
    try:
        assert ready.wait()
        with pytest.raises(LockTimeout, match=f"held by pid {stuck.pid} .*stuck, end it"), \
                timed_run(max_wait=0.2):
            pass
    finally:
        stuck.kill()
        stuck.join()
    with timed_run(max_wait=5):  # a killed holder leaves the lock free
        pass


def test_a_stuck_holder_is_named_in_the_log_and_bounded_by_the_step_timeout(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    path = str(tmp_path / "timed.lock")
    monkeypatch.setenv("READFIRST_TIMED_LOCK", path)
    monkeypatch.setattr(C, "TIMED_LOCK_LOG_AFTER", 0.1)
    monkeypatch.setattr(C, "TIMED_LOCK_SLACK", 0.0)
    ctx = multiprocessing.get_context("fork")
    ready = ctx.Event()
    stuck = ctx.Process(target=_hold_silently, args=(path, ready))
    stuck.start()
    try:
        assert ready.wait()
        with pytest.raises(StepFailed) as failed, timed_runs(StepFailed, step_timeout=0.3):
            pass
        assert failed.value.step == "bench" and f"pid {stuck.pid}" in failed.value.reason
        assert f"held by pid {stuck.pid}" in capsys.readouterr().err  # said while waiting
    finally:
        stuck.kill()
        stuck.join()
    # a holder that announced a long hold is waited for past the waiter's own bound
    ready.clear()
    holder = ctx.Process(target=_hold, args=(path, 1.5, ready, 60.0))
    holder.start()
    assert ready.wait()
    with timed_run(max_wait=0.2) as waited:
        assert Path(path + ".released").exists() and waited > 0.2
    holder.join()


def test_the_lock_is_hidden_from_a_sandboxed_step(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    if probe() is not None:
        pytest.skip(f"no usable sandbox: {probe()}")
    monkeypatch.delenv("READFIRST_TIMED_LOCK")
    # a home outside /tmp (which the sandbox hides anyway), so the test shows the lock's own
    # directory is hidden
    (Path.home() / ".cache").mkdir(exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix="rf-test-home-", dir=Path.home() / ".cache"))
    monkeypatch.setenv("HOME", str(home))
    lock = lock_path()
    assert lock.is_relative_to(home)
    with timed_run(max_wait=5):
        assert lock.is_file()
        work = tmp_path / "work"
        work.mkdir()
        res = run_step(f"ls -a {lock.parent}; cat {lock}; rm -f {lock}; echo done", work,
                       tmp_path / "log", 60, sandbox=policy_for(work, work, tmp_path / "s",
                                                                False))
    assert res.ok and "timed-runs.lock" not in res.stdout() and "done" in res.stdout()
    assert lock.is_file()  # the sandboxed step could not delete it
    shutil.rmtree(home)


def test_run_warns_when_workers_times_threads_exceed_cores(tmp_path: Path) -> None:
    toml = TOML.replace('scope = ["src/**"]', 'scope = ["src/**"]\nbench_threads = 4096')
    target = make_target(tmp_path / "target", toml)
    patches = tmp_path / "patches"
    patches.mkdir()
    code, _s, proc = run_cli("run", "--proposer", "patches", "--patches", str(patches),
                             "--workers", "2", cwd=target)
    assert "warning: 2 workers x 4096 benchmark thread(s) = 8192 >" in proc.stderr
    assert "timed runs take turns" in proc.stderr
    code, _s, proc = run_cli("run", "--proposer", "patches", "--patches", str(patches),
                             "--workers", "1", cwd=make_target(tmp_path / "t2"))
    assert "warning" not in proc.stderr
