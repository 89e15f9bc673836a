"""Live progress: a worker writes its stage, rounds and interim estimate to the journal while
its experiment runs; `status`, `status --json`, `status --watch` and the live lines read it."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import TOML, git, make_target, run_cli, write
from rich.console import Console

from readfirst.frontends.live import lines, read_states
from readfirst.store.progress import interim_estimate

# The candidate's program counts its runs in its own build directory and, on its 4th run
# (warm-up, round 0, round 1, then round 2), waits until the test creates build/.go there:
# the experiment is certainly mid-benchmark, with two rounds done, while the test looks.
HOLD = """\
#include <unistd.h>
static void hold(void) {
    FILE *f = fopen("build/.runs", "r"); int n = 0;
    if (f) { if (fscanf(f, "%d", &n) != 1) n = 0; fclose(f); }
    f = fopen("build/.runs", "w"); fprintf(f, "%d", ++n); fclose(f);
    if (n == 4) while (access("build/.go", F_OK) != 0) usleep(10000);
}
"""


def test_interim_estimate_brackets_the_median_ratio() -> None:
    base = [10.0, 10.2, 9.9, 10.1, 10.0, 10.3]
    cand = [b * 0.8 for b in base]
    est = interim_estimate(base, cand)
    assert est is not None and est.ratio == pytest.approx(0.8)
    assert est.ci_low <= 0.8 <= est.ci_high
    assert interim_estimate([1.0], [2.0]) is None  # one round says nothing yet


def _wait(what: str, check, proc: subprocess.Popen[str]):  # type: ignore[no-untyped-def]
    """Poll until `check()` is truthy; no time limit (the held experiment cannot finish)."""
    while True:
        got = check()
        if got:
            return got
        if proc.poll() is not None:
            raise AssertionError(f"the run ended before {what}: {proc.stderr.read()}")
        time.sleep(0.1)


def held_target(tmp_path: Path, header: str = "") -> tuple[Path, Path]:
    """A target and a patches dir whose one candidate, 01-held, holds in round 2 until
    `.readfirst/worktrees/w0-cand/build/.go` exists (run it with one worker)."""
    target = make_target(tmp_path / "target", TOML.replace("bench_timeout = 20",
                                                           "bench_timeout = 600"))
    prog = (target / "src/prog.c").read_text()
    held = prog.replace('#include "params.h"', '#include "params.h"\n' + HOLD).replace(
        "    struct timespec a, b;", "    if (argc < 2) hold();\n    struct timespec a, b;")
    write(target, "src/prog.c", held)
    patches = tmp_path / "patches"
    patches.mkdir()
    (patches / "01-held.patch").write_text(header + git(target, "diff") + "\n")
    git(target, "checkout", "-q", "--", ".")
    return target, patches


def wait_until_held(target: Path, proc: subprocess.Popen[str]) -> dict:  # type: ignore[type-arg]
    def held_state():  # type: ignore[no-untyped-def]
        code, data, _ = run_cli("status", "--json", cwd=target)
        live = (data or {}).get("live") or []
        return live[0] if code == 0 and live and live[0]["rounds_done"] == 2 else None

    return _wait("the held experiment reached round 2", held_state, proc)  # type: ignore[no-any-return]


def test_status_shows_a_running_experiment_live(tmp_path: Path) -> None:
    target, patches = held_target(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "readfirst", "run", "--proposer", "patches", "--patches",
         str(patches), "--workers", "1"], cwd=target, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    journal = target / ".readfirst/journal.db"
    go = target / ".readfirst/worktrees/w0-cand/build/.go"
    try:
        state = wait_until_held(target, proc)
        assert state["worker"] == "w0" and state["seq"] == 1 and state["kind"] == "explore"
        assert state["stage"] == "benchmark rounds" and state["rounds_max"] == 20
        assert state["ratio"] is not None and state["ci_low"] <= state["ratio"] <= \
            state["ci_high"]
        assert state["eta"] is not None and state["elapsed"] > 0
        code, _, text = run_cli("status", cwd=target)
        assert code == 0 and "#1 explore  benchmark rounds 2/20" in text.stdout
        assert "ETA ≤" in text.stdout and "01-held" in text.stdout
        # the terminal's live lines render the same state
        loop_id, states = read_states(journal, json.loads(run_cli(
            "status", "--json", cwd=target)[2].stdout)["run_id"])
        console = Console(file=io.StringIO(), width=80, force_terminal=True)
        console.print(lines(states))
        assert "w0  #1 explore  benchmark rounds 2/20" in console.file.getvalue()
        # --watch follows the run to its end, then prints the table
        watcher = subprocess.Popen([sys.executable, "-m", "readfirst", "status", "--watch"],
                                   cwd=target, text=True, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE,
                                   env={**os.environ, "PYTHONUNBUFFERED": "1"})
        first = watcher.stdout.readline()  # printed while the experiment is held
        assert "w0  #1 explore  benchmark rounds 2/20" in first, first
        go.touch()
        rest, errs = watcher.communicate()
        assert watcher.returncode == 0, errs
        assert "01-held" in rest and "stopped: no candidates left" in rest  # the final table
        assert proc.wait() == 0
    finally:
        go.parent.mkdir(parents=True, exist_ok=True)
        go.touch()
        if proc.poll() is None:
            proc.wait()
    # the progress row stays, with the last round and the estimate of the finished compare
    code, data, _ = run_cli("status", "--json", cwd=target)
    assert data["status"] == "done" and data["live"] == []
