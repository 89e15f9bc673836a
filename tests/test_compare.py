"""`readfirst compare` end to end: real repos, real builds with cc, real subprocesses."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest
from conftest import BASE_WORK, commit, git, params, run_cli, write

VERDICT_KEYS = {"verdict", "ratio", "ci_low", "ci_high", "p_value", "rounds", "base", "cand",
                "flags", "metric"}
SIDE_KEYS = {"median", "mean", "stddev", "cv", "samples"}


def test_real_speedup_is_improved_and_user_tree_untouched(target: Path) -> None:
    write(target, "src/params.h", params(BASE_WORK // 2))
    commit(target, "half the work")
    # A dirty user tree: readfirst must neither read nor write it for committed revisions.
    write(target, "src/params.h", params(BASE_WORK * 2))
    write(target, "scratch.txt", "mine\n")
    status_before = git(target, "status", "--porcelain")

    code, r, proc = run_cli("compare", "HEAD~1", "HEAD", "--json", cwd=target)
    assert code == 0, proc.stderr
    assert r.keys() >= VERDICT_KEYS
    assert r["base"].keys() >= SIDE_KEYS and r["cand"].keys() >= SIDE_KEYS
    assert r["verdict"] == "improved", r["reason"]
    assert 0.35 < r["ratio"] < 0.65
    assert r["ci_low"] <= r["ratio"] <= r["ci_high"] < 0.98
    assert r["p_value"] < 0.05
    assert len(r["base"]["samples"]) == r["rounds"] == len(r["cand"]["samples"])
    assert r["metric"] == {"name": "time_ms", "unit": "ms", "direction": "lower"}
    assert r["secondary"]["work"]["ratio"] == pytest.approx(0.5)
    # readfirst's own clock of every round (its ~10 ms loop is lost in process start-up here)
    assert r["wall"]["ratio"] > 0 and r["wall"]["ci_low"] <= r["wall"]["ci_high"]
    # the user's tree is exactly as it was
    assert git(target, "status", "--porcelain") == status_before
    assert (target / "src/params.h").read_text() == params(BASE_WORK * 2)
    assert not (target / "build").exists()
    # every raw sample is in the journal
    db = sqlite3.connect(target / ".readfirst/journal.db")
    n = db.execute("SELECT count(*) FROM samples WHERE run_id = ?", (r["run_id"],)).fetchone()[0]
    assert n == 2 * r["rounds"]
    status = db.execute("SELECT status, verdict FROM runs WHERE id = ?", (r["run_id"],)).fetchone()
    assert status == ("done", "improved")


def test_human_output_is_a_table(target: Path) -> None:
    write(target, "src/params.h", params(BASE_WORK * 2))
    commit(target, "more work")
    code, _, proc = run_cli("compare", "HEAD~1", "HEAD", cwd=target)
    assert code == 0, proc.stderr
    assert "median" in proc.stdout and "mean ± stddev" in proc.stdout
    assert "verdict: regressed" in proc.stdout


def test_worktree_revision_measures_uncommitted_changes(target: Path) -> None:
    write(target, "src/params.h", params(BASE_WORK // 2))
    code, r, proc = run_cli("compare", "HEAD", "WORKTREE", "--json", cwd=target)
    assert code == 0, proc.stderr
    assert r["verdict"] == "improved"
    assert r["cand_commit"] != r["base_commit"]
    assert git(target, "status", "--porcelain") == "M src/params.h"
    assert git(target, "stash", "list") == ""


def test_second_compare_rebuilds_incrementally(target: Path) -> None:
    write(target, "src/params.h", params(BASE_WORK // 2))
    commit(target, "half")
    args = ("compare", "HEAD~1", "HEAD", "--json", "--max-rounds", "10", "--rounds", "5")
    code, first, _ = run_cli(*args, cwd=target)
    assert code == 0
    binary = target / ".readfirst/worktrees/cand/build/prog"
    mtime = binary.stat().st_mtime_ns
    code, second, _ = run_cli(*args, cwd=target)
    assert code == 0
    assert binary.stat().st_mtime_ns == mtime  # not rebuilt
    build_log = Path(second["logs"]) / "cand-build.out"
    assert "up to date" in build_log.read_text() or build_log.read_text().strip() == ""


def test_protected_file_change_is_refused_before_anything_runs(target: Path) -> None:
    write(target, "autoresearch.sh", "#!/bin/sh\necho 'METRIC time_ms=0.001'\n", True)
    commit(target, "cheat")
    code, r, proc = run_cli("compare", "HEAD~1", "HEAD", "--json", cwd=target)
    assert code == 0, proc.stderr
    assert r["verdict"] == "refused"
    assert r["files"] == ["autoresearch.sh"]
    assert "protected" in r["reason"]
    assert not (target / ".readfirst/worktrees").exists()


def test_out_of_scope_change_is_refused(target: Path) -> None:
    write(target, "Makefile", (target / "Makefile").read_text() + "\n# tweak\n")
    commit(target, "edit makefile")
    code, r, _ = run_cli("compare", "HEAD~1", "HEAD", "--json", cwd=target)
    assert code == 0
    assert r["verdict"] == "refused"
    assert r["files"] == ["Makefile"]
    assert "outside scope" in r["reason"]


def test_rewriting_protected_files_while_running_is_tampering(target: Path) -> None:
    # The candidate's build step rewrites the checks script in its own checkout.
    prog = (target / "src/prog.c").read_text().replace(
        "int main(int argc, char **argv) {",
        "int main(int argc, char **argv) {\n"
        '    FILE *f = fopen("autoresearch.checks.sh", "w");\n'
        '    if (f) { fputs("#!/bin/sh\\nexit 0\\n", f); fclose(f); }',
    )
    write(target, "src/prog.c", prog)
    commit(target, "sneaky")
    code, r, proc = run_cli("compare", "HEAD~1", "HEAD", "--json", cwd=target)
    assert code == 0, proc.stderr
    assert r["verdict"] == "refused"
    assert "tampering" in r["flags"]
    assert r["files"] == ["autoresearch.checks.sh"]


def test_failing_checks_give_checks_failed(target: Path) -> None:
    prog = (target / "src/prog.c").read_text().replace("s += i;", "s += i + 1;")
    write(target, "src/prog.c", prog)
    commit(target, "wrong")
    code, r, _ = run_cli("compare", "HEAD~1", "HEAD", "--json", cwd=target)
    assert code == 0
    assert r["verdict"] == "checks_failed"
    assert "base_checks_fail_too" not in r["flags"]


def test_non_finite_metric_is_a_crash_with_tail(target: Path) -> None:
    prog = (target / "src/prog.c").read_text().replace("ms * SCALE", "ms * SCALE / 0.0 * 0.0")
    write(target, "src/prog.c", prog)
    commit(target, "nan")
    code, r, _ = run_cli("compare", "HEAD~1", "HEAD", "--json", cwd=target)
    assert code == 0
    assert r["verdict"] == "crash"
    assert "time_ms" in r["reason"] and "missing" in r["reason"]
    assert "METRIC work=" in r["tail"]


def test_implausible_ratio_is_suspect(target: Path) -> None:
    write(target, "src/params.h", params(BASE_WORK, scale=0.1))  # "10x faster" by parsing bug
    commit(target, "too good")
    code, r, _ = run_cli("compare", "HEAD~1", "HEAD", "--json", cwd=target)
    assert code == 0
    assert r["verdict"] == "suspect"
    assert "implausible_ratio" in r["flags"]


def test_metric_against_wall_time_is_suspect(target: Path) -> None:
    # Twice the work but a reported time of 60 %: the metric says faster, the clock says slower.
    toml = (target / "readfirst.toml").read_text()
    write(target, "readfirst.toml", toml.replace("wall_check = false", "wall_check = true"))
    commit(target, "the wall-clock guard on")
    write(target, "src/params.h", params(BASE_WORK * 2, scale=0.3))
    commit(target, "lies")
    code, r, _ = run_cli("compare", "HEAD~1", "HEAD", "--json", cwd=target)
    assert code == 0
    assert r["verdict"] == "suspect", r["reason"]
    # on a busy machine the clock may only fail to show the change rather than contradict it
    assert {"wall_time_disagrees", "wall_time_unexplained"} & set(r["flags"])


def test_hung_benchmark_is_killed_with_its_group(target: Path, tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    # the candidate's program starts a grandchild that would outlive a plain kill, then hangs
    prog = (target / "src/prog.c").read_text().replace(
        '#include "params.h"', '#include "params.h"\n#include <stdlib.h>\n#include <unistd.h>'
    ).replace(
        "    struct timespec a, b;",
        f'    system("sleep 300 & echo $! > {pidfile}"); sleep(300);\n    struct timespec a, b;',
    )
    write(target, "src/prog.c", prog)
    commit(target, "hang")
    toml = (target / "readfirst.toml").read_text()
    toml = toml.replace("bench_timeout = 20", "bench_timeout = 2")
    write(target, "readfirst.toml", toml)  # uncommitted: the config is read from the user's tree
    # without the sandbox (it writes its pid outside its worktree; the sandboxed case, where
    # the PID namespace ends everything, is in test_security.py)
    code, r, _ = run_cli("compare", "HEAD~1", "HEAD", "--json", "--warmup", "0",
                         "--no-sandbox", cwd=target)
    assert code == 0
    assert r["verdict"] == "crash"
    assert "timed out" in r["reason"]
    pid = int(pidfile.read_text())
    assert not _alive(pid)


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for a reaper that this container may not have is dead)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "State:\tZ" not in status


def test_base_that_does_not_build_exits_3(target: Path) -> None:
    write(target, "src/prog.c", "this is not C\n")
    commit(target, "broken")
    write(target, "src/prog.c", (target / "src/prog.c").read_text())
    code, _, proc = run_cli("compare", "HEAD", "HEAD~1", "--json", cwd=target)
    assert code == 3
    assert "base HEAD cannot be measured" in proc.stderr
    assert proc.stdout == ""


def test_duet_mode_runs_both_sides_at_once(target: Path) -> None:
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("duet needs two CPUs")
    write(target, "src/params.h", params(BASE_WORK // 2))
    commit(target, "half")
    code, r, proc = run_cli("compare", "HEAD~1", "HEAD", "--json", "--mode", "duet", cwd=target)
    assert code == 0, proc.stderr
    assert r["mode"] == "duet"
    assert r["verdict"] == "improved", (r["reason"], r["wall"])
    db = sqlite3.connect(target / ".readfirst/journal.db")
    positions = {p for (p,) in db.execute("SELECT position FROM samples WHERE run_id = ?",
                                          (r["run_id"],))}
    assert positions == {0}


def test_bench_summarises_one_revision(target: Path) -> None:
    code, r, proc = run_cli("bench", "HEAD", "--rounds", "4", "--json", cwd=target)
    assert code == 0, proc.stderr
    assert r["n"] == 4 and len(r["samples"]) == 4
    assert r["median"] > 0 and r["metric"]["name"] == "time_ms"
    # a second bench of the same code compares against the journal's last baseline
    code, r2, _ = run_cli("bench", "HEAD", "--rounds", "4", "--json", cwd=target)
    assert code == 0
    assert r2["baseline_previous_median"] == pytest.approx(r["median"])


def test_drifting_baseline_is_flagged(target: Path) -> None:
    code, first, _ = run_cli("bench", "--rounds", "3", "--json", cwd=target)
    assert code == 0 and "baseline_drift" not in first["flags"]
    # same code, same machine, but the machine got 40 % slower since
    # the benchmark's environment is an allow-list: the config passes this variable through
    toml = (target / "readfirst.toml").read_text()
    write(target, "readfirst.toml", toml.replace("[metric]", 'env = ["TEST_SLOWDOWN"]\n\n[metric]'))
    code, r, proc = run_cli("compare", "HEAD", "HEAD", "--json", cwd=target,
                            env={"TEST_SLOWDOWN": "1.4"})
    assert code == 0, proc.stderr
    assert "baseline_drift" in r["flags"], (r["reason"], r["base"]["median"], first["median"])
    assert r["baseline_previous_median"] == pytest.approx(first["median"])
    assert "moved +" in r["reason"]
