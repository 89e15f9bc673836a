"""Several workers on one machine: timed benchmark runs never overlap; oversubscription is
reported."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

import pytest
from conftest import BASE_WORK, TOML, git, make_target, params, run_cli, write

from readfirst.timedlock import LockTimeout, timed_run

BENCH = """#!/bin/sh
start=$(date +%s.%N)
./build/prog
end=$(date +%s.%N)
echo "$start $end $PWD" >> "$TIMING_LOG"
"""


def _patch(target: Path, rel: str, text: str) -> str:
    original = (target / rel).read_text()
    write(target, rel, text)
    diff = git(target, "diff", "--", rel) + "\n"
    write(target, rel, original)
    return diff


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
        (patches / f"0{i}-work.patch").write_text(_patch(target, "src/params.h", params(work)))
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


def _hold(path: str, seconds: float, ready: multiprocessing.synchronize.Event) -> None:
    import os

    os.environ["READFIRST_TIMED_LOCK"] = path
    with timed_run():
        ready.set()
        time.sleep(seconds)
        Path(path + ".released").touch()  # still holding: whoever gets it next sees this


def test_lock_waits_for_the_holder_and_gives_up_on_a_stuck_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = str(tmp_path / "timed.lock")
    monkeypatch.setenv("READFIRST_TIMED_LOCK", path)
    ctx = multiprocessing.get_context("fork")
    ready = ctx.Event()
    holder = ctx.Process(target=_hold, args=(path, 1.0, ready))
    holder.start()
    assert ready.wait(30)
    with timed_run() as waited:  # blocks until the holder is done
        assert Path(path + ".released").exists()
    assert waited > 0
    holder.join()
    ready.clear()
    stuck = ctx.Process(target=_hold, args=(path, 60.0, ready))
    stuck.start()
    try:
        assert ready.wait(30)
        with pytest.raises(LockTimeout, match="held by another process"), \
                timed_run(max_wait=0.2):
            pass
    finally:
        stuck.kill()
        stuck.join()
    with timed_run(max_wait=5):  # a killed holder leaves the lock free
        pass


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
