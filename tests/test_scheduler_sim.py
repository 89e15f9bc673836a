"""The real loop (`readfirst.loop.loop.Loop`) driven through the simulated executor of
benchmarks/scheduler_sim.py: every experiment journaled once and settled, confirmations on
another worker, winners landed one at a time on the baseline they were measured on, the
barrier's rhythm with `--waves` and none without it. Utilisation is read off the simulated
clock, so it does not depend on the machine's load."""

from __future__ import annotations

import importlib.util
import random
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType

import pytest
from conftest import git

from readfirst.loop.executors.base import Job
from readfirst.store.loop_journal import FINAL_STATUSES

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "scheduler_sim.py"


def _load() -> ModuleType:
    if "scheduler_sim" in sys.modules:
        return sys.modules["scheduler_sim"]
    spec = importlib.util.spec_from_file_location("scheduler_sim", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["scheduler_sim"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


sim = _load()
WORKERS, PER_WORKER = 8, 4


def _intervals(rep: object) -> dict[int, tuple[float, float, str]]:
    """exp_id -> (start, end, worker) on the simulated clock."""
    start: dict[int, tuple[float, str]] = {}
    out: dict[int, tuple[float, float, str]] = {}
    for t, what, worker, exp_id in rep.executor.log:  # type: ignore[attr-defined]
        if what == "start":
            start[exp_id] = (t, worker)
        else:
            out[exp_id] = (start[exp_id][0], t, worker)
    return out


@pytest.mark.parametrize("proposer", ["static", "continuous"])
@pytest.mark.parametrize("barrier", [True, False])
def test_every_experiment_journaled_once_and_winners_landed_in_order(
        barrier: bool, proposer: str, tmp_path: Path) -> None:
    rep = sim.simulate(WORKERS, PER_WORKER, seed=8, barrier=barrier, proposer=proposer,
                       dup_rate=0.05, workdir=tmp_path)
    s = rep.summary
    rows = s["experiments"]
    assert s["status"] == "done" and s["stop_reason"] == "no candidates left"
    assert [r["seq"] for r in rows] == list(range(1, len(rows) + 1))
    for r in rows:
        # a speculative confirmation, or one it replaced, is cut off when of no more use
        assert r["status"] in FINAL_STATUSES or (
            r["status"] == "cancelled" and r["outcome"] == "discarded"
            and "speculative confirmation" in r["reason"]), r
        assert r["outcome"] in ("kept", "discarded"), r
    # each candidate explored, or skipped as a duplicate, exactly once
    explored = Counter(r["candidate_id"] for r in rows if r["kind"] == "explore")
    assert len(explored) == WORKERS * PER_WORKER and set(explored.values()) == {1}
    assert any(r["reason"].startswith("not novel") for r in rows if r["wave"] == 0)
    # confirmations only for winners, each on another worker than the one that found it
    found = {r["candidate_id"]: r["worker"] for r in rows
             if r["kind"] == "explore" and r["verdict"] == "improved"}
    confirms = [r for r in rows if r["kind"] == "confirm"]
    assert confirms and {r["candidate_id"] for r in confirms} == set(found)
    assert all(r["worker"] != found[r["candidate_id"]] for r in confirms)
    # winners land one at a time, each measured on the baseline it lands on (a confirmation
    # may run on the landing queue's tip: a commit with that baseline's tree)
    kept = [r for r in confirms if r["outcome"] == "kept"]
    assert kept
    repo = tmp_path / "target"
    chain = git(repo, "rev-list", "--first-parent", s["branch"]).split()
    assert chain[0] == s["final_commit"] and chain[-1] == s["base_commit"]
    assert len(chain) == len(kept) + 1
    for r in kept:
        assert git(repo, "rev-parse", f"{r['landed_commit']}^^{{tree}}") == git(
            repo, "rev-parse", f"{r['baseline']}^{{tree}}")
    assert [r["landed_commit"] for r in kept] == chain[-2::-1]
    # never more than W in flight; with every candidate up front every worker gets work
    assert 0 < rep.peak_in_flight <= WORKERS
    if proposer == "static":
        assert rep.peak_in_flight == WORKERS


def test_the_barrier_waits_for_the_wave_and_confirms_alone(tmp_path: Path) -> None:
    rep = sim.simulate(WORKERS, PER_WORKER, seed=11, barrier=True, workdir=tmp_path)
    spans = _intervals(rep)
    # a fresh journal numbers experiments 1, 2, ... as their ids
    kinds = {r["seq"]: r["kind"] for r in rep.summary["experiments"]}
    assert "confirm" in kinds.values()
    for exp_id, (start, end, _w) in spans.items():
        overlapping = [o for o, (s2, e2, _) in spans.items()
                       if o != exp_id and s2 < end and start < e2]
        if kinds.get(exp_id) == "confirm":
            assert overlapping == [], "a confirmation runs alone under the barrier"
        # a wave's explorations all start together
        assert all(spans[o][0] == start for o in overlapping)


def test_without_the_barrier_a_finished_worker_takes_the_next_work_at_once(
        tmp_path: Path) -> None:
    rep = sim.simulate(WORKERS, PER_WORKER, seed=11, barrier=False, workdir=tmp_path)
    spans = _intervals(rep)
    kinds = {r["seq"]: r["kind"] for r in rep.summary["experiments"]}
    last_explore = max(s for i, (s, _e, _w) in spans.items() if kinds[i] == "explore")
    # while candidates were left, every worker went straight from one job to the next
    for worker in rep.executor.workers:
        mine = sorted((s, e) for s, e, w in spans.values() if w == worker)
        for (_s1, e1), (s2, _e2) in zip(mine, mine[1:], strict=False):
            if e1 < last_explore:
                assert s2 == e1, (worker, e1, s2)
    barrier = sim.simulate(WORKERS, PER_WORKER, seed=11, barrier=True,
                           workdir=tmp_path / "b")
    assert rep.utilisation > barrier.utilisation
    assert rep.makespan_h < barrier.makespan_h


def test_sim_executor_runs_on_a_virtual_clock() -> None:
    cands = sim.make_candidates(3, random.Random(0), dup_rate=0)
    rng = random.Random(1)
    outcomes = {}
    for c, secs in zip(cands, (30.0, 10.0, 20.0), strict=True):
        out = sim._outcome(rng, "explore", "no_change")
        outcomes[(c.id, "explore")] = sim.Outcome(secs, out.result)
    ex = sim.SimExecutor(3, outcomes)
    handles = [ex.submit(Job(i + 1, "/t", "b" * 40, c.to_dict(), {}), w)
               for i, (c, w) in enumerate(zip(cands, ex.workers, strict=True))]
    with pytest.raises(RuntimeError):
        ex.submit(Job(9, "/t", "b" * 40, cands[0].to_dict(), {}), "w0")
    assert ex.idle_workers() == [] and ex.poll(handles[0]) is None
    assert ex.wait_any(handles, timeout=5) == [] and ex.now == 5
    (first,) = ex.wait_any(handles)
    assert (first.exp_id, first.worker, ex.now) == (2, "w1", 10.0)
    assert first.verdict == "no_change" and first.result["base_commit"] == "b" * 40
    (only,) = ex.wait_any([handles[0]])  # a subset: job 3 (due at 20) stays running
    assert (only.exp_id, ex.now) == (1, 30.0)
    assert ex.poll(handles[2]) is not None and ex.idle_workers() == ex.workers
    assert ex.busy_seconds == 60.0


def test_idle_time_is_booked_by_reason_and_the_proposer_keeps_up(tmp_path: Path) -> None:
    """Busy and idle shares add up to the whole fleet's time; with a thinking proposer and
    many workers, nobody waits for a landing before the proposer is asked again."""
    rep = sim.simulate(20, PER_WORKER, seed=8, barrier=False, proposer="continuous",
                       workdir=tmp_path)
    assert rep.utilisation + sum(rep.idle.values()) == pytest.approx(1.0)
    assert set(rep.idle) <= set(sim.IDLE_REASONS)
    assert rep.idle.get("waiting for landing", 0.0) < 0.01
    assert rep.while_work >= rep.utilisation
    waves = sim.simulate(20, PER_WORKER, seed=8, barrier=True, proposer="continuous",
                         workdir=tmp_path / "b")
    assert waves.idle["barrier"] > 0.3
