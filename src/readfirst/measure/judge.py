"""The judge: statistics plus integrity guards -> one verdict with the numbers behind it.

Verdicts: improved | regressed | no_change | inconclusive (from the statistics), and
checks_failed | refused | crash | suspect (from the guards). `suspect` always overrides a
statistical verdict: an implausible ratio; the metric and readfirst's own wall-clock timing
pointing in opposite directions, each significantly; a metric change the wall clock does not
show (even at the edge of its CI the wall moved less than `[metric] wall_share` of the
metric's claim: a benchmark that prints a better number than it measured); one metric name
printed with different values in one run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from readfirst.core import constants as C
from readfirst.core.notation import format_change
from readfirst.measure.stats import (
    RatioTest,
    SequentialResult,
    paired_ratio_test,
    summarize,
)

Verdict = Literal[
    "improved",
    "regressed",
    "no_change",
    "inconclusive",
    "checks_failed",
    "refused",
    "crash",
    "suspect",
]
VERDICTS: tuple[str, ...] = Verdict.__args__  # type: ignore[attr-defined]


@dataclass
class Evidence:
    """Everything measured for one compare, as the judge needs it."""

    metric: dict[str, Any]  # name, unit, direction
    direction: Literal["higher", "lower"]
    noise_threshold: float
    alpha_look: float
    plausible_ratio: float
    seq: SequentialResult
    wall_base: list[float]
    wall_cand: list[float]
    alpha: float | None = None  # family-wise alpha of the looks (their CIs are repeated CIs)
    secondary_base: list[dict[str, float]] = field(default_factory=list)
    secondary_cand: list[dict[str, float]] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    repeated_metrics: list[str] = field(default_factory=list)
    # False for tools that calibrate their own iterations (the wall time says nothing then)
    wall_informative: bool = True
    # the smallest share of the process's wall time the metric may time ([metric] wall_share)
    wall_share: float = C.WALL_MIN_TIMED_SHARE
    # CPU seconds of each benchmark run's process tree (empty when not measured)
    cpu_base: list[float] = field(default_factory=list)
    cpu_cand: list[float] = field(default_factory=list)


def side_dict(samples: list[float]) -> dict[str, Any]:
    s = summarize(samples)
    return {**s.to_dict(), "samples": list(samples)}


def _is_better(ratio: float, direction: str) -> bool:
    return ratio > 1 if direction == "higher" else ratio < 1


def judge_measurement(ev: Evidence) -> dict[str, Any]:
    """Verdict for a compare that built, passed its checks and produced samples on both sides."""
    seq = ev.seq
    test = seq.test
    assert test is not None  # the caller only judges after at least one look
    flags = list(ev.flags)
    verdict: str = seq.decision
    reason = _stat_reason(verdict, test, ev)

    for role, samples in (("base", seq.base), ("cand", seq.cand)):
        if summarize(samples).cv >= C.HIGH_CV:
            flags.append(f"high_cv_{role}")

    wall = paired_ratio_test(ev.wall_base, ev.wall_cand, ev.alpha_look)
    cpu = _cpu_test(ev)
    suspicion = _suspicion(ev, test, wall, cpu)
    if suspicion is not None:
        verdict = "suspect"
        flags.append(suspicion[0])
        reason = suspicion[1]

    return {
        "verdict": verdict,
        "reason": reason,
        "metric": ev.metric,
        "ratio": test.ratio,
        "change": test.ratio - 1,
        "ci_low": test.ci_low,
        "ci_high": test.ci_high,
        "ci_level": _ci_level(test, ev),
        "ci_level_look": test.ci_level,
        "p_value": test.p_value,
        "alpha": ev.alpha,
        "alpha_look": ev.alpha_look,
        "rounds": test.n,
        "screened_rounds": test.screened,
        "stopped": seq.stopped,
        "base": side_dict(seq.base),
        "cand": side_dict(seq.cand),
        "wall": {"ratio": wall.ratio, "ci_low": wall.ci_low, "ci_high": wall.ci_high,
                 "p_value": wall.p_value},
        "cpu": None if cpu is None else {"ratio": cpu.ratio, "ci_low": cpu.ci_low,
                                         "ci_high": cpu.ci_high, "p_value": cpu.p_value},
        "secondary": _secondary(ev.secondary_base, ev.secondary_cand, ev.metric["name"]),
        "flags": sorted(set(flags)),
    }


def _suspicion(ev: Evidence, test: RatioTest, wall: RatioTest,
               cpu: RatioTest | None) -> tuple[str, str] | None:
    """(flag, reason) when the numbers cannot be trusted whatever the statistics say: an
    implausible ratio, one metric printed twice, or the wall clock disagreeing with the metric
    or not showing its change."""
    seq = ev.seq
    bound = ev.plausible_ratio
    if not (1 / bound <= test.ratio <= bound):
        return "implausible_ratio", (
            f"{format_change(test.ratio)} (cand/base {test.ratio:.3f}) is beyond the "
            f"plausibility bound {bound:g}x: check the benchmark's parsing before trusting it"
        )
    if ev.repeated_metrics:
        return "metric_repeated", (
            f"the benchmark printed {', '.join(ev.repeated_metrics)} more than once with "
            "different values in one run: which one is the measurement?"
        )
    if seq.decision not in ("improved", "regressed"):
        return None
    if _wall_disagrees(test, wall, ev):
        return "wall_time_disagrees", (
            f"the metric says {seq.decision} ({_stat_change(test, ev)}) but readfirst's own "
            f"timing of the benchmark says the opposite (wall time {_wall_change(wall, ev)}, "
            f"p={wall.p_value:.2g})"
        )
    if ev.wall_informative and _clocks_unexplained(test, wall, cpu, ev):
        cpu_text = "" if cpu is None else f", CPU time {_wall_change(cpu, ev)}"
        return "wall_time_unexplained", (
            f"the metric says {seq.decision} ({_stat_change(test, ev)}) but readfirst's own "
            f"timing of the benchmark shows no change (wall time "
            f"{_wall_change(wall, ev)}{cpu_text})"
        )
    return None


def _wall_disagrees(test: RatioTest, wall: RatioTest, ev: Evidence) -> bool:
    """Metric significantly better while wall time is significantly longer, or the reverse."""
    if wall.p_value >= ev.alpha_look:
        return False
    metric_better = _is_better(test.ratio, ev.direction)
    wall_faster = wall.ci_high < 1
    wall_slower = wall.ci_low > 1
    return (metric_better and wall_slower) or (not metric_better and wall_faster)


def _ci_level(test: RatioTest, ev: Evidence) -> float:
    """The level the reported CI holds: the looks' family level (repeated CIs) when known."""
    return 1.0 - ev.alpha if ev.alpha is not None else test.ci_level


def _cpu_test(ev: Evidence) -> RatioTest | None:
    """The CPU clock's paired test, when every kept round has a CPU time on both sides."""
    n = len(ev.wall_base)
    if len(ev.cpu_base) != n or len(ev.cpu_cand) != n or n < 2:
        return None
    if min(ev.cpu_base + ev.cpu_cand) <= 0:
        return None
    return paired_ratio_test(ev.cpu_base, ev.cpu_cand, ev.alpha_look)


def _clocks_unexplained(test: RatioTest, wall: RatioTest, cpu: RatioTest | None,
                        ev: Evidence) -> bool:
    """Neither of readfirst's clocks accounts for the metric's change. The wall clock sees
    sleeps, I/O and waiting; the CPU clock (the step's process tree) sees computation and
    hardly moves on a busy machine, so a metric printed better than measured stays caught
    when load makes the wall clock too noisy to tell. A clock that confidently shows no
    change is overruled only by the other clock significantly showing the change."""
    wall_off = _wall_unexplained(test, wall, ev.direction, ev.wall_share)
    if cpu is None:
        return wall_off
    cpu_off = _wall_unexplained(test, cpu, ev.direction, ev.wall_share)
    return (wall_off and not _clock_shows(test, cpu, ev.direction)) or \
        (cpu_off and not _clock_shows(test, wall, ev.direction))


def _claim(test: RatioTest, direction: str) -> tuple[float, float]:
    """The metric's CI as a time ratio (inverted for higher-is-better)."""
    return (test.ci_low, test.ci_high) if direction == "lower" else \
        (1 / test.ci_high, 1 / test.ci_low)


def _clock_shows(test: RatioTest, clock: RatioTest, direction: str) -> bool:
    """The clock significantly moved the way the metric claims."""
    lo, hi = _claim(test, direction)
    return clock.ci_high < 1 if hi < 1 else clock.ci_low > 1 if lo > 1 else False


def _wall_unexplained(test: RatioTest, wall: RatioTest, direction: str,
                      share: float) -> bool:
    """Even at the edge of its CI, readfirst's wall clock shows less than `share` of the
    smallest change the metric's CI claims (the metric seen as a wall-time ratio: inverted for
    higher-is-better). A metric that times `share` of the process moves the wall by `share` of
    its own change (fixed start-up costs only dilute a real change), and a noisy clock proves
    nothing, so only a clock that confidently stayed near 1 trips this: the number was
    printed, not run."""
    lo, hi = _claim(test, direction)
    if hi < 1:  # the metric claims the benchmark got faster
        return wall.ci_low > 1 - share * (1 - hi)
    if lo > 1:  # ... or slower
        return wall.ci_high < 1 + share * (lo - 1)
    return False


def _stat_change(test: RatioTest, ev: Evidence) -> str:
    """The metric's change in readfirst's notation, at the level of the reported interval."""
    return format_change(test.ratio, test.ci_low, test.ci_high, _ci_level(test, ev),
                         significant=test.p_value < ev.alpha_look, decimals=2)


def _wall_change(wall: RatioTest, ev: Evidence) -> str:
    """readfirst's own wall-clock change, at the look's level, "~" when not significant."""
    return format_change(wall.ratio, wall.ci_low, wall.ci_high, wall.ci_level,
                         significant=wall.p_value < ev.alpha_look, decimals=2)


def _stat_reason(verdict: str, test: RatioTest, ev: Evidence) -> str:
    change = _stat_change(test, ev)
    thr = f"{ev.noise_threshold:.0%}" if ev.noise_threshold * 100 == round(
        ev.noise_threshold * 100) else f"{ev.noise_threshold:.1%}"
    p = f"p={test.p_value:.2g} (level of this look {ev.alpha_look:.2g})"
    rounds = f"{test.n} rounds" + (f", {test.screened} screened out as bursts"
                                   if test.screened else "")
    if verdict in ("improved", "regressed"):
        return f"{change}, {p}, {rounds}: significant and beyond the {thr} noise threshold"
    if verdict == "no_change":
        return f"{change}, {rounds}: the CI excludes a gain of {thr}, so no gain worth keeping"
    if ev.seq.stopped == "not_promising":
        return (f"{change}, {p}, {rounds}: not promising (below half the {thr} noise "
                "threshold on the better side), so no more rounds were spent on it")
    return (f"{change}, {p}, {rounds}: undecided at max_rounds "
            "(a quieter machine or duet mode may decide it)")


def _secondary(
    base: list[dict[str, float]], cand: list[dict[str, float]], primary: str
) -> dict[str, dict[str, float | None]]:
    """Median of every other metric per side, and their ratio (recorded, not judged)."""
    out: dict[str, dict[str, float | None]] = {}
    names = [n for n in (base[0] if base else {}) if n != primary]
    for name in names:
        b = [m[name] for m in base if name in m]
        c = [m[name] for m in cand if name in m]
        if not b or not c:
            continue
        bm, cm = summarize(b).median, summarize(c).median
        out[name] = {"base_median": bm, "cand_median": cm, "ratio": cm / bm if bm else None}
    return out


def early_verdict(
    verdict: str, reason: str, metric: dict[str, Any], flags: list[str], **extra: Any
) -> dict[str, Any]:
    """A verdict reached before (or instead of) statistics: refused, crash, checks_failed."""
    return {
        "verdict": verdict,
        "reason": reason,
        "metric": metric,
        "ratio": None,
        "change": None,
        "ci_low": None,
        "ci_high": None,
        "ci_level": None,
        "p_value": None,
        "rounds": 0,
        "base": None,
        "cand": None,
        "flags": sorted(set(flags)),
        **extra,
    }
