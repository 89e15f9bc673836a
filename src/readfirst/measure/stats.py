"""Statistics engine of ``readfirst compare``: is the candidate faster than the base beyond noise?

Measurement model. Base and candidate are measured in *rounds* (RMIT: randomised multiple
interleaved trials); round ``i`` runs both revisions once, in random order, so ``base[i]`` and
``cand[i]`` share the machine state of that moment. Each round yields one paired log ratio
``x_i = log(cand_i / base_i)``; drift and slow spells that hit both runs of a round cancel.

Per look (after a batch of rounds):

* screening: rounds whose log ratio is a gross outlier (modified Z-score above 4, Iglewicz &
  Hoaglin) are left out: a noisy neighbour slowed one side only. The rule is symmetric, so it
  removes as much from either tail when nothing changed;
* effect: ``exp(mean)`` of the screened log ratios; interval: the t-interval of that mean at the
  look's nominal level; p: the one-sample t-test. Deterministic, so anyone recomputes a verdict
  from the raw samples in the journal;
* decision: "improved"/"regressed" needs the interval to exclude 1 (significant at the look's
  level) and the estimate beyond the noise threshold on that side; "no_change" (futility) as
  soon as the interval excludes the smallest gain worth keeping (``1 + threshold`` on the better
  side); otherwise, if the estimate is still *promising* (at least half the threshold on the
  better side), measure another batch; if not, stop "inconclusive".

Looking repeatedly without cheating: the looks spend alpha with a Lan-DeMets spending function
(``spending.py``; Pocock-type by default, O'Brien-Fleming-type available). Their critical
values make the chance of any false verdict over all looks ``alpha``, and the intervals are
repeated confidence intervals: all of them cover the true ratio at once with probability
``1 - alpha``, so the interval reported at the stopping look is a ``1 - alpha`` interval.

`readfirst judge` (results measured elsewhere, nothing pairs the runs) uses
``unpaired_ratio_test``: ratio of medians, seeded percentile-bootstrap CI, Wilcoxon rank-sum p.

Per-side summaries flag outliers with the modified Z-score for display only.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from scipy.stats import binom, mannwhitneyu, rankdata
from scipy.stats import t as student_t

from readfirst.core.constants import (
    BOOTSTRAP_RESAMPLES,
    BOOTSTRAP_SEED,
    DEFAULT_SPENDING,
    FIRST_LOOK_ROUNDS,
    MIN_ROUNDS_FOR_TEST,
    OUTLIER_MODIFIED_Z,
    PROMISING_FRACTION,
    RANK_SUM_EXACT_LIMIT,
    SCREEN_MODIFIED_Z,
)
from readfirst.measure.spending import SPENDING, boundaries, nominal_alpha

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


@dataclass(frozen=True)
class LookPlan:
    looks: tuple[int, ...]  # planned cumulative round counts; the last equals max_rounds
    alpha: float  # family-wise alpha over all looks
    active_looks: tuple[int, ...]  # the looks at which a verdict is possible (they spend alpha)
    alphas: tuple[float, ...]  # nominal two-sided level of each active look
    spending: str = DEFAULT_SPENDING

    def alpha_at(self, n: int) -> float:
        """Nominal alpha of the look at n rounds; 0.0 for a look that cannot decide."""
        return dict(zip(self.active_looks, self.alphas, strict=True)).get(n, 0.0)


def plan_looks(rounds: int, max_rounds: int, alpha: float,
               spending: str = DEFAULT_SPENDING) -> LookPlan:
    """Looks at rounds, 2*rounds, ... capped at max_rounds; the looks from FIRST_LOOK_ROUNDS on
    (or the last, if max_rounds is smaller) decide, with Lan-DeMets alpha spending over them."""
    if rounds < 1 or max_rounds < 1:
        raise ValueError(f"rounds and max_rounds must be >= 1 (got {rounds}, {max_rounds})")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1) (got {alpha})")
    if spending not in SPENDING:
        raise ValueError(f"spending must be one of {', '.join(SPENDING)} (got {spending!r})")
    looks = (*range(rounds, max_rounds, rounds), max_rounds)
    first = min(FIRST_LOOK_ROUNDS, max_rounds)
    active = tuple(n for n in looks if n >= max(first, MIN_ROUNDS_FOR_TEST))
    info = tuple(n / max_rounds for n in active)
    alphas = tuple(nominal_alpha(c) for c in boundaries(info, alpha, spending)) if active else ()
    return LookPlan(looks=looks, alpha=alpha, active_looks=active, alphas=alphas,
                    spending=spending)


# --- one look: paired ratio test ---------------------------------------------------------


@dataclass(frozen=True)
class RatioTest:
    n: int  # rounds (paired) or the smaller side's samples (unpaired)
    ratio: float  # cand/base: exp(mean screened log ratio) (paired); ratio of medians (unpaired)
    ci_low: float
    ci_high: float
    ci_level: float  # nominal level of this interval
    p_value: float
    screened: int = 0  # rounds left out as hit by a burst on one side (paired)
    median_ratio: float = math.nan  # median of the raw paired ratios (paired)

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "ratio": self.ratio,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "ci_level": self.ci_level,
            "p_value": self.p_value,
            "screened": self.screened,
            "median_ratio": self.median_ratio,
        }


def _positive_finite(name: str, values: Sequence[float]) -> np.ndarray:
    x = np.asarray(values, dtype=float)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence of numbers")
    if not np.all(np.isfinite(x)) or np.any(x <= 0):
        raise ValueError(f"{name} values must be finite and > 0")
    return x


def screen(log_ratios: np.ndarray) -> np.ndarray:
    """The log ratios without gross outliers (modified Z-score above SCREEN_MODIFIED_Z).

    A round where a noisy neighbour slowed only one side gives a log ratio many MADs from the
    rest; it says nothing about the change. The rule is the same for both sides and every
    candidate, so under "no change" it removes as many rounds from each tail.
    """
    median = float(np.median(log_ratios))
    mad = float(np.median(np.abs(log_ratios - median)))
    if mad == 0.0:
        return log_ratios
    z = _MODIFIED_Z_SCALE * np.abs(log_ratios - median) / mad
    return log_ratios[z <= SCREEN_MODIFIED_Z]


def paired_ratio_test(base: Sequence[float], cand: Sequence[float],
                      alpha_look: float) -> RatioTest:
    """The paired log ratios log(cand_i / base_i), screened for bursts, then a t-interval of
    their mean at level 1 - alpha_look and the two-sided one-sample t-test p-value.
    Deterministic: anyone recomputes it from the raw samples."""
    b = _positive_finite("base", base)
    c = _positive_finite("cand", cand)
    if b.size != c.size:
        raise ValueError(f"base and cand must pair up (got {b.size} and {c.size} values)")
    if not 0.0 < alpha_look < 1.0:
        raise ValueError(f"alpha_look must be in (0, 1) (got {alpha_look})")
    log_r = np.log(c / b)
    kept = screen(log_r)
    mean = float(np.mean(kept))
    sd = float(np.std(kept, ddof=1)) if kept.size >= 2 else 0.0
    if sd == 0.0 or kept.size < 2:  # identical ratios: no spread left to test against
        p_value = 1.0 if mean == 0.0 else 0.0
        lo = hi = mean
    else:
        se = sd / math.sqrt(kept.size)
        q = float(student_t.ppf(1.0 - alpha_look / 2.0, kept.size - 1))
        lo, hi = mean - q * se, mean + q * se
        p_value = float(2.0 * student_t.sf(abs(mean) / se, kept.size - 1))
    return RatioTest(n=int(b.size), ratio=math.exp(mean), ci_low=math.exp(lo),
                     ci_high=math.exp(hi), ci_level=1.0 - alpha_look, p_value=p_value,
                     screened=int(b.size - kept.size),
                     median_ratio=float(np.exp(np.median(log_r))))


def unpaired_ratio_test(old: Sequence[float], new: Sequence[float], alpha: float, *,
                        seed: int = BOOTSTRAP_SEED,
                        resamples: int = BOOTSTRAP_RESAMPLES) -> RatioTest:
    """Nothing pairs the runs: ratio of medians new/old, its seeded percentile-bootstrap CI at
    level 1 - alpha (each side resampled on its own) and the two-sided Wilcoxon rank-sum
    (Mann-Whitney U) p-value."""
    a = _positive_finite("old", old)
    b = _positive_finite("new", new)
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1) (got {alpha})")
    p_value = rank_sum_p(a, b)
    rng = np.random.default_rng(seed)
    med_a = np.median(a[rng.integers(0, a.size, size=(resamples, a.size))], axis=1)
    med_b = np.median(b[rng.integers(0, b.size, size=(resamples, b.size))], axis=1)
    lo, hi = np.quantile(med_b / med_a, [alpha / 2.0, 1.0 - alpha / 2.0])
    return RatioTest(n=int(min(a.size, b.size)), ratio=float(np.median(b) / np.median(a)),
                     ci_low=float(lo), ci_high=float(hi), ci_level=1.0 - alpha,
                     p_value=p_value)


def rank_sum_p(x: np.ndarray, y: np.ndarray) -> float:
    """Two-sided Wilcoxon rank-sum (Mann-Whitney U) p-value, computed as benchstat does: the
    exact distribution of U given the ties (midranks) while both sides have at most
    RANK_SUM_EXACT_LIMIT samples, else the normal approximation with tie and continuity
    corrections; 1.0 when every value is equal."""
    both = np.concatenate([x, y])
    if np.all(both == both[0]):
        return 1.0
    if max(x.size, y.size) > RANK_SUM_EXACT_LIMIT:
        return float(mannwhitneyu(x, y, alternative="two-sided").pvalue)
    doubled = np.rint(2.0 * rankdata(both)).astype(np.int64)  # midranks are halves
    n1, top = x.size, int(doubled.sum())
    # counts[k, s]: ways to pick k of the values seen so far with doubled rank sum s
    counts = np.zeros((n1 + 1, top + 1))
    counts[0, 0] = 1.0
    for r in doubled:
        counts[1:, r:] = counts[1:, r:] + counts[:-1, : top + 1 - r]
    dist = counts[n1] / counts[n1].sum()
    offset = n1 * (n1 + 1)  # doubled n1(n1+1)/2: U1 = W1 - n1(n1+1)/2
    u1 = int(doubled[:n1].sum()) - offset
    u2 = 2 * n1 * y.size - u1
    if u1 == u2:
        return 1.0
    small = min(u1, u2)
    return float(min(1.0, 2.0 * dist[: small + offset + 1].sum()))


def median_ci(samples: Sequence[float], level: float) -> tuple[float | None, float | None]:
    """Distribution-free CI of one side's median from order statistics (binomial); (None,
    None) when there are too few samples to reach the level (fewer than 6 at 95 %)."""
    x = np.sort(np.asarray(samples, dtype=float))
    n = x.size
    best: tuple[float | None, float | None] = (None, None)
    for k in range(n // 2, 0, -1):  # widen from the middle until the coverage is reached
        coverage = 1.0 - 2.0 * float(binom.cdf(k - 1, n, 0.5))
        if coverage >= level:
            return float(x[k - 1]), float(x[n - k])
    return best


def decide(
    test: RatioTest, direction: Direction, noise_threshold: float, alpha_look: float
) -> Decision:
    """improved / regressed: significant (p < alpha_look, the CI excludes 1) and the estimate
    beyond the noise threshold on that side. no_change (futility): the CI excludes the smallest
    gain worth keeping (1 +- threshold on the better side) and the estimate is within the
    threshold, so more rounds cannot make it a keeper; otherwise continue."""
    if direction not in ("higher", "lower"):
        raise ValueError(f"direction must be 'higher' or 'lower' (got {direction!r})")
    if noise_threshold < 0 or math.isnan(noise_threshold):
        raise ValueError(f"noise_threshold must be >= 0 (got {noise_threshold})")
    up = 1.0 + noise_threshold
    down = 1.0 - noise_threshold
    significant = test.p_value < alpha_look
    if significant and test.ci_low > 1.0 and test.ratio >= up:
        return "improved" if direction == "higher" else "regressed"
    if significant and test.ci_high < 1.0 and test.ratio <= down:
        return "regressed" if direction == "higher" else "improved"
    futile = test.ci_high < up if direction == "higher" else test.ci_low > down
    if futile and down < test.ratio < up:
        return "no_change"
    return "continue"


def promising(test: RatioTest, direction: Direction, noise_threshold: float) -> bool:
    """Worth more rounds: the estimate (the screened mean, or the median ratio when a burst
    slipped through the screen) reaches PROMISING_FRACTION of the smallest gain worth keeping
    on the better side. Likely losses are not measured further: they are no keepers."""
    margin = PROMISING_FRACTION * noise_threshold
    estimates = [test.ratio] + ([] if math.isnan(test.median_ratio) else [test.median_ratio])
    if direction == "higher":
        return max(estimates) >= 1.0 + margin
    return min(estimates) <= 1.0 - margin


# --- the sequential driver ----------------------------------------------------------------


@dataclass(frozen=True)
class SequentialResult:
    decision: FinalDecision
    test: RatioTest | None  # the test at the last look (None if no look happened)
    base: list[float]
    cand: list[float]
    looks_done: int
    alpha_look: float = 0.0  # nominal level of the last look
    stopped: str = "decided"  # decided | not_promising | max_rounds


def sequential_compare(
    draw_round: Callable[[], tuple[float, float]],
    *,
    rounds: int,
    max_rounds: int,
    alpha: float,
    noise_threshold: float,
    direction: Direction,
    spending: str = DEFAULT_SPENDING,
) -> SequentialResult:
    """Draw rounds in batches, test at each spending look, stop at the first decision, or as
    inconclusive once the estimate is no longer promising; inconclusive at max_rounds."""
    plan = plan_looks(rounds, max_rounds, alpha, spending)
    base: list[float] = []
    cand: list[float] = []
    test: RatioTest | None = None
    looks_done = 0
    alpha_look = 0.0
    for target in plan.looks:
        while len(base) < target:
            b, c = draw_round()
            base.append(float(b))
            cand.append(float(c))
        if plan.alpha_at(target) <= 0.0:
            continue
        alpha_look = plan.alpha_at(target)
        test = paired_ratio_test(base, cand, alpha_look)
        looks_done += 1
        decision = decide(test, direction, noise_threshold, alpha_look)
        if decision != "continue":
            return SequentialResult(decision, test, base, cand, looks_done, alpha_look)
        if target < max_rounds and not promising(test, direction, noise_threshold):
            return SequentialResult("inconclusive", test, base, cand, looks_done, alpha_look,
                                    "not_promising")
    return SequentialResult("inconclusive", test, base, cand, looks_done, alpha_look,
                            "max_rounds")
