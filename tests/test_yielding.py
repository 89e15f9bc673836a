"""Builds and checks pause while another worker's timed run holds the lock (issue 10, item 5).

On 2 cores with another process keeping one busy, a build beside a timed run took part of its
core. With `[executor] quiet_timed_runs` the untimed step stops its own processes while the
timed-runs lock is held elsewhere and continues once it is free; the pause does not count
against its timeout; a kill while paused still ends it at once. Synchronised on what the step
writes and on process states, never on sleeps alone.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from readfirst.loop.executors.local import LocalExecutor
from readfirst.measure import timedlock
from readfirst.measure.process import RunningStep
from readfirst.measure.proctree import descendants, frozen
from readfirst.measure.sandbox import policy_for, probe
from readfirst.measure.timedlock import quiet_timed_runs, timed_run
from readfirst.measure.yielding import ENV_QUIET
from readfirst.vcs.workspace import Workspace

MODES = [pytest.param(True, id="sandboxed", marks=pytest.mark.skipif(
    probe() is not None, reason=f"no usable sandbox: {probe()}")),
    pytest.param(False, id="unsandboxed")]
GIVE_UP = 120.0  # only so a broken build fails instead of hanging: never a speed claim

# ticks once per 20 ms (a new `sleep` child each time) until the file `go` exists
TICKER = "while [ ! -e go ]; do echo t >> ticks; sleep 0.02; done; echo done >> ticks"


def _until(cond, what: str) -> None:  # type: ignore[no-untyped-def]
    end = time.monotonic() + GIVE_UP
    while not cond():
        assert time.monotonic() < end, f"never happened: {what}"
        time.sleep(0.01)


def _ticks(work: Path) -> int:
    path = work / "ticks"
    return len(path.read_text().splitlines()) if path.exists() else 0


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[0].decode()
    except OSError:
        return "gone"


def _all_stopped(step: RunningStep) -> bool:
    """Every live process of the step stopped (or a shell blocked in vfork on a stopped
    child: it cannot run either)."""
    below = [p for p in descendants(step.proc.pid) if _state(p) not in ("Z", "gone")]
    return bool(below) and all(frozen(p) for p in below)


def _start(tmp_path: Path, sandbox: bool, cmd: str = TICKER) -> tuple[RunningStep, Path]:
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    policy = policy_for(work, work, tmp_path / "state", False) if sandbox else None
    step = RunningStep(cmd, work, tmp_path / "logs" / "build", sandbox=policy,
                       yield_to_timed=True)
    return step, work


@pytest.fixture(autouse=True)
def _own_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(timedlock.ENV_PATH, str(tmp_path / "locks" / "timed.lock"))


@pytest.mark.parametrize("sandbox", MODES)
def test_a_build_stops_while_a_timed_run_holds_the_lock(tmp_path: Path, sandbox: bool) -> None:
    step, work = _start(tmp_path, sandbox)
    _until(lambda: _ticks(work) >= 3, "the build ticks")
    with timed_run():
        _until(lambda: _all_stopped(step), "every process of the build stopped")
        held = _ticks(work)
        time.sleep(1.0)
        assert _ticks(work) == held, "the build went on during the timed run"
        assert _all_stopped(step)
    _until(lambda: _ticks(work) > held, "the build continues once the lock is free")
    (work / "go").touch()
    res = step.wait(GIVE_UP)
    assert res.ok and (work / "ticks").read_text().endswith("done\n")
    assert res.paused_seconds >= 1.0
    assert res.seconds >= res.paused_seconds


def test_without_the_setting_a_build_runs_beside_a_timed_run(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    step = RunningStep(TICKER, work, tmp_path / "logs" / "build")
    _until(lambda: _ticks(work) >= 1, "the build ticks")
    with timed_run():
        start = _ticks(work)
        _until(lambda: _ticks(work) >= start + 5, "the build ticks during the timed run")
    (work / "go").touch()
    assert step.wait(GIVE_UP).paused_seconds == 0.0


def test_time_paused_does_not_count_against_the_timeout(tmp_path: Path) -> None:
    with timed_run():
        step, work = _start(tmp_path, False)
        _until(lambda: _all_stopped(step), "the build paused from its start")
        time.sleep(3.0)  # past the step's 2 s timeout, all of it paused
    (work / "go").touch()
    res = step.wait(2.0)
    assert res.ok and not res.timed_out
    assert res.paused_seconds >= 3.0


@pytest.mark.parametrize("sandbox", MODES)
def test_a_paused_build_is_killed_at_once(tmp_path: Path, sandbox: bool) -> None:
    step, work = _start(tmp_path, sandbox)
    _until(lambda: _ticks(work) >= 1, "the build ticks")
    with timed_run():
        _until(lambda: _all_stopped(step), "the build paused")
        below = descendants(step.proc.pid)
        step.kill()  # a cancel: SIGTERM must reach processes that were stopped
        res = step.wait(GIVE_UP)
        assert not res.ok
        _until(lambda: all(_state(p) in ("Z", "gone") for p in below),
               "every process of the killed build gone")


def test_auto_pauses_only_when_timed_runs_and_builds_cannot_each_have_a_core(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.sched_getaffinity", lambda _pid: {0, 1})
    assert quiet_timed_runs("auto", 2, 1, "local")  # 2 x (1 + 1) > 2
    assert not quiet_timed_runs("auto", 1, 1, "local")  # one worker: nobody to pause for
    assert not quiet_timed_runs("auto", 2, 1, "ray")  # remote nodes: their own machines
    monkeypatch.setattr("os.sched_getaffinity", lambda _pid: set(range(8)))
    assert not quiet_timed_runs("auto", 2, 1, "local")
    assert not quiet_timed_runs("auto", 4, 1, "local")  # 4 x (1 + 1) = 8 cores
    assert quiet_timed_runs("auto", 5, 1, "local")
    assert quiet_timed_runs(True, 2, 1, "local") and not quiet_timed_runs(False, 2, 1, "local")


def test_local_workers_are_told_to_pause(tmp_path: Path) -> None:
    ws = Workspace(tmp_path)
    assert LocalExecutor(ws, tmp_path / "jobs", 2, quiet_timed=True).env[ENV_QUIET] == "1"
    assert ENV_QUIET not in LocalExecutor(ws, tmp_path / "jobs", 2).env


@pytest.mark.parametrize("sandbox", MODES)
def test_a_daemon_the_build_leaves_pauses_with_it(tmp_path: Path, sandbox: bool) -> None:
    """A hostile build that double-forks into a new session to keep working during another
    worker's timed run is still below the step's keeper (or in its sandbox): it stops too."""
    work = tmp_path / "work"
    work.mkdir()
    daemon = ("setsid sh -c '(while :; do echo t >> ticks; sleep 0.02; done) & exit 0' "
              "</dev/null >/dev/null 2>&1; while [ ! -e go ]; do sleep 0.02; done")
    step, _ = _start(tmp_path, sandbox, daemon)
    _until(lambda: _ticks(work) >= 3, "the daemon ticks")
    with timed_run():
        _until(lambda: _all_stopped(step), "the build and its daemon stopped")
        held = _ticks(work)
        time.sleep(1.0)
        assert _ticks(work) == held, "the daemon went on during the timed run"
    _until(lambda: _ticks(work) > held, "the daemon continues once the lock is free")
    (work / "go").touch()
    assert step.wait(GIVE_UP).ok
