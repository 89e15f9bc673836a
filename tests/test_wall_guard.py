"""The wall-clock guard: a metric change readfirst's own wall clock cannot show is `suspect`,
while a real change diluted by the process's fixed costs is not (`[metric] wall_share`).

The samples are set by the test (no timing): the metric and the wall times of each round.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from readfirst.measure.judge import Evidence, judge_measurement
from readfirst.measure.stats import sequential_compare

ROUNDS = 12


def _judge(metric_speedup: float, wall_speedup: float, share: float,
           direction: str = "lower") -> dict:
    """Base and candidate rounds with 0.5 % noise; the candidate's metric and wall time are
    `metric_speedup` and `wall_speedup` times the base's (time-like: < 1 is faster)."""
    rng = np.random.default_rng(7)
    noise = lambda: 1 + rng.normal(0, 0.005, ROUNDS)  # noqa: E731
    base_m, cand_m = 100 * noise(), 100 * metric_speedup * noise()
    if direction == "higher":  # a rate: the faster side prints the higher number
        base_m, cand_m = 1e4 / base_m, 1e4 / cand_m
    walls_b, walls_c = 2.0 * noise(), 2.0 * wall_speedup * noise()
    pairs = iter(zip(base_m, cand_m, strict=True))
    seq = sequential_compare(lambda: next(pairs), rounds=ROUNDS, max_rounds=ROUNDS, alpha=0.05,
                             noise_threshold=0.01, direction=direction)
    n = len(seq.base)
    ev = Evidence(metric={"name": "t", "unit": "ms", "direction": direction},
                  direction=direction, noise_threshold=0.01, alpha_look=seq.alpha_look,
                  plausible_ratio=3.0, seq=seq, wall_base=list(walls_b[:n]),
                  wall_cand=list(walls_c[:n]), alpha=0.05, wall_share=share)
    return judge_measurement(ev)


@pytest.mark.parametrize("direction", ["lower", "higher"])
def test_a_metric_printed_2x_better_with_the_wall_unchanged_is_suspect(direction: str) -> None:
    r = _judge(metric_speedup=0.5, wall_speedup=1.0, share=0.2, direction=direction)
    assert r["verdict"] == "suspect"
    assert "wall_time_unexplained" in r["flags"]
    # both changes in readfirst's notation; the wall clock's "~": it shows no change
    change = r"-50\.\d\d %" if direction == "lower" else r"\+1\d\d\.\d\d %"
    assert re.search(rf"the metric says \w+ \({change} \[[^]]+\] % \(95 % CI\)\)", r["reason"])
    assert re.search(r"\(wall time ~ [+-]\d\.\d\d % \[-\d\.\d\d, \+\d\.\d\d\] % \(95 % CI\)\)",
                     r["reason"]), r["reason"]


def test_a_small_fake_is_caught_too() -> None:
    r = _judge(metric_speedup=0.9, wall_speedup=1.0, share=0.2)
    assert r["verdict"] == "suspect"


@pytest.mark.parametrize("direction", ["lower", "higher"])
def test_a_real_win_diluted_by_set_up_is_kept(direction: str) -> None:
    # the metric times 40 % of the process: -10 % on the metric is -4 % on the wall clock
    r = _judge(metric_speedup=0.9, wall_speedup=0.96, share=0.2, direction=direction)
    assert r["verdict"] == "improved", r["reason"]
    assert "wall_time_unexplained" not in r["flags"]


def test_the_share_is_the_users_to_set() -> None:
    # the same diluted win, with a config that says the metric times nearly all the process
    r = _judge(metric_speedup=0.9, wall_speedup=0.96, share=0.8)
    assert r["verdict"] == "suspect"
    assert "wall_time_unexplained" in r["flags"]


def test_the_wall_share_is_checked_in_the_config(tmp_path) -> None:
    from readfirst.core.config import load_spec
    from readfirst.core.errors import ConfigError

    (tmp_path / "readfirst.toml").write_text(
        '[target]\nbuild = "true"\nbench = "true"\n\n[metric]\nwall_share = 1.5\n')
    with pytest.raises(ConfigError, match="wall_share"):
        load_spec(tmp_path)
