"""Real git repositories with a tiny C program built by `cc`, for end-to-end tests."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# A busy 2-core CI machine makes any per-example deadline a coin toss: examples are judged on
# what they return, never on how long they took.
settings.register_profile("loaded-machine", deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("loaded-machine")

# A suite started in the background by a shell without job control (`(make test &)`, some CI
# runners) inherits SIGINT ignored, and so would every `readfirst` the tests start: the tests
# that press Ctrl-C would wait forever. Ignored dispositions survive exec, handlers do not.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# Timed benchmark runs take turns machine-wide through one lock file; tests take turns among
# themselves only, so another test session on the machine (or a user's run) cannot stall them.
os.environ.setdefault("READFIRST_TIMED_LOCK",
                      str(Path(tempfile.mkdtemp(prefix="rf-tests-")) / "timed-runs.lock"))

GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@localhost",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@localhost",
}

# `compute` is the code under test; WORK sets how long the benchmark runs (lower time_ms is
# better). `--check` is the correctness test. time_ms is the process's CPU time, which another
# process keeping the CPUs busy barely moves; readfirst's own wall-clock timing still sees it all.
PROGRAM = textwrap.dedent(
    """\
    #include <stdio.h>
    #include <stdlib.h>
    #include <string.h>
    #include <time.h>
    #include "params.h"

    long compute(long n) { long s = 0; for (long i = 0; i < n; i++) s += i; return s; }

    int main(int argc, char **argv) {
        if (argc > 1 && strcmp(argv[1], "--check") == 0) return compute(10) == 45 ? 0 : 1;
        struct timespec a, b;
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &a);
        volatile double s = 0;
        for (long i = 0; i < WORK; i++) s += i * 0.5;
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &b);
        double ms = (b.tv_sec - a.tv_sec) * 1e3 + (b.tv_nsec - a.tv_nsec) / 1e6;
        printf("running\\n");
        const char *slow = getenv("TEST_SLOWDOWN");  /* the machine, not the code */
        printf("METRIC time_ms=%.4f\\n", ms * SCALE * (slow ? atof(slow) : 1.0));
        printf("METRIC work=%ld\\n", (long)WORK);
        return 0;
    }
    """
)

MAKEFILE = textwrap.dedent(
    """\
    build/prog: src/prog.c src/params.h
    \tmkdir -p build
    \t$(CC) -O2 -o build/prog src/prog.c
    """
)

TOML = textwrap.dedent(
    """\
    [target]
    build = "make"
    bench = "./autoresearch.sh"
    checks = "./autoresearch.checks.sh"
    build_timeout = 60
    bench_timeout = 20
    checks_timeout = 20
    protected = ["autoresearch.sh", "autoresearch.checks.sh", "tests/**"]
    scope = ["src/**"]

    [metric]
    name = "time_ms"
    direction = "lower"
    unit = "ms"
    # the program's timed loop is ~10 ms beside ~70 ms of process and sandbox start-up: the
    # wall clock cannot see its changes (tests of that guard turn it back on)
    wall_check = false

    [compare]
    rounds = 5
    max_rounds = 20
    noise_threshold = 0.02
    warmup = 1
    """
)

BASE_WORK = 6_000_000


def params(work: int = BASE_WORK, scale: float = 1.0) -> str:
    return f"#define WORK {work}L\n#define SCALE {scale}\n"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, **GIT_ENV},
    ).stdout.strip()


def write(repo: Path, rel: str, text: str, executable: bool = False) -> None:
    path = repo / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    if executable:
        path.chmod(0o755)


def commit(repo: Path, message: str) -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def make_target(repo: Path, toml: str = TOML) -> Path:
    repo.mkdir(parents=True, exist_ok=True)
    git(repo, "init", "-q")
    write(repo, "src/prog.c", PROGRAM)
    write(repo, "src/params.h", params())
    write(repo, "Makefile", MAKEFILE)
    write(repo, ".gitignore", "build/\n")
    write(repo, "autoresearch.sh", "#!/bin/sh\nexec ./build/prog\n", executable=True)
    write(repo, "autoresearch.checks.sh", "#!/bin/sh\nexec ./build/prog --check\n", True)
    write(repo, "tests/README", "protected test data\n")
    if toml:
        write(repo, "readfirst.toml", toml)
    commit(repo, "base")
    return repo


@pytest.fixture
def target(tmp_path: Path) -> Path:
    return make_target(tmp_path / "target")


def run_cli(*args: str, cwd: Path, check_json: bool = True, timeout: float | None = None,
            env: dict[str, str] | None = None):
    """Run the real `readfirst` CLI in a subprocess; returns (exit code, parsed JSON or None,
    the CompletedProcess). No time limit by default: a loaded machine is slow, not wrong."""
    proc = subprocess.run(
        [sys.executable, "-m", "readfirst", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
    data = None
    if check_json and "--json" in args and proc.stdout.strip():
        data = json.loads(proc.stdout)
    return proc.returncode, data, proc


# --- loop runs: candidates as diffs, a run in the background, its journal ------------------


def diff_for(repo: Path, rel: str, text: str) -> str:
    """The diff that would change `rel` to `text`, leaving the repository as it was."""
    original = (repo / rel).read_text()
    write(repo, rel, text)
    diff = git(repo, "diff", "--", rel) + "\n"
    write(repo, rel, original)
    return diff


def start_run(target: Path, patches: Path, workers: int, *extra: str) -> subprocess.Popen[str]:
    """`readfirst run --proposer patches` in the background, for tests that interrupt it."""
    return subprocess.Popen(
        [sys.executable, "-m", "readfirst", "run", "--proposer", "patches", "--patches",
         str(patches), "--workers", str(workers), "--json", *extra],
        cwd=target, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def journal_rows(db_path: Path, sql: str) -> list[tuple]:
    """The rows a query gives on a run's journal ([] while it does not exist yet)."""
    try:
        with sqlite3.connect(db_path) as db:
            return db.execute(sql).fetchall()
    except sqlite3.OperationalError:
        return []


def wait_for(db_path: Path, sql: str, ready: Callable[[list[tuple]], object], what: str,
             proc: subprocess.Popen[str] | None = None, poll: float = 0.05) -> list[tuple]:
    """Poll the journal until `ready(rows)` holds; the rows then. No time limit: callers
    wait for what cannot pass by (e.g. a candidate that runs until the test opens a gate);
    if the run ends first, the test fails with its output."""
    while True:
        rows = journal_rows(db_path, sql)
        if ready(rows):
            return rows
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the run ended before {what}: {proc.communicate()}")
        time.sleep(poll)


def processes_under(directory: Path) -> list[int]:
    """Live processes (zombies excluded) whose working directory is inside `directory`."""
    found = []
    for proc_dir in Path("/proc").glob("[0-9]*"):
        try:
            cwd = (proc_dir / "cwd").readlink()
            state = (proc_dir / "status").read_text()
        except OSError:
            continue
        if cwd.is_relative_to(directory.resolve()) and "State:\tZ" not in state:
            found.append(int(proc_dir.name))
    return found
