"""What the bubblewrap sandbox costs per step, and whether it adds noise to the metric.

Prints two Markdown tables for the bundled demo target (a C kernel library):
1. per step, the wall time readfirst measures without and with the sandbox (median of N runs
   of: an empty command, a no-op `make`, one benchmark run of the demo), and the difference;
2. A/A noise: base-vs-base compares (the same commit on both sides, fixed rounds) without and
   with the sandbox: the median |ratio - 1|, the CI half-width of the median ratio, and the CV
   of the metric's samples. A sandbox that added noise would widen these.

Usage: .venv/bin/python benchmarks/sandbox_cost.py [--runs 30] [--compares 3] [--rounds 10]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from readfirst.core.config import Spec, load_spec
from readfirst.frontends.demo import make_demo
from readfirst.measure.compare import compare
from readfirst.measure.process import run_step
from readfirst.measure.sandbox import policy_for, probe, step_env
from readfirst.vcs import gitcli
from readfirst.vcs.workspace import Workspace, target_at


def step_cost(target: Path, spec: Spec, runs: int) -> None:
    ws = Workspace(target)
    ws.ensure()
    head = gitcli.resolve_commit(target, "HEAD")
    tree = ws.checkout("cost", head)
    policy = policy_for(tree, target, ws.state, network=False)
    env = step_env()
    logs = ws.state / "cost-logs"
    assert spec.target.build
    run_step(spec.target.build, tree, logs / "prebuild", spec.target.build_timeout)
    steps = {"empty command (`true`)": "true", "no-op build (`make`)": spec.target.build,
             "one benchmark run": spec.target.bench}
    print(f"## Cost of the sandbox per step (median of {runs} runs, demo target)\n")
    print("| step | without sandbox ms | with sandbox ms | cost ms |")
    print("|---|---:|---:|---:|")
    for label, cmd in steps.items():
        plain, boxed = [], []
        for i in range(runs):  # alternate, so drift in the machine's load hits both alike
            for sandbox, into in ((None, plain), (policy, boxed)):
                res = run_step(cmd, tree, logs / f"{i}", 300, sandbox=sandbox, clean_env=env)
                assert res.ok, res.tail(10)
                into.append(res.seconds * 1000)
        a, b = statistics.median(plain), statistics.median(boxed)
        print(f"| {label} | {a:.1f} | {b:.1f} | {b - a:+.1f} |")
    print()


def aa_noise(target: Path, spec: Spec, compares: int, rounds: int) -> None:
    print(f"## A/A noise: HEAD vs HEAD, {compares} compares of {rounds} rounds each\n")
    print("| sandbox | median abs(ratio - 1) | median CI half-width | median CV of samples |")
    print("|---|---:|---:|---:|")
    cfg = spec.compare.model_copy(update={"rounds": rounds, "max_rounds": rounds})
    for sandbox in (False, True):
        s = spec.model_copy(update={
            "compare": cfg, "target": spec.target.model_copy(update={"sandbox": sandbox})})
        devs, halfs, cvs = [], [], []
        for _ in range(compares):
            r = compare(target_at(target), "HEAD", "HEAD", s)
            if r["ratio"] is None:
                raise SystemExit(f"A/A compare gave {r['verdict']}: {r['reason']}")
            devs.append(abs(r["ratio"] - 1))
            halfs.append((r["ci_high"] - r["ci_low"]) / 2)
            cvs += [r["base"]["cv"], r["cand"]["cv"]]
        print(f"| {'on' if sandbox else 'off'} | {statistics.median(devs):.2%} | "
              f"{statistics.median(halfs):.2%} | {statistics.median(cvs):.2%} |")
    print()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--compares", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=10)
    args = ap.parse_args()
    why = probe()
    if why is not None:
        raise SystemExit(why)
    with tempfile.TemporaryDirectory(prefix="rf-sandbox-cost-") as tmp:
        target, _fork = make_demo(Path(tmp) / "d")
        spec = load_spec(target)
        step_cost(target, spec, args.runs)
        aa_noise(target, spec, args.compares, args.rounds)


if __name__ == "__main__":
    main()
