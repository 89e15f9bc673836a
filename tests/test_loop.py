"""`readfirst run` on a tiny C target: faults recorded and survived, kill -9 then --resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import (
    BASE_WORK,
    TOML,
    commit,
    diff_for,
    git,
    journal_rows,
    make_target,
    params,
    processes_under,
    run_cli,
    start_run,
    wait_for,
    write,
)

LOOP_TOML = TOML.replace("bench_timeout = 20", "bench_timeout = 4")


@pytest.fixture
def loop_target(tmp_path: Path) -> tuple[Path, Path]:
    target = make_target(tmp_path / "target", LOOP_TOML)
    prog = (target / "src/prog.c").read_text()
    patches = tmp_path / "patches"
    patches.mkdir()
    (patches / "01-half-the-work.patch").write_text(
        diff_for(target, "src/params.h", params(BASE_WORK // 2)))
    (patches / "02-double-the-work.patch").write_text(
        diff_for(target, "src/params.h", params(BASE_WORK * 2)))
    (patches / "03-stale.patch").write_text(
        diff_for(target, "src/prog.c", prog.replace("long s = 0;", "long s = 0L;")).replace(
            "-long compute", "-long kompute").replace(" long compute", " long kompute"))
    (patches / "04-does-not-build.patch").write_text(
        diff_for(target, "src/prog.c", prog.replace("return s; }", "return s }")))
    (patches / "05-hangs.patch").write_text(
        diff_for(target, "src/prog.c", prog.replace(
            '#include "params.h"', '#include "params.h"\n#include <unistd.h>').replace(
            "    struct timespec a, b;", "    sleep(600);\n    struct timespec a, b;")))
    return target, patches


GATE_TOML = LOOP_TOML.replace("checks_timeout = 20", "checks_timeout = 600")


def _add_gated(target: Path, patches: Path, gate: Path) -> None:
    """A candidate whose checks wait until `gate` exists: it is certainly still running when
    a test kills the loop or its worker, whatever the machine's load (no race). It waits in
    the checks, outside the timed benchmark runs, so the other worker's rounds go on. The
    hanging candidate is left out (another long wait is not what these tests are about)."""
    (patches / "05-hangs.patch").unlink()
    prog = (target / "src/prog.c").read_text()
    check = '    if (argc > 1 && strcmp(argv[1], "--check") == 0) return compute(10) == 45 ? 0 : 1;'
    assert check in prog
    gated = check.replace("return compute", f'{{ while (access("{gate}", F_OK) != 0) '
                          "usleep(10000); return compute").replace("0 : 1;", "0 : 1; }")
    (patches / "00-waits-for-gate.patch").write_text(diff_for(target, "src/prog.c", prog.replace(
        '#include "params.h"', '#include "params.h"\n#include <unistd.h>').replace(
        check, gated)))
    write(target, "readfirst.toml", GATE_TOML)
    commit(target, "a checks timeout for the gated candidate")



def test_loop_records_every_fault_and_keeps_the_winner(loop_target: tuple[Path, Path]) -> None:
    target, patches = loop_target
    code, s, proc = run_cli("run", "--proposer", "patches", "--patches", str(patches),
                            "--workers", "2", "--json", cwd=target)
    assert code == 0, proc.stderr
    rows = {e["title"]: e for e in s["experiments"] if e["kind"] == "explore"}
    assert rows["01-half-the-work"]["verdict"] == "improved"
    assert rows["02-double-the-work"]["verdict"] == "regressed"
    assert rows["03-stale"]["status"] == "skipped"
    assert "does not apply" in rows["03-stale"]["reason"]
    assert rows["04-does-not-build"]["verdict"] == "crash"
    assert "build" in rows["04-does-not-build"]["reason"]
    assert rows["05-hangs"]["verdict"] == "crash"
    assert "timed out" in rows["05-hangs"]["reason"]
    kept = [e for e in s["experiments"] if e["outcome"] == "kept"]
    assert {e["title"] for e in kept} == {"01-half-the-work"}
    assert s["stop_reason"] == "no candidates left"
    assert git(target, "rev-parse", s["branch"]) == s["final_commit"] != s["base_commit"]
    # worktrees are reused per worker, not multiplied per experiment
    slots = sorted(p.name for p in (target / ".readfirst/worktrees").iterdir())
    assert slots == ["w0-base", "w0-cand", "w1-base", "w1-cand"]
    assert Path(s["report"]).is_file()


def test_limits_stop_the_loop(loop_target: tuple[Path, Path]) -> None:
    target, patches = loop_target
    code, s, proc = run_cli("run", "--proposer", "patches", "--patches", str(patches),
                            "--workers", "1", "--max-experiments", "2", "--json", cwd=target)
    assert code == 0, proc.stderr
    assert s["stop_reason"] == "max experiments"
    assert len([e for e in s["experiments"] if e["kind"] == "explore"]) == 2


def test_kill_9_mid_run_then_resume_loses_nothing(loop_target: tuple[Path, Path],
                                                  tmp_path: Path) -> None:
    target, patches = loop_target
    gate = target / "gate"  # in the repository: the sandboxed benchmark sees it (read-only)
    _add_gated(target, patches, gate)
    proc = start_run(target, patches, 2)
    db_path = target / ".readfirst/journal.db"
    # kill once something is finished while the gated candidate (which cannot finish before
    # the gate opens) is still running
    wait_for(db_path, "SELECT candidate_id, status FROM experiments",
              lambda rows: any(s == "finished" for _c, s in rows)
              and ("patch:00-waits-for-gate.patch", "running") in rows,
              "a finished experiment while the gated one runs", proc)
    before = journal_rows(
        db_path, "SELECT id, candidate_id, kind, verdict, finished FROM experiments"
                 " WHERE status = 'finished'")
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    gate.touch()

    code, s, out = run_cli("run", "--resume", "--json", cwd=target)
    assert code == 0, out.stderr
    after = journal_rows(db_path, "SELECT id, candidate_id, kind, verdict, finished"
                                   " FROM experiments WHERE status = 'finished'")
    # nothing finished before the kill was redone or changed
    assert set(before) <= set(after)
    explored = [e for e in s["experiments"] if e["kind"] == "explore"
                and e["status"] != "cancelled"]
    ids = [e["candidate_id"] for e in explored]
    assert len(ids) == len(set(ids)) == 5  # every candidate tried exactly once to the end
    cancelled = [e for e in s["experiments"] if e["status"] == "cancelled"]
    assert "patch:00-waits-for-gate.patch" in {e["candidate_id"] for e in cancelled}, \
        "the experiment cut off by the kill is marked and redone"
    assert {e["title"] for e in s["experiments"] if e["outcome"] == "kept"} == {
        "01-half-the-work"}
    assert s["status"] == "done"


def test_a_worker_that_dies_is_recorded_and_the_run_goes_on(
        loop_target: tuple[Path, Path], tmp_path: Path) -> None:
    target, patches = loop_target
    gate = target / "gate"  # in the repository: the sandboxed benchmark sees it (read-only)
    _add_gated(target, patches, gate)
    proc = start_run(target, patches, 1)
    db_path = target / ".readfirst/journal.db"
    running = wait_for(db_path, "SELECT id, pid FROM experiments WHERE status = 'running'"
                        " AND pid > 0 AND candidate_id = 'patch:00-waits-for-gate.patch'",
                        bool, "the gated experiment running", proc)
    exp_id, pid = running[0]
    os.kill(pid, signal.SIGKILL)  # the gate never opens: only the kill can end it
    proc.communicate()
    assert proc.returncode == 0
    died = journal_rows(db_path, f"SELECT status, reason FROM experiments WHERE id = {exp_id}")
    assert died[0][0] == "worker_died"
    assert "killed by signal 9" in died[0][1]
    statuses = journal_rows(db_path, "SELECT status FROM experiments WHERE kind = 'explore'")
    assert len(statuses) == 5  # the others ran to the end


def test_bad_loop_input(tmp_path: Path) -> None:
    target = make_target(tmp_path / "t")
    code, _, proc = run_cli("run", "--proposer", "nope", cwd=target)
    assert code == 2 and "unknown proposer 'nope'" in proc.stderr
    code, _, proc = run_cli("run", "--proposer", "forks", cwd=target)
    assert code == 2 and "competitors" in proc.stderr
    code, _, proc = run_cli("run", "--resume", cwd=target)
    assert code == 2 and "nothing to resume" in proc.stderr


def test_a_change_already_tried_is_not_measured_again(loop_target: tuple[Path, Path]) -> None:
    target, patches = loop_target
    for p in patches.iterdir():
        if not p.name.startswith("02-"):
            p.unlink()
    # the same edit under another name, with different blob ids and line numbers in the diff
    text = (patches / "02-double-the-work.patch").read_text()
    (patches / "07-same-edit-again.patch").write_text(
        text.replace("@@ -1,2 +1,2 @@", "@@ -1,2 +1,2 @@ context").replace("index ", "index 0"))
    code, s, proc = run_cli("run", "--proposer", "patches", "--patches", str(patches),
                            "--json", cwd=target)
    assert code == 0, proc.stderr
    rows = {e["title"]: e for e in s["experiments"]}
    assert rows["02-double-the-work"]["verdict"] == "regressed"
    assert rows["07-same-edit-again"]["status"] == "skipped"
    assert rows["07-same-edit-again"]["reason"].startswith("not novel: same change as")
    # a second run on the same baseline measures nothing it has measured already
    code, s2, _ = run_cli("run", "--proposer", "patches", "--patches", str(patches),
                          "--json", cwd=target)
    assert code == 0
    assert all(e["status"] == "skipped" for e in s2["experiments"])


def test_noisy_workers_are_quarantined(loop_target: tuple[Path, Path]) -> None:
    target, patches = loop_target
    toml = (target / "readfirst.toml").read_text()
    # every machine is noisier than 0.0001 %: both workers are quarantined, the run stops
    write(target, "readfirst.toml", toml + "\n[executor]\nnoise_check = true\n"
          "max_worker_cv = 0.000001\n")
    code, s, proc = run_cli("run", "--proposer", "patches", "--patches", str(patches),
                            "--json", cwd=target)
    assert code == 0, proc.stderr
    assert s["stop_reason"] == "every worker is too noisy (quarantined)"
    assert set(s["workers_noise"]) == {"w0", "w1"}
    assert all(w["quarantined"] and w["cv"] > 0 for w in s["workers_noise"].values())
    assert [e for e in s["experiments"] if e["wave"] > 0] == []
    # a generous threshold lets them work, and their noise is reported
    write(target, "readfirst.toml", toml + "\n[executor]\nnoise_check = true\n"
          "max_worker_cv = 10\n")
    (patches / "05-hangs.patch").unlink()
    code, s, proc = run_cli("run", "--proposer", "patches", "--patches", str(patches),
                            "--json", "--max-experiments", "2", cwd=target)
    assert code == 0, proc.stderr
    assert not any(w["quarantined"] for w in s["workers_noise"].values())
    assert len([e for e in s["experiments"] if e["kind"] == "explore"]) == 2


def test_skypilot_dry_run_writes_tasks_and_launches_nothing(
        loop_target: tuple[Path, Path]) -> None:
    target, patches = loop_target
    code, _, proc = run_cli("run", "--proposer", "patches", "--patches", str(patches),
                            "--executor", "skypilot", "--dry-run", cwd=target,
                            check_json=False)
    assert code == 0, proc.stderr
    paths = [Path(line) for line in proc.stdout.splitlines()]
    assert len(paths) == 4  # one per candidate that applies (03-stale does not)
    sky = pytest.importorskip("sky")
    for path in paths:
        task = sky.Task.from_yaml(str(path))
        assert {"EXPERIMENT_ID", "EXPERIMENT_DESC", "BUILD_CMD"} <= set(task.envs)
    assert "dry run: nothing launched" in proc.stderr


def test_missing_executor_extra_is_a_one_line_error(loop_target: tuple[Path, Path],
                                                    tmp_path: Path) -> None:
    target, patches = loop_target
    # hide ray from this run, as on an install without the extra
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "ray.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'ray'\", name='ray')\n")
    proc = subprocess.run(
        [sys.executable, "-m", "readfirst", "run", "--proposer", "patches", "--patches",
         str(patches), "--executor", "ray"],
        cwd=target, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(hide)})
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == ("readfirst: error: the ray executor needs its extra: "
                                   "pip install 'readfirst[ray]'")
    assert not (target / ".readfirst" / "journal.db").exists()  # no run was created


def test_ctrl_c_stops_the_loop_cleanly(loop_target: tuple[Path, Path],
                                       tmp_path: Path) -> None:
    target, patches = loop_target
    gate = target / "gate"  # in the repository: the sandboxed benchmark sees it (read-only)
    _add_gated(target, patches, gate)
    proc = start_run(target, patches, 2)
    db_path = target / ".readfirst/journal.db"
    # Ctrl-C once the loop only waits: the gated candidate runs alone, 01, 02 and 04 are
    # settled (03-stale touches the gated candidate's file and does not apply: it waits)
    wait_for(db_path, "SELECT candidate_id, status, pid FROM experiments",
              lambda rows: [c for c, s, pid in rows if s == "running" and pid] == [
                  "patch:00-waits-for-gate.patch"]
              and sum(s in ("finished", "skipped") for _c, s, _p in rows) >= 3,
              "the gated experiment running alone", proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate()
    assert proc.returncode == 130, err
    (status,) = journal_rows(db_path, "SELECT status FROM loop_runs")
    assert status == ("interrupted",)
    assert processes_under(target / ".readfirst/worktrees") == []
    # the run can be resumed and finishes
    gate.touch()
    code, s, out = run_cli("run", "--resume", "--json", cwd=target)
    assert code == 0, out.stderr
    assert s["status"] == "done"
