"""Does the demo keep both real wins with 2 workers while another process keeps a core busy?

Runs `readfirst demo --workers 2` N times (each in a fresh temp dir) while a busy-loop process
spins on one core, and prints one row per run (the two fusions' verdicts and changes, then
each confirmation and its outcome; whether both were kept; wall time) and how many runs kept
both fusions. Timed benchmark runs of the two workers take turns (timedlock.py); builds and
checks run in parallel, and pause while the other worker's timed run runs (yielding.py: on
2 cores, `[executor] quiet_timed_runs` "auto" turns that on).

Usage: .venv/bin/python benchmarks/demo_under_load.py [--runs 10] [--no-load]
Slow: about N minutes on a quiet 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FUSIONS = ("rmsnorm: fuse", "softmax: fuse")
BUSY = "while True: pass"


def one_run(workers: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="rf-demoload-") as tmp:
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "readfirst", "demo", "--dir",
                               str(Path(tmp) / "d"), "--workers", str(workers), "--json"],
                              capture_output=True, text=True)
        wall = time.perf_counter() - t0
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1:], "wall": wall}
    summary = json.loads(proc.stdout)
    kept = [e["title"] for e in summary["experiments"]
            if e["kind"] == "confirm" and e["outcome"] == "kept"]
    found = {f: [e for e in summary["experiments"] if e["title"].startswith(f)] for f in FUSIONS}
    return {"kept": kept, "found": found, "wall": wall}


def describe(experiments: list[dict]) -> str:
    """The fusion's verdicts in order: exploration, then confirmation(s) and their outcome."""
    if not experiments:
        return "not tried"
    parts = []
    for e in experiments:
        ratio = e.get("ratio")
        change = f" {ratio - 1:+.1%}" if ratio else ""
        outcome = f" ({e['outcome']})" if e["kind"] == "confirm" and e.get("outcome") else ""
        parts.append(f"{e['verdict'] or e['status']}{change}{outcome}")
    return " -> ".join(parts)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--no-load", action="store_true", help="no busy process")
    args = ap.parse_args()
    busy = None if args.no_load else subprocess.Popen([sys.executable, "-c", BUSY])
    both = 0
    print(f"{args.runs} demo runs, {args.workers} workers, "
          f"{'no extra load' if busy is None else 'one core kept busy by another process'}\n")
    print("| run | rmsnorm fusion | softmax fusion | kept both | wall s |")
    print("|---:|---|---|---|---:|")
    try:
        for i in range(1, args.runs + 1):
            r = one_run(args.workers)
            if "error" in r:
                print(f"| {i} | error: {r['error']} | | no | {r['wall']:.0f} |", flush=True)
                continue
            ok = all(any(k.startswith(f) for k in r["kept"]) for f in FUSIONS)
            both += ok
            cells = " | ".join(describe(r["found"][f]) for f in FUSIONS)
            print(f"| {i} | {cells} | {'yes' if ok else 'no'} | {r['wall']:.0f} |", flush=True)
    finally:
        if busy is not None:
            busy.kill()
            busy.wait()
    print(f"\nkept both real wins in {both} of {args.runs} runs")


if __name__ == "__main__":
    main()
