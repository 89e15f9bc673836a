"""Tests of readfirst.stats: unit behaviour, error rate under no effect, power at 5 %."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from readfirst.constants import (
    DEFAULT_ALPHA,
    DEFAULT_MAX_ROUNDS,
    DEFAULT_NOISE_THRESHOLD,
    DEFAULT_ROUNDS,
)
from readfirst.stats import (
    RatioTest,
    SequentialResult,
    decide,
    paired_ratio_test,
    plan_looks,
    sequential_compare,
    signed_rank_p_floor,
    summarize,
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


# --- plan_looks ---------------------------------------------------------------------------


def test_plan_looks_defaults() -> None:
    plan = plan_looks(5, 30, 0.05)
    assert plan.looks == (5, 10, 15, 20, 25, 30)
    # n=5: the exact floor 2/2^5 = 0.0625 can never beat alpha/k, so that look spends nothing
    assert plan.active_looks == (10, 15, 20, 25, 30)
    assert plan.alpha_per_look == pytest.approx(0.01)
    assert plan.alpha_at(5) == 0.0
    assert plan.alpha_at(10) == pytest.approx(0.01)
    assert plan.alpha_at(30) == pytest.approx(0.01)
    assert plan.alpha_at(7) == 0.0  # not a planned look


def test_plan_looks_rounds_above_max() -> None:
    plan = plan_looks(50, 30, 0.05)
    assert plan.looks == (30,)
    assert plan.active_looks == (30,)
    assert plan.alpha_per_look == pytest.approx(0.05)


def test_plan_looks_max_not_multiple_of_rounds() -> None:
    plan = plan_looks(5, 12, 0.05)
    assert plan.looks == (5, 10, 12)
    assert plan.active_looks == (10, 12)
    assert plan.alpha_per_look == pytest.approx(0.025)


def test_plan_looks_dropped_look_stays_dropped() -> None:
    # 6 rounds: floor 1/32 >= 0.05/2 -> dropped; afterwards alpha is 0.05 but the look at 6
    # must not come back (that would spend 0.1 in total)
    plan = plan_looks(6, 12, 0.05)
    assert plan.active_looks == (12,)
    assert plan.alpha_at(6) == 0.0
    assert plan.alpha_at(12) == pytest.approx(0.05)


def test_plan_looks_no_possible_rejection() -> None:
    plan = plan_looks(5, 5, 0.05)
    assert plan.looks == (5,) and plan.active_looks == ()
    assert plan.alpha_per_look == 0.0 and plan.alpha_at(5) == 0.0


@pytest.mark.parametrize("args", [(0, 30, 0.05), (5, 0, 0.05), (5, 30, 0.0), (5, 30, 1.0)])
def test_plan_looks_rejects_bad_arguments(args: tuple[int, int, float]) -> None:
    with pytest.raises(ValueError):
        plan_looks(*args)


@given(
    st.integers(1, 40),
    st.integers(1, 120),
    st.floats(0.001, 0.5, allow_nan=False),
)
def test_plan_looks_never_spends_more_than_alpha(
    rounds: int, max_rounds: int, alpha: float
) -> None:
    plan = plan_looks(rounds, max_rounds, alpha)
    assert plan.looks[-1] == max_rounds
    assert list(plan.looks) == sorted(set(plan.looks))
    assert sum(plan.alpha_at(n) for n in plan.looks) <= alpha * (1 + 1e-12)
    for n in plan.active_looks:
        assert signed_rank_p_floor(n) < plan.alpha_at(n)


def test_signed_rank_floor() -> None:
    assert signed_rank_p_floor(5) == 0.0625
    assert signed_rank_p_floor(10) == pytest.approx(2 / 1024)
    assert signed_rank_p_floor(1) == 1.0 and signed_rank_p_floor(0) == 1.0


# --- paired_ratio_test --------------------------------------------------------------------


def _pairs(seed: int, n: int, effect: float) -> tuple[list[float], list[float]]:
    rng = np.random.default_rng(seed)
    base = 100.0 * np.exp(rng.normal(0.0, NOISE, n))
    cand = 100.0 * effect * np.exp(rng.normal(0.0, NOISE, n))
    return base.tolist(), cand.tolist()


def test_paired_ratio_test_deterministic_and_ci_contains_ratio() -> None:
    base, cand = _pairs(1, 15, 1.03)
    a = paired_ratio_test(base, cand, 0.01, resamples=RESAMPLES)
    b = paired_ratio_test(base, cand, 0.01, resamples=RESAMPLES)
    assert a == b
    assert a.n == 15
    assert a.ratio == pytest.approx(float(np.median(np.array(cand) / np.array(base))))
    assert a.ci_low <= a.ratio <= a.ci_high
    assert a.ci_level == pytest.approx(0.99)
    assert 0.0 < a.p_value <= 1.0
    assert set(a.to_dict()) == {"n", "ratio", "ci_low", "ci_high", "ci_level", "p_value"}
    wider = paired_ratio_test(base, cand, 0.001, resamples=RESAMPLES)
    assert wider.ci_low <= a.ci_low and a.ci_high <= wider.ci_high


def test_paired_ratio_test_exact_p_and_identical_samples() -> None:
    base = [100.0] * 10
    cand = [101.0 + i for i in range(10)]  # all ten ratios > 1
    assert paired_ratio_test(base, cand, 0.01, resamples=RESAMPLES).p_value == pytest.approx(
        2 / 1024
    )
    same = paired_ratio_test(base, base, 0.01, resamples=RESAMPLES)
    assert (same.p_value, same.ratio, same.ci_low, same.ci_high) == (1.0, 1.0, 1.0, 1.0)


@pytest.mark.parametrize(
    ("base", "cand"),
    [
        ([1.0, 2.0], [1.0]),
        ([1.0, 0.0], [1.0, 1.0]),
        ([1.0, -2.0], [1.0, 1.0]),
        ([1.0, math.nan], [1.0, 1.0]),
        ([1.0, 1.0], [math.inf, 1.0]),
        ([], []),
    ],
)
def test_paired_ratio_test_rejects_bad_values(base: list[float], cand: list[float]) -> None:
    with pytest.raises(ValueError):
        paired_ratio_test(base, cand, 0.01, resamples=RESAMPLES)


# --- decide -------------------------------------------------------------------------------


def _t(lo: float, hi: float, p: float) -> RatioTest:
    return RatioTest(n=10, ratio=(lo + hi) / 2, ci_low=lo, ci_high=hi, ci_level=0.99, p_value=p)


@pytest.mark.parametrize(
    ("test", "higher", "lower"),
    [
        (_t(1.03, 1.07, 0.001), "improved", "regressed"),
        (_t(0.93, 0.97, 0.001), "regressed", "improved"),
        (_t(1.03, 1.07, 0.5), "continue", "continue"),  # CI beyond but not significant
        (_t(1.005, 1.07, 0.001), "continue", "continue"),  # CI straddles 1 + thr
        (_t(0.995, 1.005, 0.5), "no_change", "no_change"),
        (_t(1.002, 1.008, 0.001), "no_change", "no_change"),  # significant but negligible
        (_t(0.98, 1.02, 0.5), "continue", "continue"),
    ],
)
def test_decide_both_directions(test: RatioTest, higher: str, lower: str) -> None:
    assert decide(test, "higher", 0.01, 0.01) == higher
    assert decide(test, "lower", 0.01, 0.01) == lower


def test_decide_zero_threshold_never_no_change() -> None:
    assert decide(_t(0.999, 1.001, 0.5), "higher", 0.0, 0.01) == "continue"
    with pytest.raises(ValueError):
        decide(_t(0.999, 1.001, 0.5), "faster", 0.0, 0.01)  # type: ignore[arg-type]


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
        resamples=RESAMPLES,
    )


def test_sequential_identical_values_is_no_change_at_first_real_look() -> None:
    res = sequential_compare(
        lambda: (1.0, 1.0),
        rounds=5,
        max_rounds=30,
        alpha=0.05,
        noise_threshold=0.01,
        direction="lower",
    )
    assert res.decision == "no_change" and res.looks_done == 1
    assert len(res.base) == len(res.cand) == 10  # the look at 5 rounds is not a look
    assert res.test is not None and res.test.n == 10


def test_sequential_without_possible_look_is_inconclusive() -> None:
    res = sequential_compare(
        lambda: (1.0, 2.0),
        rounds=5,
        max_rounds=5,
        alpha=0.05,
        noise_threshold=0.01,
        direction="higher",
    )
    assert (res.decision, res.test, res.looks_done, len(res.base)) == ("inconclusive", None, 0, 5)


def test_sequential_stops_early_and_keeps_samples() -> None:
    res = _run(3, 1.20, "higher", DEFAULT_NOISE_THRESHOLD)
    assert res.decision == "improved" and res.looks_done == 1 and len(res.base) == 10


def test_sequential_inconclusive_at_max_rounds() -> None:
    # a 1 % effect under 2 % noise sits on the threshold: neither clear nor negligible
    res = sequential_compare(
        _drawer(11, 1.01, noise=0.05),
        rounds=5,
        max_rounds=10,
        alpha=0.05,
        noise_threshold=0.01,
        direction="higher",
        resamples=RESAMPLES,
    )
    assert res.decision == "inconclusive" and res.looks_done == 1 and len(res.base) == 10


# --- statistical properties ---------------------------------------------------------------


def _rate(decisions: list[str], wanted: set[str]) -> float:
    return sum(d in wanted for d in decisions) / len(decisions)


def test_a_vs_a_false_positive_rate_at_most_alpha() -> None:
    bound = DEFAULT_ALPHA + 2.5 * math.sqrt(DEFAULT_ALPHA * (1 - DEFAULT_ALPHA) / SEEDS)
    wrong = {"improved", "regressed"}
    zero = [_run(seed, 1.0, "higher", 0.0).decision for seed in range(SEEDS)]
    rate_zero = _rate(zero, wrong)
    assert rate_zero <= bound, rate_zero
    default = [_run(seed, 1.0, "higher", DEFAULT_NOISE_THRESHOLD).decision for seed in range(SEEDS)]
    rate_default = _rate(default, wrong)
    assert rate_default <= rate_zero  # the threshold only removes verdicts (and stops earlier)


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
    assert _rate(decisions, {expected}) >= 0.90
    assert _rate(decisions, {"improved", "regressed"} - {expected}) == 0.0
