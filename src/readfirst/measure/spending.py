"""Group-sequential boundaries: Lan-DeMets alpha spending over the planned looks of a compare.

A compare looks at its data after batches of rounds and stops at the first clear answer. To keep
the chance of any false verdict over all looks at ``alpha``, each look gets a critical value
``c_k`` on the standardised statistic (equivalently a nominal level ``alpha_k = 2 (1 - Phi(c_k))``
for its test and a ``1 - alpha_k`` interval). The ``c_k`` are chosen so that the probability of
first crossing at look ``k`` under the null equals what the spending function releases between
looks ``k - 1`` and ``k``:

    P(|Z_1| < c_1, ..., |Z_{k-1}| < c_{k-1}, |Z_k| >= c_k) = a(t_k) - a(t_{k-1})

with ``t_k = n_k / n_max`` the information fraction (rounds are exchangeable, so information is
proportional to rounds) and ``Z_k`` the standardised sum of independent increments (Brownian
motion in information time; Jennison & Turnbull 2000, ch. 19, for the recursion used here).

O'Brien-Fleming-type spending (Lan & DeMets 1983), ``a(t) = 2 - 2 Phi(z_{1-alpha/2} / sqrt(t))``,
spends almost nothing early and keeps the last look close to a fixed-sample test: early stops
only for large effects, full power at the end. The intervals built from the same ``c_k`` are
repeated confidence intervals (Jennison & Turnbull 1989): all of them cover the true effect at
once with probability ``1 - alpha``, so "no change" and "improved" verdicts read off any look are
covered together.

Pure and deterministic: the boundaries depend only on the look schedule and alpha, never on data.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache

import numpy as np
from scipy.special import ndtr, ndtri

_SQRT_2PI = math.sqrt(2.0 * math.pi)


def _pdf(z: np.ndarray) -> np.ndarray:
    return np.exp(-0.5 * z * z) / _SQRT_2PI

SpendingFunction = Callable[[float, float], float]  # (alpha, t) -> cumulative alpha spent by t

_GRID_POINTS = 401  # integration grid over the continuation region; c_k to 1e-4
_BISECT_STEPS = 60


def obrien_fleming(alpha: float, t: float) -> float:
    """Lan-DeMets O'Brien-Fleming-type spending (two-sided)."""
    if t <= 0:
        return 0.0
    return float(min(alpha, 2.0 - 2.0 * ndtr(ndtri(1.0 - alpha / 2.0) / math.sqrt(t))))


def pocock(alpha: float, t: float) -> float:
    """Lan-DeMets Pocock-type spending: more alpha early, a stricter last look."""
    if t <= 0:
        return 0.0
    return float(min(alpha, alpha * math.log(1.0 + (math.e - 1.0) * t)))


SPENDING: dict[str, SpendingFunction] = {"obrien_fleming": obrien_fleming, "pocock": pocock}


def _exit_probability(grid: np.ndarray, dens: np.ndarray, weights: np.ndarray,
                      i_prev: float, i_now: float, c: float) -> float:
    """P(|Z_now| >= c and the path stayed inside before), given the sub-density on `grid`."""
    delta = i_now - i_prev
    mean = grid * math.sqrt(i_prev)
    sd = math.sqrt(delta)
    bound = c * math.sqrt(i_now)
    tail = ndtr((mean - bound) / sd) + ndtr((-bound - mean) / sd)
    return float(np.sum(weights * dens * tail))


def _next_density(grid: np.ndarray, dens: np.ndarray, weights: np.ndarray,
                  i_prev: float, i_now: float, c: float) -> tuple[np.ndarray, np.ndarray]:
    """Sub-density of Z_now on (-c, c) for paths that never crossed (trapezoid rule)."""
    new_grid = np.linspace(-c, c, _GRID_POINTS)
    delta = i_now - i_prev
    scale = math.sqrt(i_now / delta)
    z = (new_grid[:, None] * math.sqrt(i_now) - grid[None, :] * math.sqrt(i_prev)) / math.sqrt(
        delta)
    new_dens = (_pdf(z) * scale) @ (weights * dens)
    return new_grid, new_dens


def _trapezoid_weights(grid: np.ndarray) -> np.ndarray:
    h = grid[1] - grid[0]
    w = np.full(grid.size, h)
    w[0] = w[-1] = h / 2.0
    return w


@lru_cache(maxsize=64)
def boundaries(info: tuple[float, ...], alpha: float,
               spending: str = "obrien_fleming") -> tuple[float, ...]:
    """Two-sided critical values c_k for looks at increasing information `info` (the last is
    the maximum); inf where a look gets no alpha to spend."""
    if not info or any(b <= a for a, b in zip(info, info[1:], strict=False)) or info[0] <= 0:
        raise ValueError(f"information must be positive and increasing (got {info})")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1) (got {alpha})")
    spend = SPENDING[spending]
    total = info[-1]
    out: list[float] = []
    grid = dens = weights = np.empty(0)
    spent = 0.0
    i_prev = 0.0
    for k, i_now in enumerate(info):
        target = spend(alpha, i_now / total) - spent
        if k == 0:
            c = float(-ndtri(target / 2.0)) if target > 0 else math.inf
            c = min(c, 40.0)
            grid = np.linspace(-c, c, _GRID_POINTS)
            dens = _pdf(grid)
            weights = _trapezoid_weights(grid)
        else:
            c = _solve(grid, dens, weights, i_prev, i_now, target)
            grid, dens = _next_density(grid, dens, weights, i_prev, i_now, c)
            weights = _trapezoid_weights(grid)
        spent += target
        out.append(c if c < 40.0 else math.inf)
        i_prev = i_now
    return tuple(out)


def _solve(grid: np.ndarray, dens: np.ndarray, weights: np.ndarray, i_prev: float,
           i_now: float, target: float) -> float:
    """The c whose exit probability equals `target` (bisection; it falls as c grows)."""
    if target <= 0:
        return 40.0
    lo, hi = 0.0, 40.0
    for _ in range(_BISECT_STEPS):
        mid = (lo + hi) / 2.0
        if _exit_probability(grid, dens, weights, i_prev, i_now, mid) > target:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2.0


def nominal_alpha(c: float) -> float:
    """The two-sided nominal level of one look with critical value c."""
    return 0.0 if math.isinf(c) else float(2.0 * ndtr(-c))
