"""Decision quality of readfirst's compare rule vs its previous rule and a fixed "5 runs each"
protocol (simulation).

Two noise models of a throughput benchmark (higher is better, true base value 100):

* ``bursts`` (the original model): Gaussian noise of --cv per run, and with probability
  --burst-p a noisy neighbour makes that run 30-50 % slower (value / U(1.3, 1.5)); its drift
  column adds a machine that gets --drift faster per run.
* ``drift+episodes``: the same, plus the machine's speed wandering slowly (log speed is an
  AR(1) with coefficient 0.98 and a 2.5 % stationary sd) and slow episodes: with probability
  4 % per run the machine enters a 20-50 % slower state that lasts 4 runs on average, so several
  slow samples come in a row.

Rules:

* readfirst: RMIT rounds (base and candidate once per round, random order), then
  ``sequential_compare`` with the defaults (a look after every round from 10 up to 40,
  Lan-DeMets Pocock-type spending of alpha = 0.005, screened log ratios, futility stop, more
  rounds only while the estimate is promising, threshold 1 %); "keep" means the verdict
  "improved".
* readfirst, looks every 5 rounds: the same rule with the previous look schedule (10, 15, ...
  40), to show what the finer schedule changes.
* readfirst v1: the previous rule (alpha = 0.05 spent with Bonferroni over looks every 5 rounds
  up to 30, Wilcoxon signed-rank test, bootstrap CI of the median ratio beyond +-1 %, "no change"
  only when the whole CI is inside +-1 %), reproduced here for the comparison.
* fixed: 5 runs of A, then 5 runs of B (not interleaved); keep if B's mean is higher and the
  stddev is < 2 % of the mean (row "both sd": on both sides; row "cand sd": on B only).

Usage: PYTHONPATH=src .venv/bin/python benchmarks/decision_quality.py --trials 1000 --seed 1
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.stats import wilcoxon

from readfirst.core.constants import (
    DEFAULT_ALPHA,
    DEFAULT_MAX_ROUNDS,
    DEFAULT_NOISE_THRESHOLD,
    DEFAULT_ROUNDS,
)
from readfirst.measure.stats import sequential_compare

FIXED_RUNS = 5
FIXED_MAX_REL_STDDEV = 0.02
AR_COEF = 0.98  # drift+episodes: log speed AR(1) coefficient per run
AR_SD = 0.025  # ... and its stationary standard deviation
EPISODE_P = 0.04  # probability per run of entering a slow episode
EPISODE_STAY = 0.75  # probability a slow episode lasts another run (mean length 4)
V1_ALPHA = 0.05  # the previous rule's defaults
V1_MAX_ROUNDS = 30
V1_LOOK_EVERY = 5  # its looks: every 5 rounds (not today's DEFAULT_ROUNDS)


@dataclass(frozen=True)
class Scenario:
    name: str
    effect: float  # true cand/base throughput ratio
    linear_drift: bool


@dataclass(frozen=True)
class Machine:
    cv: float
    burst_p: float
    drift_per_run: float
    episodes: bool  # the drift+episodes model


class Run:
    """One simulated benchmark session: a clock (run counter) and a noise source."""

    def __init__(self, machine: Machine, linear_drift: bool, rng: np.random.Generator) -> None:
        self.m = machine
        self.drift = machine.drift_per_run if linear_drift else 0.0
        self.rng = rng
        self.t = 0
        self.log_speed = rng.normal(0.0, AR_SD) if machine.episodes else 0.0
        self.slow = 0.0  # current slow-episode factor (0: none)

    def _wander(self) -> float:
        if not self.m.episodes:
            return 1.0
        innovation = AR_SD * np.sqrt(1.0 - AR_COEF**2)
        self.log_speed = AR_COEF * self.log_speed + self.rng.normal(0.0, innovation)
        if self.slow and self.rng.random() >= EPISODE_STAY:
            self.slow = 0.0
        elif not self.slow and self.rng.random() < EPISODE_P:
            self.slow = self.rng.uniform(1.2, 1.5)
        return float(np.exp(self.log_speed)) / (self.slow or 1.0)

    def measure(self, true_value: float) -> float:
        value = true_value * (1.0 + self.drift * self.t) * (1.0 + self.rng.normal(0.0, self.m.cv))
        value *= self._wander()
        if self.rng.random() < self.m.burst_p:
            value /= self.rng.uniform(1.3, 1.5)
        self.t += 1
        return max(value, 1e-9)


def _rmit_drawer(run: Run, sc: Scenario, rng: np.random.Generator
                 ) -> Callable[[], tuple[float, float]]:
    def draw_round() -> tuple[float, float]:
        if rng.random() < 0.5:
            b = run.measure(100.0)
            c = run.measure(100.0 * sc.effect)
        else:
            c = run.measure(100.0 * sc.effect)
            b = run.measure(100.0)
        return b, c
    return draw_round


def readfirst_trial(
    machine: Machine, sc: Scenario, rng: np.random.Generator, alpha: float,
    look_every: int = DEFAULT_ROUNDS,
) -> tuple[str, int]:
    run = Run(machine, sc.linear_drift, rng)
    res = sequential_compare(
        _rmit_drawer(run, sc, rng),
        rounds=look_every,
        max_rounds=DEFAULT_MAX_ROUNDS,
        alpha=alpha,
        noise_threshold=DEFAULT_NOISE_THRESHOLD,
        direction="higher",
    )
    return res.decision, 2 * len(res.base)


def v1_trial(machine: Machine, sc: Scenario, rng: np.random.Generator,
             resamples: int) -> tuple[str, int]:
    """The previous rule: Bonferroni looks, median ratio, two-sided 'no change'."""
    run = Run(machine, sc.linear_drift, rng)
    draw = _rmit_drawer(run, sc, rng)
    looks = (*range(V1_LOOK_EVERY, V1_MAX_ROUNDS, V1_LOOK_EVERY), V1_MAX_ROUNDS)
    active = looks
    while True:
        per_look = V1_ALPHA / len(active)
        kept = tuple(n for n in active if 2.0 ** (1 - n) < per_look)  # exact rank-test floor
        if kept == active:
            break
        active = kept
    pairs: list[tuple[float, float]] = []
    thr = DEFAULT_NOISE_THRESHOLD
    boot = np.random.default_rng(20_170_422)
    for target in looks:
        while len(pairs) < target:
            pairs.append(draw())
        if target not in active:
            continue
        r = np.array([c / b for b, c in pairs])
        p = float(wilcoxon(np.log(r)).pvalue)
        idx = boot.integers(0, r.size, size=(resamples, r.size))
        lo, hi = np.quantile(np.median(r[idx], axis=1), [per_look / 2, 1 - per_look / 2])
        if p < per_look and lo > 1 + thr:
            return "improved", 2 * target
        if p < per_look and hi < 1 - thr:
            return "regressed", 2 * target
        if 1 - thr < lo and hi < 1 + thr:
            return "no_change", 2 * target
    return "inconclusive", 2 * len(pairs)


def fixed_trial(
    machine: Machine, sc: Scenario, rng: np.random.Generator, both: bool
) -> tuple[str, int]:
    run = Run(machine, sc.linear_drift, rng)
    a = np.array([run.measure(100.0) for _ in range(FIXED_RUNS)])
    b = np.array([run.measure(100.0 * sc.effect) for _ in range(FIXED_RUNS)])

    def quiet(x: np.ndarray) -> bool:
        return bool(np.std(x, ddof=1) < FIXED_MAX_REL_STDDEV * np.mean(x))

    keep = b.mean() > a.mean() and quiet(b) and (quiet(a) or not both)
    return ("improved" if keep else "discarded"), 2 * FIXED_RUNS


def _table(machine: Machine, scenarios: list[Scenario], args: argparse.Namespace,
           model: str) -> None:
    # (rule key, random stream, label, trial); the stream keeps each row's numbers the same
    # whichever rows run
    methods: list[tuple[str, int, str, Callable[..., tuple[str, int]]]] = [
        ("readfirst", 0, "readfirst (RMIT, group-sequential, a look every round)",
         lambda r, s: readfirst_trial(machine, s, r, args.alpha)),
        ("every5", 4, "readfirst, looks every 5 rounds (previous schedule)",
         lambda r, s: readfirst_trial(machine, s, r, args.alpha, look_every=5)),
        ("v1", 1, "readfirst v1 (RMIT, Bonferroni)",
         lambda r, s: v1_trial(machine, s, r, args.resamples)),
        ("fixed", 2, "fixed 5+5, mean better, both sd < 2 %",
         lambda r, s: fixed_trial(machine, s, r, True)),
        ("fixed", 3, "fixed 5+5, mean better, cand sd < 2 %",
         lambda r, s: fixed_trial(machine, s, r, False)),
    ]
    wanted = set(args.rules.split(","))
    started = time.perf_counter()
    print(f"### noise model: {model}\n")
    head = [s.name for s in scenarios] + ["mean rounds (no effect / +3 % / +5 %)"]
    print("| rule | " + " | ".join(head) + " |")
    print("|---|" + "---:|" * len(head))
    for key, stream, label, trial in methods:
        if key not in wanted:
            continue
        cells, rounds = [], []
        for si, sc in enumerate(scenarios):
            counts: dict[str, int] = {}
            used = 0
            for t in range(args.trials):
                rng = np.random.default_rng([args.seed, stream, si, t, int(machine.episodes)])
                decision, n_runs = trial(rng, sc)
                counts[decision] = counts.get(decision, 0) + 1
                used += n_runs
            if sc.effect > 1:
                cells.append(f"{counts.get('improved', 0) / args.trials:.1%}")
            else:  # a false call either way
                wrong = counts.get("improved", 0) + counts.get("regressed", 0)
                cells.append(f"{wrong / args.trials:.1%}")
            rounds.append(used / args.trials / 2)
        cells.append(f"{rounds[0]:.1f} / {rounds[-2]:.1f} / {rounds[-1]:.1f}")
        print(f"| {label} | " + " | ".join(cells) + " |")
    print(f"\n({time.perf_counter() - started:.0f} s)\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--trials", type=int, default=1000, help="simulated comparisons per cell")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--cv", type=float, default=0.02, help="Gaussian noise per run (rel. sd)")
    ap.add_argument("--burst-p", type=float, default=0.10, help="P(run is 30-50 %% slower)")
    ap.add_argument("--drift", type=float, default=0.002, help="speed-up per run, drift column")
    ap.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples (v1 rule)")
    ap.add_argument("--alpha", type=float, default=DEFAULT_ALPHA, help="readfirst's alpha")
    ap.add_argument("--model", choices=("both", "bursts", "episodes"), default="both")
    ap.add_argument("--rules", default="readfirst,every5,v1,fixed",
                    help="rows to run (comma list)")
    args = ap.parse_args()

    scenarios = [
        Scenario("false call, no effect", 1.0, False),
        Scenario(f"false call, no effect + drift {args.drift:+.1%}/run", 1.0, True),
        Scenario("keep at +3 %", 1.03, False),
        Scenario("keep at +5 %", 1.05, False),
    ]
    print(f"trials={args.trials} seed={args.seed} cv={args.cv:.1%} burst_p={args.burst_p:.0%} "
          f"(run 30-50 % slower) resamples={args.resamples}\n")
    for model, episodes in (("bursts", False), ("drift+episodes", True)):
        if args.model in ("both", "episodes" if episodes else "bursts"):
            machine = Machine(cv=args.cv, burst_p=args.burst_p, drift_per_run=args.drift,
                              episodes=episodes)
            _table(machine, scenarios, args, model)


if __name__ == "__main__":
    main()
