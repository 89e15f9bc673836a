"""Decision quality of readfirst's compare rule vs a fixed "5 runs each" protocol (simulation).

Each benchmark run measures a throughput (higher is better, true base value 100) with Gaussian
noise of --cv, and with probability --burst-p a noisy neighbour makes that run 30-50 % slower
(value / U(1.3, 1.5)). In the drift scenario the machine gets --drift faster per run (e.g. a
neighbour winding down), which favours whatever runs later.

* readfirst: RMIT rounds (base and candidate once per round, random order), then
  ``sequential_compare`` with the defaults (rounds=5, max_rounds=30, alpha=0.05, threshold 1 %);
  "keep" means the verdict "improved".
* fixed: 5 runs of A, then 5 runs of B (not interleaved); keep if B's mean is higher and the
  stddev is < 2 % of the mean (row "both sd": on both sides; row "cand sd": on B only).

Usage: PYTHONPATH=src .venv/bin/python benchmarks/decision_quality.py --trials 2000 --seed 1
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from readfirst.constants import (
    BOOTSTRAP_RESAMPLES,
    DEFAULT_ALPHA,
    DEFAULT_MAX_ROUNDS,
    DEFAULT_NOISE_THRESHOLD,
    DEFAULT_ROUNDS,
)
from readfirst.stats import sequential_compare

FIXED_RUNS = 5
FIXED_MAX_REL_STDDEV = 0.02


@dataclass(frozen=True)
class Scenario:
    name: str
    effect: float  # true cand/base throughput ratio
    drift: bool


@dataclass(frozen=True)
class Machine:
    cv: float
    burst_p: float
    drift_per_run: float


class Run:
    """One simulated benchmark session: a clock (run counter) and a noise source."""

    def __init__(self, machine: Machine, drift: bool, rng: np.random.Generator) -> None:
        self.m = machine
        self.drift = machine.drift_per_run if drift else 0.0
        self.rng = rng
        self.t = 0

    def measure(self, true_value: float) -> float:
        value = true_value * (1.0 + self.drift * self.t) * (1.0 + self.rng.normal(0.0, self.m.cv))
        if self.rng.random() < self.m.burst_p:
            value /= self.rng.uniform(1.3, 1.5)
        self.t += 1
        return max(value, 1e-9)


def readfirst_trial(
    machine: Machine, sc: Scenario, rng: np.random.Generator, resamples: int
) -> tuple[bool, int]:
    run = Run(machine, sc.drift, rng)

    def draw_round() -> tuple[float, float]:
        if rng.random() < 0.5:
            b = run.measure(100.0)
            c = run.measure(100.0 * sc.effect)
        else:
            c = run.measure(100.0 * sc.effect)
            b = run.measure(100.0)
        return b, c

    res = sequential_compare(
        draw_round,
        rounds=DEFAULT_ROUNDS,
        max_rounds=DEFAULT_MAX_ROUNDS,
        alpha=DEFAULT_ALPHA,
        noise_threshold=DEFAULT_NOISE_THRESHOLD,
        direction="higher",
        resamples=resamples,
    )
    return res.decision == "improved", 2 * len(res.base)


def fixed_trial(
    machine: Machine, sc: Scenario, rng: np.random.Generator, both: bool
) -> tuple[bool, int]:
    run = Run(machine, sc.drift, rng)
    a = np.array([run.measure(100.0) for _ in range(FIXED_RUNS)])
    b = np.array([run.measure(100.0 * sc.effect) for _ in range(FIXED_RUNS)])

    def quiet(x: np.ndarray) -> bool:
        return bool(np.std(x, ddof=1) < FIXED_MAX_REL_STDDEV * np.mean(x))

    keep = b.mean() > a.mean() and quiet(b) and (quiet(a) or not both)
    return keep, 2 * FIXED_RUNS


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--trials", type=int, default=2000, help="simulated comparisons per cell")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--cv", type=float, default=0.02, help="Gaussian noise per run (rel. sd)")
    ap.add_argument("--burst-p", type=float, default=0.10, help="P(run is 30-50 %% slower)")
    ap.add_argument("--drift", type=float, default=0.002, help="speed-up per run, drift scenario")
    ap.add_argument("--resamples", type=int, default=BOOTSTRAP_RESAMPLES)
    args = ap.parse_args()

    machine = Machine(cv=args.cv, burst_p=args.burst_p, drift_per_run=args.drift)
    scenarios = [
        Scenario("false keep, no effect", 1.0, False),
        Scenario(f"false keep, no effect + drift {args.drift:+.1%}/run", 1.0, True),
        Scenario("keep at +3 %", 1.03, False),
        Scenario("keep at +5 %", 1.05, False),
    ]
    methods: list[tuple[str, Callable[..., tuple[bool, int]]]] = [
        (
            "readfirst (RMIT, sequential)",
            lambda r, s: readfirst_trial(machine, s, r, args.resamples),
        ),
        ("fixed 5+5, mean better, both sd < 2 %", lambda r, s: fixed_trial(machine, s, r, True)),
        ("fixed 5+5, mean better, cand sd < 2 %", lambda r, s: fixed_trial(machine, s, r, False)),
    ]
    started = time.perf_counter()
    rows = []
    for mi, (label, trial) in enumerate(methods):
        rates, runs = [], []
        for si, sc in enumerate(scenarios):
            keeps, used = 0, 0
            for t in range(args.trials):
                rng = np.random.default_rng([args.seed, mi, si, t])
                keep, n_runs = trial(rng, sc)
                keeps += keep
                used += n_runs
            rates.append(keeps / args.trials)
            runs.append(used / args.trials)
        rows.append((label, rates, runs))

    print(
        f"trials={args.trials} seed={args.seed} cv={args.cv:.1%} burst_p={args.burst_p:.0%} "
        f"(run 30-50 % slower) resamples={args.resamples} "
        f"({time.perf_counter() - started:.0f} s)\n"
    )
    head = [s.name for s in scenarios] + ["mean runs (no effect / +3 % / +5 %)"]
    print("| rule | " + " | ".join(head) + " |")
    print("|---|" + "---:|" * len(head))
    for label, rates, runs in rows:
        cells = [f"{r:.1%}" for r in rates]
        cells.append(f"{runs[0]:.1f} / {runs[2]:.1f} / {runs[3]:.1f}")
        print(f"| {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
