"""Orchestration overhead of the loop, and incremental-build reuse, on the bundled demo target.

Prints two Markdown tables:
1. per experiment of a real `readfirst demo`-style loop (local workers, persistent: one
   process per worker for the whole run): wall time from submission to result, the time inside
   build / checks / warm-up / benchmark / apply, and the rest (handing the job to the worker,
   worktree checkout, hashing, journal writes, statistics, and with several workers the wait
   for the machine-wide timed-runs lock, which this script makes private to its own run);
2. a worker's build of the demo target: clean build, incremental build after a one-file change,
   and a no-op rebuild of the same commit, as `readfirst compare` sees them.

Usage: .venv/bin/python benchmarks/overhead.py [--workers 1]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from readfirst.core.config import load_spec
from readfirst.frontends.demo import make_demo
from readfirst.loop.loop import LoopOptions, run_loop
from readfirst.measure.process import run_step
from readfirst.vcs import gitcli
from readfirst.vcs.workspace import Workspace, target_at

STAGES = ("apply", "build", "checks", "warmup", "bench")


def loop_overhead(workers: int) -> None:
    with tempfile.TemporaryDirectory(prefix="rf-overhead-") as tmp:
        target, _fork = make_demo(Path(tmp) / "d")
        summary = run_loop(target_at(target), load_spec(target),
                           LoopOptions(proposer="forks", workers=workers))
    print(f"## Loop overhead per experiment ({workers} workers, demo target)\n")
    print("| # | kind | verdict | wall s | in stages s | overhead s |")
    print("|---:|---|---|---:|---:|---:|")
    overheads = []
    for e in summary["experiments"]:
        if e["finished"] is None or not e["timings"]:
            continue
        wall = e["finished"] - e["started"]
        stages = sum(e["timings"].get(k, 0.0) for k in STAGES)
        overheads.append(wall - stages)
        print(f"| {e['seq']} | {e['kind']} | {e['verdict'] or e['status']} | {wall:.2f} |"
              f" {stages:.2f} | {wall - stages:.2f} |")
    if overheads:
        print(f"\nmedian overhead {statistics.median(overheads):.2f} s per experiment, "
              f"max {max(overheads):.2f} s; run wall time "
              f"{summary['finished'] - summary['started']:.1f} s\n")


def build_reuse() -> None:
    with tempfile.TemporaryDirectory(prefix="rf-build-") as tmp:
        target, fork = make_demo(Path(tmp) / "d")
        spec = load_spec(target)
        ws = Workspace(target)
        ws.ensure()
        commits = gitcli.git(fork, "rev-list", "--reverse", "HEAD").split()
        gitcli.git(target, "fetch", "-q", str(fork), "HEAD:refs/heads/fork")
        base, first_change = commits[0], commits[1]
        logs = Path(tmp) / "logs"
        build = spec.target.build or "make"

        def timed(label: str, commit: str) -> tuple[str, float]:
            path = ws.checkout("w0-cand", commit)
            res = run_step(build, path, logs / label, spec.target.build_timeout)
            assert res.ok, res.tail(20)
            return label, res.seconds

        rows = [timed("clean build (fresh worktree)", base)]
        rows.append(timed("same commit again (no-op)", base))
        rows.append(timed("next commit, one file changed", first_change))
        shutil.rmtree(ws.slot_path("w0-cand") / "build")
        rows.append(timed("clean build of that commit", first_change))
    print("## Build reuse in a worker's worktree (demo target)\n")
    print("| build | seconds |")
    print("|---|---:|")
    for label, secs in rows:
        print(f"| {label} | {secs:.3f} |")
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    # other readfirst runs on this machine (CI, other users) must not make ours wait
    os.environ["READFIRST_TIMED_LOCK"] = tempfile.mktemp(prefix="rf-overhead-lock-")
    started = time.perf_counter()
    build_reuse()
    loop_overhead(args.workers)
    print(f"(benchmark took {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
