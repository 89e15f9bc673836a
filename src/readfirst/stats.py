"""Statistics engine of ``readfirst compare``: is the candidate faster than the base beyond noise?

Measurement model. Base and candidate are measured in *rounds* (RMIT: randomised multiple
interleaved trials); round ``i`` runs both revisions once, in random order, so ``base[i]`` and
``cand[i]`` share the machine state of that moment. Each round yields one paired ratio
``r_i = cand_i / base_i``; drift and noisy neighbours that hit both runs of a round cancel.

Per look (after a batch of rounds):

* effect: the median of the paired ratios (robust to the odd slow run);
* test: two-sided Wilcoxon signed-rank test on ``log r_i`` (``H0``: the log ratios are symmetric
  around 0); exact for small ``n`` without ties, via :func:`scipy.stats.wilcoxon`;
* interval: percentile bootstrap CI of the median ratio (vectorised, fixed seed, so anyone can
  recompute a verdict from the raw samples);
* decision (criterion.rs' rule): "improved"/"regressed" needs ``p < alpha_look`` AND the whole CI
  beyond the noise threshold on that side; "no_change" needs the whole CI inside
  ``(1 - thr, 1 + thr)``; otherwise measure another batch.

Sequential looks and alpha spending. Looking after every batch and stopping at the first
significant result inflates the false-positive rate unless every look pays for itself. We use
Bonferroni alpha spending: each look that may decide gets ``alpha_per_look = alpha / k`` (``k``
such looks), and its CI has level ``1 - alpha_per_look``. By the union bound the probability that
*any* look rejects a true null (or that *any* interval misses the true median ratio) is at most
``k * alpha / k = alpha``; the intervals therefore form a confidence sequence at level
``1 - alpha``, which covers both directions of the decision: an "improved"/"regressed" verdict and
a "no_change" verdict are each wrong with probability <= alpha overall (the interval part holds
to the extent each bootstrap interval reaches its nominal coverage; the percentile bootstrap of a
median is approximate at small ``n``, the rank test is exact).

A look that cannot reject spends nothing. The exact two-sided signed-rank p-value is at least
``2 / 2**n`` (all differences of one sign), e.g. 0.0625 at ``n = 5``. A planned look whose floor
is already ``>= alpha_per_look`` can never reject, so it is dropped from the count: start with all
planned looks, set ``alpha_per_look = alpha / count``, drop the looks whose floor reaches it,
recompute, repeat until stable. This depends only on the schedule ``(rounds, max_rounds, alpha)``,
never on data, so the union bound still holds. A dropped look is not a look at all: no test, no
decision of any kind (not even "no_change"). With the defaults (5, 30, 0.05) the look at 5 rounds
is dropped and the looks at 10, 15, 20, 25, 30 rounds get alpha 0.01 each.

Per-side summaries flag outliers with the modified Z-score (Iglewicz & Hoaglin) for display only;
the decision is rank/median based and needs no outlier removal.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from scipy.stats import wilcoxon

from readfirst.constants import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, OUTLIER_MODIFIED_Z

Direction = Literal["higher", "lower"]
Decision = Literal["improved", "regressed", "no_change", "continue"]
FinalDecision = Literal["improved", "regressed", "no_change", "inconclusive"]

_MODIFIED_Z_SCALE = 0.6745  # Phi^-1(0.75): makes the MAD consistent with a normal stddev


# --- per-side summary ---------------------------------------------------------------------


@dataclass(frozen=True)
class SideSummary:
    n: int
    median: float
    mean: float
    stddev: float
    cv: float
    min: float
    max: float
    outliers: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "median": self.median,
            "mean": self.mean,
            "stddev": self.stddev,
            "cv": self.cv,
            "min": self.min,
            "max": self.max,
            "outliers": list(self.outliers),
        }


def summarize(samples: Sequence[float]) -> SideSummary:
    """Descriptive statistics of one side; outliers by modified Z-score (none when MAD == 0)."""
    x = np.asarray(samples, dtype=float)
    if x.ndim != 1 or x.size == 0:
        raise ValueError("summarize needs a non-empty 1-D sequence of numbers")
    median = float(np.median(x))
    mean = float(np.mean(x))
    stddev = float(np.std(x, ddof=1)) if x.size >= 2 else 0.0
    cv = stddev / abs(mean) if mean != 0 else 0.0
    mad = float(np.median(np.abs(x - median)))
    outliers: tuple[int, ...] = ()
    if mad > 0:
        z = _MODIFIED_Z_SCALE * np.abs(x - median) / mad
        outliers = tuple(int(i) for i in np.flatnonzero(z > OUTLIER_MODIFIED_Z))
    return SideSummary(
        n=int(x.size),
        median=median,
        mean=mean,
        stddev=stddev,
        cv=cv,
        min=float(np.min(x)),
        max=float(np.max(x)),
        outliers=outliers,
    )


# --- look schedule and alpha spending ------------------------------------------------------


def signed_rank_p_floor(n: int) -> float:
    """Smallest exact two-sided Wilcoxon signed-rank p-value with n non-zero differences."""
    if n < 1:
        return 1.0
    return min(1.0, 2.0 ** (1 - n))


@dataclass(frozen=True)
class LookPlan:
    looks: tuple[int, ...]  # planned cumulative round counts; the last equals max_rounds
    alpha: float  # family-wise alpha
    alpha_per_look: float  # alpha / len(active_looks) (0.0 when no look can reject)
    active_looks: tuple[int, ...]  # the looks at which a rejection is possible (they spend alpha)

    def alpha_at(self, n: int) -> float:
        """Alpha of a look at n rounds; 0.0 for a look that cannot reject (or is not planned)."""
        return self.alpha_per_look if n in self.active_looks else 0.0


def plan_looks(rounds: int, max_rounds: int, alpha: float) -> LookPlan:
    """Looks at rounds, 2*rounds, ... capped at max_rounds, with Bonferroni alpha spending."""
    if rounds < 1 or max_rounds < 1:
        raise ValueError(f"rounds and max_rounds must be >= 1 (got {rounds}, {max_rounds})")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1) (got {alpha})")
    looks = (*range(rounds, max_rounds, rounds), max_rounds)
    active = looks
    while True:
        per_look = alpha / len(active) if active else 0.0
        kept = tuple(n for n in active if signed_rank_p_floor(n) < per_look)
        if kept == active:
            break
        active = kept
    return LookPlan(looks=looks, alpha=alpha, alpha_per_look=per_look, active_looks=active)


# --- one look: paired ratio test ---------------------------------------------------------


@dataclass(frozen=True)
class RatioTest:
    n: int
    ratio: float  # median of cand_i / base_i
    ci_low: float
    ci_high: float
    ci_level: float
    p_value: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "ratio": self.ratio,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "ci_level": self.ci_level,
            "p_value": self.p_value,
        }


def _positive_finite(name: str, values: Sequence[float]) -> np.ndarray:
    x = np.asarray(values, dtype=float)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence of numbers")
    if not np.all(np.isfinite(x)) or np.any(x <= 0):
        raise ValueError(f"{name} values must be finite and > 0")
    return x


def paired_ratio_test(
    base: Sequence[float],
    cand: Sequence[float],
    alpha_look: float,
    *,
    seed: int = BOOTSTRAP_SEED,
    resamples: int = BOOTSTRAP_RESAMPLES,
) -> RatioTest:
    """Median paired ratio, its bootstrap CI at level 1 - alpha_look, Wilcoxon p on log ratios."""
    b = _positive_finite("base", base)
    c = _positive_finite("cand", cand)
    if b.size != c.size:
        raise ValueError(f"base and cand must pair up (got {b.size} and {c.size} values)")
    if not 0.0 < alpha_look < 1.0:
        raise ValueError(f"alpha_look must be in (0, 1) (got {alpha_look})")
    if resamples < 1:
        raise ValueError("resamples must be >= 1")
    ratios = c / b
    n = int(ratios.size)
    log_r = np.log(ratios)
    if np.all(log_r == 0.0):
        p_value = 1.0
    else:
        p_value = float(wilcoxon(log_r, alternative="two-sided").pvalue)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(resamples, n))
    medians = np.median(ratios[idx], axis=1)
    lo, hi = np.quantile(medians, [alpha_look / 2.0, 1.0 - alpha_look / 2.0])
    return RatioTest(
        n=n,
        ratio=float(np.median(ratios)),
        ci_low=float(lo),
        ci_high=float(hi),
        ci_level=1.0 - alpha_look,
        p_value=p_value,
    )


def decide(
    test: RatioTest, direction: Direction, noise_threshold: float, alpha_look: float
) -> Decision:
    """improved/regressed: significant AND whole CI beyond the threshold; no_change: CI inside."""
    if direction not in ("higher", "lower"):
        raise ValueError(f"direction must be 'higher' or 'lower' (got {direction!r})")
    if noise_threshold < 0 or math.isnan(noise_threshold):
        raise ValueError(f"noise_threshold must be >= 0 (got {noise_threshold})")
    up = 1.0 + noise_threshold
    down = 1.0 - noise_threshold
    significant = test.p_value < alpha_look
    if significant and test.ci_low > up:
        return "improved" if direction == "higher" else "regressed"
    if significant and test.ci_high < down:
        return "regressed" if direction == "higher" else "improved"
    if down < test.ci_low and test.ci_high < up:
        return "no_change"
    return "continue"


# --- the sequential driver ----------------------------------------------------------------


@dataclass(frozen=True)
class SequentialResult:
    decision: FinalDecision
    test: RatioTest | None  # the test at the last look (None if no look happened)
    base: list[float]
    cand: list[float]
    looks_done: int


def sequential_compare(
    draw_round: Callable[[], tuple[float, float]],
    *,
    rounds: int,
    max_rounds: int,
    alpha: float,
    noise_threshold: float,
    direction: Direction,
    seed: int = BOOTSTRAP_SEED,
    resamples: int = BOOTSTRAP_RESAMPLES,
) -> SequentialResult:
    """Draw rounds in batches, look at each alpha-spending look, stop at the first decision.

    Looks with zero alpha (the rank test cannot reject there) are skipped entirely. If no look
    can reject at all (e.g. max_rounds=5 at alpha=0.05) all rounds are still drawn and the
    result is "inconclusive" with ``test=None``; callers can check ``plan_looks(...)`` first.
    """
    plan = plan_looks(rounds, max_rounds, alpha)
    base: list[float] = []
    cand: list[float] = []
    test: RatioTest | None = None
    looks_done = 0
    for target in plan.looks:
        while len(base) < target:
            b, c = draw_round()
            base.append(float(b))
            cand.append(float(c))
        alpha_look = plan.alpha_at(target)
        if alpha_look <= 0.0:
            continue
        test = paired_ratio_test(base, cand, alpha_look, seed=seed, resamples=resamples)
        looks_done += 1
        decision = decide(test, direction, noise_threshold, alpha_look)
        if decision != "continue":
            return SequentialResult(decision, test, base, cand, looks_done)
    return SequentialResult("inconclusive", test, base, cand, looks_done)
