"""The scheduler simulation (benchmarks/scheduler_sim.py) drives the loop's journal correctly:
every experiment journaled once with a final status, never more than W in flight, and a
summary with every row. Behaviour only; the timings are the benchmark's business."""

from __future__ import annotations

import importlib.util
import random
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType

import pytest

from readfirst.executors import Job
from readfirst.loop_journal import FINAL_STATUSES

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
WORKERS, PER_WORKER = 20, 2


@pytest.mark.parametrize("proposer", ["static", "continuous"])
@pytest.mark.parametrize("mode", ["wave", "rolling"])
def test_every_experiment_journaled_once_with_a_final_status(mode: str, proposer: str) -> None:
    rep = sim.simulate(WORKERS, PER_WORKER, seed=3, mode=mode, proposer=proposer,
                       dup_rate=0.05)
    rows = rep.summary["experiments"]
    assert rep.summary["status"] == "done"
    # the summary has every row: one per submitted job plus one per skipped duplicate
    assert len(rows) == len(rep.submitted) + rep.skipped == rep.experiments + rep.skipped
    assert len(set(rep.submitted)) == len(rep.submitted)
    assert [r["seq"] for r in rows] == list(range(1, len(rows) + 1))
    # each candidate explored (or skipped) exactly once; confirmations only for winners
    explore = Counter(r["candidate_id"] for r in rows if r["kind"] == "explore")
    assert len(explore) == WORKERS * PER_WORKER and set(explore.values()) == {1}
    winners = {r["candidate_id"] for r in rows if r["kind"] == "explore"
               and r["verdict"] == "improved"}
    confirms = Counter(r["candidate_id"] for r in rows if r["kind"] == "confirm")
    assert set(confirms) == winners and set(confirms.values()) <= {1}
    assert rep.explored + rep.skipped == WORKERS * PER_WORKER
    # every row final and settled: kept or discarded
    for r in rows:
        assert r["status"] in FINAL_STATUSES, r
        assert r["outcome"] in ("kept", "discarded"), r
        assert r["finished"] is not None
    assert rep.skipped >= 1 and all(r["status"] == "skipped" for r in rows if r["wave"] == 0)
    kept = [r for r in rows if r["outcome"] == "kept"]
    assert all(r["landed_commit"] for r in kept)
    if kept:
        assert rep.summary["final_commit"] == max(kept, key=lambda r: r["seq"])["landed_commit"]
    # never more than W in flight; with every candidate up front a wave fills every worker
    assert 0 < rep.peak_in_flight <= WORKERS
    if proposer == "static":
        assert rep.peak_in_flight == WORKERS
    assert rep.journal_writes >= 3 * rep.experiments  # start, set_pid, finish at least


def test_sim_executor_waits_on_a_virtual_clock() -> None:
    cands = sim.make_candidates(3, random.Random(0), dup_rate=0)
    outcomes = {(c.id, "explore"): sim.Outcome(s, sim._outcome(random.Random(1), c, "explore",
                                                               "no_change").result_json)
                for c, s in zip(cands, (30.0, 10.0, 20.0), strict=True)}
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
