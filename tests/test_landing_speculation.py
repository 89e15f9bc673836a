"""Speculative confirmations (src/readfirst/loop/speculation.py): a worker that would otherwise
idle measures a winner stacked on an unconfirmed one also on the tree it would land on if that
one is not kept. Driven through the real loop (real git repository, real journal) with the
simulated executor of benchmarks/scheduler_sim.py, whose jobs finish on a virtual clock."""

from __future__ import annotations

import random
from pathlib import Path

from conftest import git
from test_scheduler_sim import _intervals, sim

from readfirst.core.config import MetricSection, Spec, TargetSection
from readfirst.loop.executors.base import JobResult
from readfirst.loop.landing import LandingQueue, Pending, Speculation, Tried
from readfirst.loop.loop import Loop, LoopOptions
from readfirst.loop.loop_setup import open_run
from readfirst.vcs import gitcli

SPEC = Spec(target=TargetSection(build="make", bench="./bench", checks="make check"),
            metric=MetricSection(name="time_ms", unit="ms"))


def _plan(cands: list, table: dict) -> dict:
    """Outcomes: {(index, kind): (seconds, verdict, ratio)}."""
    rng = random.Random(3)
    plan = {}
    for (i, kind), (secs, verdict, ratio) in table.items():
        out = sim._outcome(rng, kind, verdict)
        result = dict(out.result)
        if "result" in result:
            result["result"] = {**result["result"], "ratio": ratio}
        plan[(cands[i].id, kind)] = sim.Outcome(secs, result)
    return plan


def _run(tmp_path: Path, workers: int, n: int, table: dict) -> tuple[Loop, dict, object]:
    cands = sim.make_candidates(n, random.Random(1), dup_rate=0)
    ex = sim.SimExecutor(workers, _plan(cands, table))
    target = sim._sim_target(tmp_path / "target")
    loop = Loop.start(target, SPEC, LoopOptions(proposer="sim", workers=workers), executor=ex,
                      proposer=sim.SimProposer(cands))  # type: ignore[arg-type]
    return loop, loop.run(), ex


def test_a_head_that_fails_lets_the_next_winner_land_with_its_speculative_confirmation(
        tmp_path: Path) -> None:
    # A wins at t=100, B at t=150; A's confirmation runs long and fails; B's is stacked on
    # A, and an idle worker measures B also on the baseline
    loop, s, ex = _run(tmp_path, 4, 2, {
        (0, "explore"): (100.0, "improved", 0.80), (1, "explore"): (150.0, "improved", 0.95),
        (0, "confirm"): (1000.0, "no_change", 1.0), (1, "confirm"): (300.0, "improved", 0.95)})
    rows = {r["seq"]: r for r in s["experiments"]}
    confirms_b = [r for r in rows.values()
                  if r["kind"] == "confirm" and r["candidate_id"].endswith("00001.diff")]
    assert len(confirms_b) == 2
    assert loop.speculator.started == loop.speculator.used
    (used,) = loop.speculator.used
    (kept,) = [r for r in rows.values() if r["outcome"] == "kept" and r["kind"] == "confirm"]
    assert kept["seq"] == used and kept["baseline"] == s["base_commit"]
    (stacked,) = [r for r in confirms_b if r["seq"] != used]
    assert stacked["baseline"] != s["base_commit"] and stacked["outcome"] == "discarded"
    assert "speculative confirmation" in stacked["reason"] and "used instead" in stacked["reason"]
    # the winner landed on exactly the tree it was confirmed on: the baseline
    repo = tmp_path / "target"
    assert git(repo, "rev-parse", f"{s['final_commit']}^") == s["base_commit"]
    assert git(repo, "rev-list", "--count", f"{s['base_commit']}..{s['branch']}") == "1"
    # B was not measured again after A failed: the run ended with A's confirmation
    assert ex.now == 1100.0


def test_speculation_not_used_when_the_head_is_kept(tmp_path: Path) -> None:
    loop, s, _ex = _run(tmp_path, 4, 2, {
        (0, "explore"): (100.0, "improved", 0.80), (1, "explore"): (150.0, "improved", 0.95),
        (0, "confirm"): (1000.0, "improved", 0.80), (1, "confirm"): (300.0, "improved", 0.95)})
    assert loop.speculator.started and not loop.speculator.used
    rows = s["experiments"]
    for r in rows:
        if r["seq"] in loop.speculator.started:
            assert r["outcome"] == "discarded" and r["reason"].startswith(
                "speculative confirmation"), r
            assert "not used" in r["reason"]
    kept = [r for r in rows if r["outcome"] == "kept" and r["kind"] == "confirm"]
    assert len(kept) == 2 and not {r["seq"] for r in kept} & loop.speculator.started


def _tried(exp_id: int, cand: object, verdict: str | None = None) -> Tried:
    return Tried(cand, exp_id, JobResult(exp_id, "w1", "finished", verdict, "", {}))  # type: ignore[arg-type]


def test_a_speculation_measured_on_another_tree_than_the_new_tip_is_never_used(
        tmp_path: Path) -> None:
    target = sim._sim_target(tmp_path / "target")
    base = git(target.repo, "rev-parse", "HEAD")
    a, b, c = sim.make_candidates(3, random.Random(2), dup_rate=0)
    q = LandingQueue(target.repo, base, SPEC)
    wa, wb, wc = _tried(1, a), _tried(2, b), _tried(3, c)
    on_a = q.stacked(base, wa)
    q.pending = [Pending(wa, 11), Pending(wb, 12), Pending(wc, 13)]
    # B measured (wrongly for this test) on base + A, C on base + A: neither is the new tip
    q.pending[1].alts = [Speculation(21, on_a, frozenset({3}))]
    q.pending[2].alts = [Speculation(22, q.stacked(on_a, wb), frozenset({3}))]
    q.pending[0].check = _tried(11, a, "no_change")
    q.ready()
    cut = q.cut(base)
    assert cut.promoted == [] and cut.superseded == []
    assert {s.exp_id for s in cut.unused} == {21, 22}
    assert q.pending == [] and set(q.stale) == {12, 13}
    # the same entries with speculations on the right trees are promoted, in order
    q2 = LandingQueue(target.repo, base, SPEC)
    q2.pending = [Pending(wa, 11), Pending(wb, 12), Pending(wc, 13)]
    q2.pending[1].alts = [Speculation(21, base, frozenset({1}))]
    q2.pending[2].alts = [Speculation(22, q2.stacked(base, wb), frozenset({1}))]
    q2.pending[0].check = _tried(11, a, "no_change")
    q2.ready()
    cut2 = q2.cut(base)
    assert [p.exp_id for p in cut2.promoted] == [21, 22] and cut2.superseded == [12, 13]
    assert gitcli.tree_of(target.repo, q2.tip) == gitcli.tree_of(
        target.repo, q2.stacked(q2.stacked(base, wb), wc))


def test_speculation_never_takes_a_worker_an_exploration_or_confirmation_could_use(
        tmp_path: Path) -> None:
    used = 0
    for seed in (0, 1):
        rep = sim.simulate(20, 4, seed, workdir=tmp_path / str(seed))
        rows = rep.summary["experiments"]
        spans = _intervals(rep)  # cancelled speculation ends when it is cut off
        kinds = {r["seq"]: r["kind"] for r in rows}
        speculative = rep.speculative_ids
        used += rep.speculative_used
        assert all(kinds[i] == "confirm" for i in speculative)
        last_explore = max(s for i, (s, _e, _w) in spans.items() if kinds[i] == "explore")
        for i in speculative:
            assert spans[i][0] >= last_explore, "speculation while a candidate could start"
        # every winner's first confirmation started when its exploration ended, unless no
        # worker but its finder was free of regular work then
        found = {r["candidate_id"]: r for r in rows
                 if r["kind"] == "explore" and r["verdict"] == "improved"}
        first: dict[str, dict] = {}
        for r in sorted(rows, key=lambda r: r["seq"]):
            if r["kind"] == "confirm" and r["seq"] not in speculative:
                first.setdefault(r["candidate_id"], r)
        for cid, conf in first.items():
            t = spans[found[cid]["seq"]][1]
            if spans[conf["seq"]][0] > t:
                on_spec = [i for i in speculative if spans[i][0] <= t < spans[i][1]
                           and spans[i][2] != found[cid]["worker"]]
                assert not on_spec, (cid, t, on_spec)
    assert used > 0


class _Interrupted(sim.SimExecutor):
    """Ctrl-C once the virtual clock would pass `at`."""

    def __init__(self, workers: int, outcomes: dict, at: float) -> None:
        super().__init__(workers, outcomes)
        self.at = at

    def wait_any(self, handles: list, timeout: float | None = None) -> list:
        due = min((self._running[h.exp_id][2] for h in handles if h.exp_id in self._running),
                  default=0.0)
        if due > self.at:
            raise KeyboardInterrupt
        return super().wait_any(handles, timeout)


def test_a_run_cut_off_during_a_speculation_resumes_and_redoes_it_as_any_flight(
        tmp_path: Path) -> None:
    table = {(0, "explore"): (100.0, "improved", 0.80), (1, "explore"): (150.0, "improved", 0.95),
             (0, "confirm"): (1000.0, "no_change", 1.0), (1, "confirm"): (300.0, "improved", 0.95)}
    cands = sim.make_candidates(2, random.Random(1), dup_rate=0)
    target = sim._sim_target(tmp_path / "target")
    first = _Interrupted(4, _plan(cands, table), at=200.0)
    loop = Loop.start(target, SPEC, LoopOptions(proposer="sim", workers=4), executor=first,
                      proposer=sim.SimProposer(cands))  # type: ignore[arg-type]
    try:
        loop.run()
        raise AssertionError("the run was not interrupted")
    except KeyboardInterrupt:
        pass
    (spec_id,) = loop.speculator.started
    # the speculation was in flight when the run was cut off (close() cancelled it)
    assert any(what == "cancel" and i == spec_id for _t, what, _w, i in first.log)
    again = sim.SimExecutor(4, _plan(cands, table))
    resumed = Loop(open_run(target, SPEC, None, resume=True, executor=again,  # type: ignore[arg-type]
                            proposer=sim.SimProposer(cands)), lambda _m: None)
    s = resumed.run()
    assert s["status"] == "done"
    rows = {r["seq"]: r for r in s["experiments"]}
    cut = rows[spec_id]  # a fresh journal: experiment id = seq
    assert cut["status"] == "cancelled" and cut["outcome"] != "kept"
    assert "redone on resume" in cut["reason"]
    # both winners were confirmed again after the resume; B landed on exactly the tree it
    # was confirmed on (the baseline, A not being kept), through its speculation or not
    kept = [r for r in rows.values() if r["outcome"] == "kept" and r["kind"] == "confirm"]
    assert [r["candidate_id"] for r in kept] == [cands[1].id]
    assert kept[0]["baseline"] == s["base_commit"]
    repo = tmp_path / "target"
    assert git(repo, "rev-parse", f"{s['final_commit']}^") == s["base_commit"]
    explored = [r for r in rows.values() if r["kind"] == "explore" and r["wave"] > 0]
    assert len(explored) == 2  # nothing explored twice


def test_a_chain_whose_head_is_kept_and_whose_second_fails_finds_its_measurement_ready(
        tmp_path: Path) -> None:
    # A, B, C win at t=100, 150, 200 and are confirmed stacked (C on A + B). Idle workers
    # measure C also without A, without B and without both: A is kept at t=1100, B fails at
    # t=1190, and C lands at once on its measurement on the baseline + A (no measuring again)
    loop, s, ex = _run(tmp_path, 8, 3, {
        (0, "explore"): (100.0, "improved", 0.80), (1, "explore"): (150.0, "improved", 0.90),
        (2, "explore"): (200.0, "improved", 0.95),
        (0, "confirm"): (1000.0, "improved", 0.80), (1, "confirm"): (1040.0, "no_change", 1.0),
        (2, "confirm"): (300.0, "improved", 0.95)})
    rows = {r["seq"]: r for r in s["experiments"]}
    kept = sorted((r for r in rows.values() if r["outcome"] == "kept" and r["kind"] == "confirm"),
                  key=lambda r: r["seq"])
    cands = {r["candidate_id"][-7:-5] for r in kept}
    assert cands == {"00", "02"}, kept
    (used,) = loop.speculator.used
    (kept_c,) = [r for r in kept if r["candidate_id"].endswith("00002.diff")]
    assert kept_c["seq"] == used
    # C landed on A's landing commit, on exactly the tree it was measured on
    repo = tmp_path / "target"
    log = git(repo, "rev-list", "--reverse", f"{s['base_commit']}..{s['branch']}").split()
    assert len(log) == 2
    assert git(repo, "rev-parse", f"{used_on(loop, rows, used)}^{{tree}}") == git(
        repo, "rev-parse", f"{log[0]}^{{tree}}")
    # no confirmation of C after B failed: the run ended with B's
    assert ex.now == 1190.0
    # every other speculation is discarded as not used
    for i in loop.speculator.started - loop.speculator.used:
        assert rows[i]["outcome"] == "discarded" and "not used" in rows[i]["reason"], rows[i]


def used_on(loop: Loop, rows: dict, seq: int) -> str:
    """The commit a confirmation was measured on (its journal row's baseline)."""
    return rows[seq]["baseline"]
