"""Tests of readfirst.measure.stats and spending: unit behaviour, error rate under no effect,
power."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from readfirst.core.constants import (
    DEFAULT_ALPHA,
    DEFAULT_MAX_ROUNDS,
    DEFAULT_NOISE_THRESHOLD,
    DEFAULT_ROUNDS,
)
from readfirst.measure.spending import boundaries, nominal_alpha
from readfirst.measure.stats import (
    RatioTest,
    SequentialResult,
    decide,
    median_ci,
    paired_ratio_test,
    plan_looks,
    promising,
    rank_sum_p,
    screen,
    sequential_compare,
    summarize,
    unpaired_ratio_test,
)

RESAMPLES = 2000  # fewer than the default to keep the suite fast; the CI is still stable
SEEDS = 300
NOISE = 0.02  # 2 % multiplicative (lognormal) noise per run


# --- summarize ----------------------------------------------------------------------------


def test_summarize_known_data_with_outlier() -> None:
    data = [10.0, 11.0, 10.0, 12.0, 11.0, 10.0, 50.0]
    s = summarize(data)
    assert s.n == 7
    assert s.median == 11.0
    assert s.mean == pytest.approx(114 / 7)
    assert s.stddev == pytest.approx(float(np.std(data, ddof=1)))
    assert s.cv == pytest.approx(s.stddev / s.mean)
    assert (s.min, s.max) == (10.0, 50.0)
    assert s.outliers == (6,)  # MAD = 1, modified Z of 50 = 0.6745 * 39 = 26.3
    d = s.to_dict()
    assert d["outliers"] == [6] and "samples" not in d
    assert set(d) == {"n", "median", "mean", "stddev", "cv", "min", "max", "outliers"}


def test_summarize_edge_cases() -> None:
    assert summarize([5.0, 5.0, 5.0, 5.0, 9.0]).outliers == ()  # MAD == 0 -> no outliers
    one = summarize([3.0])
    assert (one.n, one.stddev, one.cv) == (1, 0.0, 0.0)
    assert summarize([-1.0, 1.0]).cv == 0.0  # mean == 0
    assert summarize([10.0, 10.5, 9.5, 10.2]).outliers == ()
    with pytest.raises(ValueError):
        summarize([])


# --- spending and plan_looks ----------------------------------------------------------------


def test_boundary_shapes() -> None:
    # O'Brien-Fleming-type: the first look spends a(t) = 2 - 2 Phi(z_{alpha/2} / sqrt(t)), so
    # its critical value is z_{alpha/2} / sqrt(t) exactly; later ones fall towards ~2
    c = boundaries((0.2, 0.4, 0.6, 0.8, 1.0), 0.05, "obrien_fleming")
    assert c[0] == pytest.approx(1.959964 / math.sqrt(0.2), abs=1e-4)
    assert list(c) == sorted(c, reverse=True) and 1.96 < c[-1] < 2.1
    # Pocock-type: nearly flat, all above the single-look 1.96
    p = boundaries((0.2, 0.4, 0.6, 0.8, 1.0), 0.05, "pocock")
    assert max(p) - min(p) < 0.15 and min(p) > 2.2
    assert boundaries((1.0,), 0.05) == pytest.approx((1.959964,), abs=1e-4)
    with pytest.raises(ValueError):
        boundaries((0.5, 0.4), 0.05)


@pytest.mark.parametrize("spending", ["obrien_fleming", "pocock"])
@pytest.mark.parametrize("info", [
    (0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 1.0),  # looks every 5 rounds from 10 to 40
    tuple(n / 40 for n in range(10, 41)),  # the default: a look after each of rounds 10..40
])
def test_boundaries_spend_exactly_alpha(spending: str, info: tuple[float, ...]) -> None:
    """Monte Carlo of the standardised sums: the chance of any crossing is alpha."""
    c = np.array(boundaries(info, 0.05, spending))
    rng = np.random.default_rng(5)
    steps = rng.normal(size=(200_000, len(info))) * np.sqrt(np.diff((0.0, *info)))
    z = np.cumsum(steps, axis=1) / np.sqrt(info)
    crossed = float(np.mean(np.any(np.abs(z) >= c, axis=1)))
    assert crossed == pytest.approx(0.05, abs=0.002)


def test_plan_looks_defaults() -> None:
    plan = plan_looks(DEFAULT_ROUNDS, DEFAULT_MAX_ROUNDS, DEFAULT_ALPHA)
    assert plan.looks == tuple(range(1, 41))  # a look after every round ...
    assert plan.active_looks == tuple(range(10, 41))  # ... that may decide from the 10th on
    assert plan.alpha_at(5) == 0.0 and plan.alpha_at(9) == 0.0 and plan.alpha_at(11) > 0.0
    assert all(0 < a < DEFAULT_ALPHA for a in plan.alphas)
    assert sum(plan.alphas) >= DEFAULT_ALPHA  # nominal levels add to more than alpha ...
    single = plan_looks(5, 10, 0.05)  # ... but one look gets all of it
    assert single.active_looks == (10,) and single.alphas == pytest.approx((0.05,))
    every5 = plan_looks(5, 40, 0.05)
    assert every5.looks == (5, 10, 15, 20, 25, 30, 35, 40)
    assert every5.active_looks == (10, 15, 20, 25, 30, 35, 40)  # the look at 5 is not a look


def test_looks_every_round_cost_little_alpha_per_look() -> None:
    """The spending depends on the rounds done, not on how often one looks: the first look
    gets the same level either way, and the later looks of the every-round schedule are
    stricter, but far from splitting the rest evenly (adjacent looks are highly correlated)."""
    fine = plan_looks(1, 40, DEFAULT_ALPHA)
    coarse = plan_looks(5, 40, DEFAULT_ALPHA)
    assert fine.alpha_at(10) == pytest.approx(coarse.alpha_at(10), rel=1e-6)
    for n in (15, 20, 30, 40):
        assert fine.alpha_at(n) < coarse.alpha_at(n)
        assert fine.alpha_at(n) > 0.4 * coarse.alpha_at(n)
    spent_after_first = DEFAULT_ALPHA - fine.alpha_at(10)
    assert min(fine.alphas[1:]) > 5 * spent_after_first / (len(fine.alphas) - 1)


def test_a_clear_gain_stops_at_the_round_it_crosses() -> None:
    """With a look after every round, a gain that becomes clear at round 14 stops there; looks
    every 5 rounds measure until 15."""
    noisy = [1.05, 0.99, 1.10, 1.00, 1.09, 0.99, 1.10, 1.03, 1.06, 1.02]  # not clear at 10
    ratios = noisy + [1.06, 1.05, 1.06, 1.05, 1.06] * 6
    kwargs: dict[str, Any] = dict(max_rounds=40, alpha=DEFAULT_ALPHA, noise_threshold=0.01,
                                  direction="higher")
    fine = sequential_compare(_replay(ratios), rounds=DEFAULT_ROUNDS, **kwargs)
    coarse = sequential_compare(_replay(ratios), rounds=5, **kwargs)
    assert fine.decision == coarse.decision == "improved"
    assert (len(fine.base), len(coarse.base)) == (14, 15)
    assert fine.looks_done == 5 and coarse.looks_done == 2
    assert fine.test is not None and fine.test.p_value < fine.alpha_look


def _replay(ratios: list[float]) -> Callable[[], tuple[float, float]]:
    it = iter(ratios)
    return lambda: (100.0, 100.0 * next(it))


def test_plan_looks_short_and_bad_arguments() -> None:
    assert plan_looks(5, 5, 0.05).active_looks == (5,)
    assert plan_looks(2, 3, 0.05).active_looks == ()  # fewer than MIN_ROUNDS_FOR_TEST
    for args in ((0, 10, 0.05), (5, 0, 0.05), (5, 10, 0.0), (5, 10, 1.0)):
        with pytest.raises(ValueError):
            plan_looks(*args)
    with pytest.raises(ValueError):
        plan_looks(5, 10, 0.05, "bonferroni")


@given(st.integers(1, 10), st.integers(4, 60), st.sampled_from([0.001, 0.01, 0.05, 0.2]))
def test_plan_looks_nominal_levels_are_valid(rounds: int, max_rounds: int, alpha: float) -> None:
    plan = plan_looks(rounds, max_rounds, alpha)
    assert plan.looks[-1] == max_rounds
    assert all(0.0 < a <= alpha * (1 + 1e-9) for a in plan.alphas)
    assert nominal_alpha(math.inf) == 0.0


# --- one look ---------------------------------------------------------------------------------


def _pairs(seed: int, n: int, effect: float) -> tuple[list[float], list[float]]:
    rng = np.random.default_rng(seed)
    base = 100.0 * np.exp(rng.normal(0.0, NOISE, n))
    cand = 100.0 * effect * np.exp(rng.normal(0.0, NOISE, n))
    return base.tolist(), cand.tolist()


def test_paired_ratio_test_is_a_t_interval_on_the_log_ratios() -> None:
    base, cand = _pairs(1, 15, 1.03)
    a = paired_ratio_test(base, cand, 0.01)
    assert a == paired_ratio_test(base, cand, 0.01)  # deterministic
    from scipy.stats import t as student_t

    x = screen(np.log(np.array(cand) / np.array(base)))
    assert a.screened == 15 - x.size and a.n == 15
    assert a.ratio == pytest.approx(math.exp(x.mean()))
    half = student_t.ppf(0.995, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size)
    assert a.ci_low == pytest.approx(math.exp(x.mean() - half))
    assert a.ci_high == pytest.approx(math.exp(x.mean() + half))
    assert a.ci_level == pytest.approx(0.99)
    assert set(a.to_dict()) == {"n", "ratio", "ci_low", "ci_high", "ci_level", "p_value",
                                "screened", "median_ratio"}
    wider = paired_ratio_test(base, cand, 0.001)
    assert wider.ci_low <= a.ci_low and a.ci_high <= wider.ci_high


def test_a_burst_on_one_side_is_screened_out() -> None:
    base, cand = _pairs(2, 12, 1.05)
    clean = paired_ratio_test(base, cand, 0.01)
    cand[4] /= 1.4  # a noisy neighbour slowed one candidate run by 40 %
    hit = paired_ratio_test(base, cand, 0.01)
    assert hit.screened == 1 and hit.n == 12
    assert hit.ratio == pytest.approx(clean.ratio, abs=0.01)
    assert len(screen(np.array([0.0, 0.01, -0.01, 0.005, 0.3]))) == 4
    assert len(screen(np.zeros(5))) == 5  # MAD == 0: nothing to screen against


def test_paired_ratio_test_identical_samples_and_bad_values() -> None:
    same = paired_ratio_test([100.0] * 10, [100.0] * 10, 0.01)
    assert (same.p_value, same.ratio, same.ci_low, same.ci_high) == (1.0, 1.0, 1.0, 1.0)
    constant = paired_ratio_test([100.0] * 10, [110.0] * 10, 0.01)
    assert constant.p_value < 1e-9 and constant.ci_low == pytest.approx(1.1)
    for base, cand in (([1.0, 2.0], [1.0]), ([1.0, 0.0], [1.0, 1.0]), ([1.0, -2.0], [1.0, 1.0]),
                       ([1.0, math.nan], [1.0, 1.0]), ([1.0, 1.0], [math.inf, 1.0]), ([], [])):
        with pytest.raises(ValueError):
            paired_ratio_test(base, cand, 0.01)
    with pytest.raises(ValueError):
        paired_ratio_test([1.0, 2.0], [1.0, 2.0], 0.0)


def test_rank_sum_p_exact_with_and_without_ties() -> None:
    from scipy.stats import mannwhitneyu

    x, y = np.array([1.0, 2, 3, 4, 5]), np.array([6.0, 7, 8, 9, 10.5])
    assert rank_sum_p(x, y) == pytest.approx(mannwhitneyu(x, y, method="exact").pvalue)
    tied_x, tied_y = np.array([1.0, 2, 2, 3, 5, 5]), np.array([2.0, 4, 5, 6, 6, 7])
    p = rank_sum_p(tied_x, tied_y)
    # the exact conditional distribution given the ties, by brute force over all splits
    from itertools import combinations

    from scipy.stats import rankdata

    ranks = rankdata(np.concatenate([tied_x, tied_y]))
    u = [sum(ranks[list(c)]) - 21 for c in combinations(range(12), 6)]
    u1 = sum(ranks[:6]) - 21
    small = min(u1, 36 - u1)
    assert p == pytest.approx(min(1.0, 2 * np.mean(np.array(u) <= small + 1e-9)))
    assert rank_sum_p(np.ones(4), np.ones(5)) == 1.0
    big = np.arange(30.0)
    assert 0 < rank_sum_p(big, big + 3) < 1  # beyond the exact limit: normal approximation


def test_unpaired_ratio_test_and_median_ci() -> None:
    old = [10.0, 10.2, 9.9, 10.1, 10.0, 10.3, 9.8, 10.0]
    new = [v * 0.8 for v in old]
    t = unpaired_ratio_test(old, new, 0.05, resamples=RESAMPLES)
    assert t == unpaired_ratio_test(old, new, 0.05, resamples=RESAMPLES)  # seeded
    assert t.ratio == pytest.approx(0.8) and t.ci_low <= 0.8 <= t.ci_high < 1
    assert t.p_value < 0.001 and t.ci_level == pytest.approx(0.95)
    assert median_ci(old, 0.95) == (9.8, 10.3)  # order statistics 1 and 8: 99.2 %
    assert median_ci(old, 0.9) == (9.9, 10.2)  # 2 and 7: 93 %
    assert median_ci(old[:5], 0.95) == (None, None)  # 5 samples cannot reach 95 %


# --- decide -------------------------------------------------------------------------------


def _t(lo: float, hi: float, p: float, ratio: float | None = None) -> RatioTest:
    mid = (lo + hi) / 2 if ratio is None else ratio
    return RatioTest(n=10, ratio=mid, ci_low=lo, ci_high=hi, ci_level=0.99, p_value=p)


@pytest.mark.parametrize(
    ("test", "higher", "lower"),
    [
        (_t(1.03, 1.07, 0.001), "improved", "regressed"),
        (_t(0.93, 0.97, 0.001), "regressed", "improved"),
        (_t(1.002, 1.04, 0.001), "improved", "regressed"),  # CI excludes 1, estimate > 1 %
        (_t(1.001, 1.009, 0.001), "no_change", "no_change"),  # real but below the threshold
        (_t(0.99, 1.07, 0.5), "continue", "continue"),  # not significant, could be a gain
        (_t(0.985, 1.008, 0.5, 0.996), "no_change", "continue"),  # excludes a 1 % gain
        (_t(0.992, 1.015, 0.5, 1.004), "continue", "no_change"),  # excludes a 1 % time cut
        (_t(0.95, 1.005, 0.5), "continue", "continue"),  # no gain, but maybe a 2 % loss
        (_t(0.995, 1.005, 0.5), "no_change", "no_change"),
    ],
)
def test_decide_both_directions(test: RatioTest, higher: str, lower: str) -> None:
    assert decide(test, "higher", 0.01, 0.01) == higher
    assert decide(test, "lower", 0.01, 0.01) == lower


def test_decide_zero_threshold_and_bad_direction() -> None:
    assert decide(_t(0.999, 1.001, 0.5), "higher", 0.0, 0.01) == "continue"
    with pytest.raises(ValueError):
        decide(_t(0.999, 1.001, 0.5), "faster", 0.0, 0.01)  # type: ignore[arg-type]


def test_promising_uses_the_mean_or_the_median_ratio() -> None:
    assert promising(_t(0.99, 1.02, 0.5, ratio=1.006), "higher", 0.01)
    assert not promising(_t(0.99, 1.02, 0.5, ratio=1.004), "higher", 0.01)
    assert promising(_t(0.98, 1.01, 0.5, ratio=0.994), "lower", 0.01)
    assert not promising(_t(0.95, 1.0, 0.5, ratio=0.98), "higher", 0.01)  # a likely loss
    burst = RatioTest(10, 1.001, 0.99, 1.03, 0.99, 0.5, median_ratio=1.04)
    assert promising(burst, "higher", 0.01)


# --- sequential_compare -------------------------------------------------------------------


def _drawer(seed: int, effect: float, noise: float = NOISE) -> Callable[[], tuple[float, float]]:
    rng = np.random.default_rng(seed)

    def draw() -> tuple[float, float]:
        b, c = 100.0 * np.exp(rng.normal(0.0, noise, 2))
        return float(b), float(c * effect)

    return draw


def _run(seed: int, effect: float, direction: str, thr: float) -> SequentialResult:
    return sequential_compare(
        _drawer(seed, effect),
        rounds=DEFAULT_ROUNDS,
        max_rounds=DEFAULT_MAX_ROUNDS,
        alpha=DEFAULT_ALPHA,
        noise_threshold=thr,
        direction=direction,  # type: ignore[arg-type]
    )


def test_sequential_identical_values_is_no_change_at_first_real_look() -> None:
    res = sequential_compare(lambda: (1.0, 1.0), rounds=5, max_rounds=30, alpha=0.05,
                             noise_threshold=0.01, direction="lower")
    assert res.decision == "no_change" and res.looks_done == 1
    assert len(res.base) == len(res.cand) == 10  # the look at 5 rounds is not a look
    assert res.test is not None and res.test.n == 10 and res.alpha_look > 0


def test_sequential_without_possible_look_is_inconclusive() -> None:
    res = sequential_compare(lambda: (1.0, 2.0), rounds=1, max_rounds=3, alpha=0.05,
                             noise_threshold=0.01, direction="higher")
    assert (res.decision, res.test, res.looks_done, len(res.base)) == ("inconclusive", None, 0, 3)


def test_sequential_stops_early_and_keeps_samples() -> None:
    res = _run(3, 1.20, "higher", DEFAULT_NOISE_THRESHOLD)
    assert res.decision == "improved" and res.looks_done == 1 and len(res.base) == 10
    assert res.stopped == "decided"


def test_sequential_stops_when_not_promising() -> None:
    # +0.2 % with +-3 % swings: the CI still holds a 1 % gain, but the estimate is below half
    # of it, so no more rounds are spent
    swings = iter([1.03, 0.974] * 50)
    res = sequential_compare(lambda: (100.0, 100.0 * 1.002 * next(swings)), rounds=5,
                             max_rounds=40, alpha=0.007, noise_threshold=0.01,
                             direction="higher")
    assert (res.decision, res.stopped, len(res.base)) == ("inconclusive", "not_promising", 10)
    assert res.test is not None and res.test.ci_high > 1.01


def test_sequential_inconclusive_at_max_rounds() -> None:
    res = sequential_compare(_drawer(11, 1.02, noise=0.08), rounds=5, max_rounds=10,
                             alpha=0.05, noise_threshold=0.01, direction="higher")
    assert (res.decision, res.stopped, res.looks_done, len(res.base)) == (
        "inconclusive", "max_rounds", 1, 10)


# --- statistical properties ---------------------------------------------------------------


def _rate(decisions: list[str], wanted: set[str]) -> float:
    return sum(d in wanted for d in decisions) / len(decisions)


def test_a_vs_a_false_positive_rate_at_most_alpha() -> None:
    alpha = 0.05  # a larger alpha than the default, so that SEEDS runs can see the rate
    bound = alpha + 2.5 * math.sqrt(alpha * (1 - alpha) / SEEDS)
    wrong = {"improved", "regressed"}
    decisions = [sequential_compare(_drawer(seed, 1.0), rounds=5, max_rounds=40, alpha=alpha,
                                    noise_threshold=0.0, direction="higher").decision
                 for seed in range(SEEDS)]
    assert _rate(decisions, wrong) <= bound


@pytest.mark.parametrize(
    ("effect", "direction", "expected"),
    [
        (1.05, "higher", "improved"),  # throughput 5 % higher
        (0.95, "lower", "improved"),  # time 5 % smaller
        (0.95, "higher", "regressed"),  # throughput 5 % lower
        (1.05, "lower", "regressed"),  # time 5 % larger
    ],
)
def test_true_5_percent_effect_is_found(effect: float, direction: str, expected: str) -> None:
    decisions = [
        _run(1000 + seed, effect, direction, DEFAULT_NOISE_THRESHOLD).decision
        for seed in range(SEEDS)
    ]
    # gains are followed until decided; a loss is called at once or left undecided (it is no
    # keeper either way), never "no_change"
    assert _rate(decisions, {expected}) >= (0.95 if expected == "improved" else 0.75)
    assert _rate(decisions, {expected, "inconclusive"}) == 1.0
