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
           direction: str = "lower", wall_noise: float = 0.0,
           cpu_speedup: float | None = None) -> dict:
    """Base and candidate rounds with 0.5 % noise (plus a swing of `wall_noise` on the wall
    clock); the candidate's metric, wall time and CPU time are `metric_speedup`,
    `wall_speedup` and `cpu_speedup` times the base's (time-like: < 1 is faster; no CPU clock
    when None)."""
    rng = np.random.default_rng(7)
    noise = lambda: 1 + rng.normal(0, 0.005, ROUNDS)  # noqa: E731
    base_m, cand_m = 100 * noise(), 100 * metric_speedup * noise()
    if direction == "higher":  # a rate: the faster side prints the higher number
        base_m, cand_m = 1e4 / base_m, 1e4 / cand_m
    # the wall clock's noise: a symmetric swing of the candidate's time, round by round
    swing = np.exp(wall_noise * np.resize([1.0, -1.0], ROUNDS))
    walls_b, walls_c = 2.0 * noise(), 2.0 * wall_speedup * swing * noise()
    cpu_b = cpu_c = np.array([])
    if cpu_speedup is not None:
        cpu_b, cpu_c = 1.5 * noise(), 1.5 * cpu_speedup * noise()
    pairs = iter(zip(base_m, cand_m, strict=True))
    seq = sequential_compare(lambda: next(pairs), rounds=ROUNDS, max_rounds=ROUNDS, alpha=0.05,
                             noise_threshold=0.01, direction=direction)
    n = len(seq.base)
    ev = Evidence(metric={"name": "t", "unit": "ms", "direction": direction},
                  direction=direction, noise_threshold=0.01, alpha_look=seq.alpha_look,
                  plausible_ratio=3.0, seq=seq, wall_base=list(walls_b[:n]),
                  wall_cand=list(walls_c[:n]), alpha=0.05, wall_share=share,
                  cpu_base=list(cpu_b[:n]), cpu_cand=list(cpu_c[:n]))
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


def test_a_fake_stays_caught_when_load_makes_the_wall_clock_too_noisy_to_tell() -> None:
    # a 30 % swing of the wall clock (a busy machine): the wall alone cannot tell, the CPU clock can
    assert _judge(0.5, 1.0, 0.2, wall_noise=0.3)["verdict"] == "improved"  # the old blind spot
    r = _judge(0.5, 1.0, 0.2, wall_noise=0.3, cpu_speedup=1.0)
    assert r["verdict"] == "suspect" and "wall_time_unexplained" in r["flags"]
    assert "CPU time" in r["reason"] and r["cpu"]["ratio"] == pytest.approx(1, abs=0.02)


def test_a_real_win_in_waiting_shows_on_the_wall_clock_only() -> None:
    # a benchmark that waits less (I/O, sleeps): its CPU time stays, its wall time falls
    r = _judge(0.5, 0.5, 0.2, cpu_speedup=1.0)
    assert r["verdict"] == "improved", r["reason"]


def test_a_real_win_in_computation_diluted_on_the_wall_clock_shows_on_the_cpu_clock() -> None:
    # the process mostly waits (a long set-up in sleeps): the wall hardly moves, the CPU does
    r = _judge(0.5, 1.0, 0.2, cpu_speedup=0.55)
    assert r["verdict"] == "improved", r["reason"]


def test_the_wall_share_is_checked_in_the_config(tmp_path) -> None:
    from readfirst.core.config import load_spec
    from readfirst.core.errors import ConfigError

    (tmp_path / "readfirst.toml").write_text(
        '[target]\nbuild = "true"\nbench = "true"\n\n[metric]\nwall_share = 1.5\n')
    with pytest.raises(ConfigError, match="wall_share"):
        load_spec(tmp_path)


@pytest.mark.parametrize("sandboxed", [False, True])
def test_a_step_reports_the_cpu_time_of_its_whole_tree(tmp_path, sandboxed: bool) -> None:
    from readfirst.measure import sandbox
    from readfirst.measure.process import run_step

    if sandboxed and sandbox.probe() is not None:
        pytest.skip(sandbox.probe())
    (tmp_path / ".state").mkdir()
    policy = sandbox.policy_for(tmp_path, tmp_path, tmp_path / ".state", False) \
        if sandboxed else None
    # the CPU is burnt by a grandchild the shell waits for; the sleep burns none
    burn = "python3 -c 'import time; t=time.process_time()\nwhile time.process_time()-t<0.3: pass'"
    busy = run_step(f"{burn} && true", tmp_path, tmp_path / "busy", 60, sandbox=policy)
    idle = run_step("sleep 0.3", tmp_path, tmp_path / "idle", 60, sandbox=policy)
    assert busy.ok and idle.ok
    assert busy.cpu_seconds is not None and busy.cpu_seconds >= 0.3
    assert idle.cpu_seconds is not None and idle.cpu_seconds < busy.cpu_seconds / 2
    assert idle.seconds >= 0.3
