"""The local executor's persistent workers: one process per worker for many experiments,
cancel kills the worker with its steps, a killed worker is reported and replaced."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from conftest import BASE_WORK, TOML, git, make_target, params, write

from readfirst.core.candidate import Candidate
from readfirst.core.config import load_spec
from readfirst.loop.executors.base import Job
from readfirst.loop.executors.local import LocalExecutor
from readfirst.vcs.workspace import Workspace


def _alive(pid: int) -> bool:
    try:
        return "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False


def _job(target: Path, exp_id: int, diff: str, kind: str = "experiment") -> Job:
    spec = load_spec(target)
    cand = Candidate(f"c{exp_id}", f"candidate {exp_id}", "", diff, "test")
    return Job(exp_id, str(target), git(target, "rev-parse", "HEAD"), cand.to_dict(),
               spec.model_dump(), kind=kind)


def _diff(target: Path, text: str) -> str:
    original = (target / "src/params.h").read_text()
    write(target, "src/params.h", text)
    diff = git(target, "diff") + "\n"
    write(target, "src/params.h", original)
    return diff


def test_one_worker_process_runs_many_experiments(tmp_path: Path) -> None:
    target = make_target(tmp_path / "t")
    ex = LocalExecutor(Workspace(target), tmp_path / "jobs", workers=1)
    try:
        half = _diff(target, params(BASE_WORK // 2))
        first = ex.submit(_job(target, 1, half), "w0")
        (r1,) = ex.wait_any([first])
        assert (r1.status, r1.verdict) == ("finished", "improved"), r1.reason
        second = ex.submit(_job(target, 2, "", kind="noise"), "w0")
        (r2,) = ex.wait_any([second])
        assert r2.status == "finished" and "baseline CV" in r2.reason
        assert first.pid == second.pid and _alive(first.pid)  # the same worker process
        assert "METRIC" not in (tmp_path / "jobs" / "1.log").read_text()  # the job's own log
    finally:
        ex.close()
    assert not _alive(first.pid)  # close ends idle workers


def test_cancel_kills_the_worker_and_its_steps_then_a_new_one_starts(tmp_path: Path) -> None:
    # the hanging benchmark reports its pid through a file outside its worktree: no sandbox
    target = make_target(tmp_path / "t", TOML.replace("[target]", "[target]\nsandbox = false"))
    prog = (target / "src/prog.c").read_text()
    pidfile = tmp_path / "bench.pid"
    hang = prog.replace('#include "params.h"', '#include "params.h"\n#include <unistd.h>').replace(
        "    struct timespec a, b;",
        f'    {{ FILE *f = fopen("{pidfile}", "w"); fprintf(f, "%d", getpid()); fclose(f); }}\n'
        "    sleep(600);\n    struct timespec a, b;")
    write(target, "src/prog.c", hang)
    diff = git(target, "diff") + "\n"
    write(target, "src/prog.c", prog)
    ex = LocalExecutor(Workspace(target), tmp_path / "jobs", workers=1)
    try:
        handle = ex.submit(_job(target, 1, diff), "w0")
        while not pidfile.is_file() or not pidfile.read_text():
            assert ex.poll(handle) is None, "the hanging job ended on its own"
            time.sleep(0.1)
        bench_pid = int(pidfile.read_text())
        ex.cancel(handle)
        assert not _alive(handle.pid or 0) and not _alive(bench_pid)
        again = ex.submit(_job(target, 2, "", kind="noise"), "w0")
        (res,) = ex.wait_any([again])
        assert res.status == "finished" and again.pid != handle.pid
    finally:
        ex.close()


def test_a_killed_worker_is_reported_and_replaced(tmp_path: Path) -> None:
    target = make_target(tmp_path / "t")
    ex = LocalExecutor(Workspace(target), tmp_path / "jobs", workers=1)
    try:
        warm = ex.submit(_job(target, 1, "", kind="noise"), "w0")
        ex.wait_any([warm])
        os.kill(warm.pid or 0, signal.SIGKILL)  # dies while idle
        # until all its threads are gone: only then can the executor see it died
        while _alive(warm.pid or 0) or len(list(Path(f"/proc/{warm.pid}/task").glob("*"))) > 1:
            time.sleep(0.05)
        handle = ex.submit(_job(target, 2, "", kind="noise"), "w0")
        (res,) = ex.wait_any([handle])
        # the dead idle worker was noticed at submit time and replaced
        assert res.status == "finished" and handle.pid != warm.pid, res.reason
        busy = ex.submit(_job(target, 3, _diff(target, params(BASE_WORK * 2))), "w0")
        os.kill(busy.pid or 0, signal.SIGKILL)
        (died,) = ex.wait_any([busy])
        assert died.status == "worker_died" and "killed by signal 9" in died.reason
    finally:
        ex.close()
