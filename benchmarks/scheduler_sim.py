"""Scheduler simulation: readfirst's orchestration cost per experiment as the worker count grows.

Runs readfirst's real orchestration code paths — `LoopLog` on a real SQLite journal in a temp
dir, `Candidate` / `Job` / `JobResult`, `normalized_diff_hash`, `refresh_from_experiments`,
`readfirst.loop._Tried` / `_gain` — against `SimExecutor`, an `Executor` whose jobs finish on a
virtual clock: `wait_any` jumps the clock to the next completion, so a 4-minute experiment takes
no real time and the wall time measured is readfirst's own (plus the stand-in executor's, shown
as its own phases: `submit` and `wait`).

The per-experiment steps mirror `readfirst.loop.run_loop` (its closures `admit`,
`duplicate_of`, `record_skipped`, `run_wave` and `confirm` are not importable, so `LoopSim`
repeats their bodies line for line, with the journal calls the real ones): admit candidates
(novelty check), `start_experiment` + `Job` + `submit` + `set_pid`, `wait_any`,
`finish_experiment`, discard the losers, confirm winners on another worker and `land` them,
`summary` + research refresh after each wave, and `finish` + `summary` at the end. Not
simulated: git (`update-ref`, `commit-tree` of a landed winner), the report and `say` messages.

Modes: `wave` (what the loop does: submit W, wait for all, confirm winners one by one) and
`rolling` (at most W in flight; a freed worker takes the next candidate or confirmation at
once). Proposers: `static` (every candidate up front, like forks/patches) and `continuous`
(W new candidates each time the queue runs dry, like an LLM proposer; each refill reads the run
summary and checks the new candidates against every experiment of the run).

Usage: .venv/bin/python benchmarks/scheduler_sim.py [--workers 10,100,1000]
       [--experiments-per-worker 3] [--seed 0] [--mode both] [--proposer static]
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import heapq
import json
import math
import pstats
import random
import sys
import tempfile
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from readfirst.candidate import Candidate, normalized_diff_hash
from readfirst.config import MetricSection, Spec, TargetSection
from readfirst.errors import BaseFailedError
from readfirst.executors import Executor, Handle, Job, JobResult
from readfirst.journal import Journal
from readfirst.judge import side_dict
from readfirst.loop import _gain, _Tried
from readfirst.loop_journal import LoopLog
from readfirst.research.orchestrate import refresh_from_experiments
from readfirst.workspace import Workspace

# where the orchestration time goes, per experiment
PHASES = ("admit", "start", "submit", "wait", "handles", "pick", "track", "finish", "settle",
          "wave_summary", "refill", "final")
PHASE_HELP = {
    "admit": "novelty check of new candidates (normalized_diff_hash + in-memory index)",
    "start": "LoopLog.start_experiment + Job + set_pid",
    "submit": "SimExecutor.submit (the stand-in executor: job JSON)",
    "wait": "SimExecutor.wait_any (the stand-in executor: result JSON)",
    "handles": "dropping a finished job from the in-flight handles (run_wave: a dict)",
    "pick": "picking the losers to discard (run_loop: by verdict)",
    "track": "the rest of the loop's in-memory bookkeeping (batches, sorting, worker choice)",
    "finish": "LoopLog.finish_experiment",
    "settle": "LoopLog.discard / LoopLog.land",
    "wave_summary": "LoopLog.summary + refresh_from_experiments after each wave",
    "refill": "LoopLog.summary for a continuous proposer's history",
    "final": "LoopLog.finish + LoopLog.summary at the end",
}
# (outcome, probability): what a worker reports for an exploration
OUTCOMES = (("no_change", 0.50), ("regressed", 0.25), ("inconclusive", 0.07),
            ("improved", 0.06), ("checks_failed", 0.04), ("skipped", 0.05),
            ("worker_died", 0.03))
CONFIRM_RATE = 0.6  # share of winners that an independent re-measurement confirms
MEDIAN_JOB_SECONDS = 240.0  # simulated duration of one experiment (lognormal)
SRC = Path(__file__).resolve().parents[1] / "src" / "readfirst"


# --- the simulated executor ----------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What a job will report, fixed before the timed run: its duration and its result."""

    seconds: float
    result_json: str  # JobResult.to_dict() as JSON, exp_id and worker filled in at the end


class SimExecutor:
    """An `Executor` on a virtual clock: jobs finish `Outcome.seconds` after submission.

    `wait_any` advances the clock to the earliest completion among the handles and returns
    every result due by then; nothing sleeps. Completions sit in a heap, so waiting costs
    O(log n) per result. A job's JSON is built on submit and its result parsed on completion,
    as an executor that ships jobs to other machines would.
    """

    def __init__(self, workers: int, outcomes: dict[tuple[str, str], Outcome]) -> None:
        self.workers = [f"w{i}" for i in range(workers)]
        self.now = 0.0  # the virtual clock, seconds
        self.peak_in_flight = 0
        self.wait_calls = 0
        self.shipped_bytes = 0
        self._outcomes = outcomes
        self._busy: set[str] = set()
        self._running: dict[int, tuple[Handle, float, str, str]] = {}  # finish, json, baseline
        self._heap: list[tuple[float, int]] = []  # (finish, exp_id); stale entries skipped

    def idle_workers(self) -> list[str]:
        return [w for w in self.workers if w not in self._busy]

    def submit(self, job: Job, worker: str) -> Handle:
        if worker in self._busy:
            raise RuntimeError(f"worker {worker} is busy")
        self.shipped_bytes += len(json.dumps(job.to_dict()))
        kind = "confirm" if job.clean_build else "explore"
        out = self._outcomes[(job.candidate["id"], kind)]
        finish = self.now + out.seconds
        handle = Handle(job.exp_id, worker, pid=100_000 + job.exp_id)
        self._busy.add(worker)
        self._running[job.exp_id] = (handle, finish, out.result_json, job.baseline)
        heapq.heappush(self._heap, (finish, job.exp_id))
        self.peak_in_flight = max(self.peak_in_flight, len(self._running))
        return handle

    def poll(self, handle: Handle) -> JobResult | None:
        entry = self._running.get(handle.exp_id)
        if entry is None or entry[1] > self.now:
            return None
        return self._collect(handle.exp_id)

    def wait_any(self, handles: list[Handle], timeout: float | None = None) -> list[JobResult]:
        """Results of the handles due at the next completion (none if the timeout comes first).

        Handles of jobs no longer running are ignored. When the caller waits on as many
        handles as are running (the loop waits on all of them) no set of ids is built.
        """
        self.wait_calls += 1
        wanted = (None if len(handles) >= len(self._running)
                  else {h.exp_id for h in handles})
        first = self._next_due(wanted, math.inf)
        if first is None:
            return []
        if timeout is not None and first > self.now + timeout:
            self.now += timeout
            return []
        self.now = max(self.now, first)
        done = []
        while (exp_id := self._pop_due(wanted, self.now)) is not None:
            done.append(self._collect(exp_id))
        return done

    def cancel(self, handle: Handle) -> None:
        entry = self._running.pop(handle.exp_id, None)
        if entry is not None:
            self._busy.discard(entry[0].worker)

    def close(self) -> None:
        for handle, *_ in list(self._running.values()):
            self.cancel(handle)

    def _next_due(self, wanted: set[int] | None, by: float) -> float | None:
        """The completion time of the earliest wanted running job, if it is <= `by`."""
        exp_id = self._pop_due(wanted, by)
        if exp_id is None:
            return None
        finish = self._running[exp_id][1]
        heapq.heappush(self._heap, (finish, exp_id))
        return finish

    def _pop_due(self, wanted: set[int] | None, by: float) -> int | None:
        """Pop the earliest wanted running job finishing by `by` (others go back)."""
        aside = []
        found = None
        while self._heap and self._heap[0][0] <= by:
            finish, exp_id = heapq.heappop(self._heap)
            if exp_id not in self._running:
                continue  # cancelled or polled already
            if wanted is None or exp_id in wanted:
                found = exp_id
                break
            aside.append((finish, exp_id))
        for item in aside:
            heapq.heappush(self._heap, item)
        return found

    def _collect(self, exp_id: int) -> JobResult:
        handle, _finish, result_json, baseline = self._running.pop(exp_id)
        self._busy.discard(handle.worker)
        d = json.loads(result_json)
        d["exp_id"], d["worker"] = exp_id, handle.worker
        if d["result"] is not None:
            d["result"]["base_commit"] = baseline
        return JobResult.from_dict(d)


# --- candidates and what they will do --------------------------------------------------------


def make_candidates(n: int, rng: random.Random, dup_rate: float = 0.01) -> list[Candidate]:
    """`n` candidates with small unified diffs; about `dup_rate` of them repeat an earlier
    candidate's edit under another id (the novelty check records those as skipped)."""
    cands: list[Candidate] = []
    for i in range(n):
        j = rng.randrange(i) if i and rng.random() < dup_rate else i
        line = 10 + 7 * j
        diff = (f"diff --git a/src/hot{j % 50}.c b/src/hot{j % 50}.c\n"
                f"index {j:07x}..{j + 1:07x} 100644\n"
                f"--- a/src/hot{j % 50}.c\n+++ b/src/hot{j % 50}.c\n"
                f"@@ -{line},4 +{line},4 @@ static int kernel{j}(const int *v, int n) {{\n"
                f"     int acc = 0;\n"
                f"-    for (int i = 0; i < n; i++) acc += v[i] * {j + 2};\n"
                f"+    for (int i = 0; i < n; i += 2) acc += (v[i] + v[i + 1]) * {j + 2};\n"
                f"     return acc;\n }}\n")
        cands.append(Candidate(
            id=f"patch:sim-{i:05d}.diff", title=f"unroll kernel{j} by two",
            rationale="halves the loop overhead in the hot path", diff=diff, source="patches",
            provenance=(f"src/hot{j % 50}.c:{line}",)))
    return cands


def _measured(rng: random.Random, verdict: str) -> dict[str, Any]:
    """A compare verdict object shaped like `judge.judge_measurement`'s (lower is better)."""
    ratio = {"improved": rng.uniform(0.88, 0.97), "regressed": rng.uniform(1.03, 1.3),
             "no_change": rng.uniform(0.995, 1.005)}.get(verdict, rng.uniform(0.98, 1.02))
    rounds = rng.randint(5, 20)
    base = [rng.gauss(100.0, 1.0) for _ in range(rounds)]
    cand = [b * ratio * rng.gauss(1.0, 0.005) for b in base]
    half = rng.uniform(0.003, 0.02)
    p = rng.uniform(1e-6, 0.01) if verdict in ("improved", "regressed") else rng.uniform(0.05, 1)
    pct = (ratio - 1) * 100
    return {
        "run_id": rng.randint(1, 10**6), "mode": "interleaved", "base_rev": "base",
        "cand_rev": "cand", "cand_commit": None, "logs": "/tmp/runs/sim",
        "verdict": verdict,
        "reason": f"{pct:+.2f}% (p={p:.3g}; 95.0% CI [{ratio - half:.4f}, {ratio + half:.4f}])",
        "metric": {"name": "time_ms", "unit": "ms", "direction": "lower"},
        "ratio": ratio, "change": ratio - 1, "ci_low": ratio - half, "ci_high": ratio + half,
        "ci_level": 0.95, "p_value": p, "alpha_look": 0.01, "rounds": rounds,
        "base": side_dict(base), "cand": side_dict(cand),
        "wall": {"ratio": ratio, "ci_low": ratio - half, "ci_high": ratio + half,
                 "p_value": p},
        "secondary": {}, "flags": [] if rng.random() < 0.9 else ["high_cv_base"],
        "timings": {"build": 20.0, "checks": 5.0, "warmup": 3.0, "bench": 150.0},
    }


def _outcome(rng: random.Random, cand: Candidate, kind: str, verdict: str) -> Outcome:
    seconds = rng.lognormvariate(math.log(MEDIAN_JOB_SECONDS), 0.6)
    seconds *= 1.4 if kind == "confirm" else 1.0  # confirmations build from a clean tree
    cand_commit = hashlib.sha1(f"{cand.id}/{kind}".encode()).hexdigest()
    if verdict == "skipped":
        seconds = rng.uniform(1, 10)
        res = JobResult(0, "", "skipped", reason="does not apply: patch failed: src/hot.c:12",
                        timings={"apply": seconds})
    elif verdict == "worker_died":
        seconds *= rng.random()
        res = JobResult(0, "", "worker_died", reason="worker died (killed by signal 9)")
    elif verdict == "checks_failed":
        result = {"verdict": "checks_failed", "reason": "checks failed on the candidate",
                  "ratio": None, "ci_low": None, "ci_high": None, "p_value": None,
                  "rounds": 0, "base": None, "cand": None, "flags": ["checks_failed"],
                  "tail": "assertion failed: sum == expected"}
        res = JobResult(0, "", "finished", "checks_failed", result["reason"], result,
                        cand_commit, {"apply": 0.4, "build": 20.0, "checks": 4.0})
    else:
        result = _measured(rng, verdict)
        result["cand_commit"] = cand_commit
        res = JobResult(0, "", "finished", verdict, result["reason"], result, cand_commit,
                        {"apply": 0.4, **result["timings"], "total": seconds})
    return Outcome(seconds, json.dumps(res.to_dict()))


def plan_outcomes(cands: Sequence[Candidate], rng: random.Random
                  ) -> dict[tuple[str, str], Outcome]:
    """Each candidate's exploration outcome, and a confirmation outcome for the winners."""
    names = [n for n, _ in OUTCOMES]
    weights = [w for _, w in OUTCOMES]
    plan: dict[tuple[str, str], Outcome] = {}
    for cand in cands:
        verdict = rng.choices(names, weights)[0]
        plan[(cand.id, "explore")] = _outcome(rng, cand, "explore", verdict)
        if verdict == "improved":
            again = "improved" if rng.random() < CONFIRM_RATE else "no_change"
            plan[(cand.id, "confirm")] = _outcome(rng, cand, "confirm", again)
    return plan


# --- the loop's orchestration, driven against the simulated executor -------------------------


class Laps:
    """Wall time per phase: `lap(name)` charges the time since the previous lap to `name`."""

    def __init__(self) -> None:
        self.spent = dict.fromkeys(PHASES, 0.0)
        self.last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.spent[name] += now - self.last
        self.last = now

    def skip(self) -> None:
        """Charge nothing for the time since the last lap (the simulated proposer's)."""
        self.last = time.perf_counter()


class SimProposer:
    """Hands out candidates: all at once (static) or `batch` per call (continuous)."""

    def __init__(self, cands: list[Candidate], batch: int | None) -> None:
        self.name = "patches"
        self.continuous = batch is not None
        self.skipped: list[tuple[str, str, str]] = []
        self._left = deque(cands)
        self._batch = batch or len(cands)

    def propose(self) -> list[Candidate]:
        n = min(self._batch, len(self._left))
        return [self._left.popleft() for _ in range(n)]


@dataclass
class SimReport:
    """One simulated run: counts, orchestration wall time per phase, and the run summary."""

    mode: str
    proposer: str
    workers: int
    explored: int  # explorations run
    confirms: int  # confirmations run
    skipped: int  # candidates recorded as skipped (not novel) without running
    seconds: float  # orchestration wall time, the sum of `phases`
    phases: dict[str, float]
    journal_writes: int  # rows the journal inserted or updated (sqlite total_changes)
    peak_in_flight: int
    wait_calls: int
    virtual_hours: float  # simulated time the run took
    submitted: list[int]  # exp ids in submission order
    summary: dict[str, Any]

    @property
    def experiments(self) -> int:
        return self.explored + self.confirms

    @property
    def ms_per_experiment(self) -> float:
        return 1000 * self.seconds / max(self.experiments, 1)


class LoopSim:
    """`run_loop`'s orchestration over a `SimExecutor`, phase by phase on a `Laps` clock."""

    def __init__(self, root: Path, journal: Journal, executor: SimExecutor, spec: Spec,
                 proposer: SimProposer) -> None:
        self.root = root
        self.ws = Workspace(root)
        self.journal = journal
        self.log = LoopLog(journal)
        self.executor: Executor = executor
        self.sim = executor
        self.spec = spec
        self.spec_data = spec.model_dump()
        self.proposer = proposer
        self.loop_id = "sim-" + hashlib.sha1(str(root).encode()).hexdigest()[:8]
        self.baseline = "0" * 40
        self.admitted: dict[str, str] = {}
        self.this_run: dict[str, tuple[str, str]] = {}
        self.other_runs: dict[str, dict[str, str]] = {}
        self.wave_no = 1
        self.explored = 0
        self.confirms = 0
        self.submitted: list[int] = []
        self.laps = Laps()
        self.log.create(self.loop_id, root, f"readfirst/{self.loop_id}", self.baseline,
                        {"loop": {"proposer": proposer.name, "workers": len(executor.workers)},
                         "metric": {"name": "time_ms", "unit": "ms", "direction": "lower"},
                         "workers": len(executor.workers), "proposer": proposer.name})

    # run_loop's closures, with the same journal calls

    def record_skipped(self, skipped: list[tuple[str, str, str]]) -> None:
        recorded = {r["candidate_id"] for r in self.log.experiments(self.loop_id)}
        for cid, title, reason in skipped:
            if cid not in recorded:
                stub = Candidate(cid, title, "", "", self.proposer.name)
                exp = self.log.start_experiment(self.loop_id, 0, "explore", stub, self.baseline,
                                                None, "skipped")
                self.log.finish_experiment(exp, "skipped", reason=reason, outcome="discarded")

    def remember(self, cand: Candidate, seq: int) -> None:
        if cand.diff:
            self.this_run.setdefault(normalized_diff_hash(cand.diff),
                                     (cand.id, f"experiment #{seq} of run {self.loop_id}"))

    def duplicate_of(self, cand: Candidate) -> str | None:
        """As run_loop: this run's index in memory; earlier runs read once per baseline."""
        digest = normalized_diff_hash(cand.diff)
        if digest in self.this_run and self.this_run[digest][0] != cand.id:
            return f"same change as {self.this_run[digest][1]}"
        if self.baseline not in self.other_runs:
            found: dict[str, str] = {}
            for row in self.journal.db.execute(
                "SELECT loop_id, seq, candidate_json FROM experiments WHERE baseline = ?"
                " AND loop_id != ? AND status NOT IN ('cancelled', 'skipped')",
                (self.baseline, self.loop_id),
            ).fetchall():
                diff = json.loads(row["candidate_json"]).get("diff", "")
                if diff:
                    found.setdefault(normalized_diff_hash(diff),
                                     f"experiment #{row['seq']} of run {row['loop_id']}")
            self.other_runs[self.baseline] = found
        where = self.other_runs[self.baseline].get(digest)
        return f"same change as {where}" if where else None

    def admit(self, fresh: list[Candidate]) -> list[Candidate]:
        out = []
        for cand in fresh:
            digest = normalized_diff_hash(cand.diff)
            earlier = self.admitted.get(digest)
            dup = (f"same change as candidate {earlier}" if earlier and earlier != cand.id
                   else self.duplicate_of(cand))
            self.admitted.setdefault(digest, cand.id)
            if dup:
                self.record_skipped([(cand.id, cand.title, f"not novel: {dup}")])
            else:
                out.append(cand)
        self.laps.lap("admit")
        return out

    def refill(self) -> list[Candidate]:
        if not self.proposer.continuous:
            return []
        history = [e for e in self.log.summary(self.loop_id)["experiments"]
                   if e["kind"] == "explore"]
        del history  # the proposer would read it; freeing it is part of the cost
        self.laps.lap("refill")
        fresh = self.proposer.propose()
        self.laps.skip()
        out = self.admit(fresh)
        self.record_skipped(self.proposer.skipped)
        self.laps.lap("admit")
        return out

    def start(self, cand: Candidate, worker: str, kind: str) -> Handle:
        """start_experiment, Job, submit, set_pid: one submission of `run_wave`."""
        exp_id = self.log.start_experiment(self.loop_id, self.wave_no, kind, cand,
                                           self.baseline, worker)
        self.remember(cand, self.log.seq_of(exp_id))
        job = Job(exp_id, str(self.root), self.baseline, cand.to_dict(), self.spec_data,
                  clean_build=kind == "confirm")
        self.laps.lap("start")
        handle = self.executor.submit(job, worker)
        self.laps.lap("submit")
        self.log.set_pid(exp_id, handle.pid or 0)
        self.submitted.append(exp_id)
        if kind == "confirm":
            self.confirms += 1
        self.laps.lap("start")
        return handle

    def finish(self, res: JobResult) -> None:
        final = res.status in ("skipped", "worker_died")
        self.laps.lap("track")
        self.log.finish_experiment(res.exp_id, res.status, verdict=res.verdict,
                                   reason=res.reason, result=res.result,
                                   cand_commit=res.cand_commit, timings=res.timings,
                                   outcome="discarded" if final else None)
        self.laps.lap("finish")
        if res.status == "base_failed":
            raise BaseFailedError(res.reason)

    def run_wave(self, batch: list[tuple[Candidate, str]], kind: str) -> list[_Tried]:
        handles, cands = [], {}
        for cand, worker in batch:
            handle = self.start(cand, worker, kind)
            handles.append(handle)
            cands[handle.exp_id] = cand
        tried = []
        pending = {h.exp_id: h for h in handles}
        while pending:
            results = self.executor.wait_any(list(pending.values()))
            self.laps.lap("wait")
            for res in results:
                del pending[res.exp_id]
                self.laps.lap("handles")
                self.finish(res)
                tried.append(_Tried(cands[res.exp_id], res.exp_id, res))
        out = sorted(tried, key=lambda t: t.exp_id)
        self.laps.lap("track")
        return out

    def settle(self, winner: _Tried, check: _Tried) -> bool:
        """`confirm` after its re-measurement: land the winner, or discard both."""
        res = check.result
        if res.verdict != "improved" or res.result is None or res.cand_commit is None:
            moved = "on the new baseline " if winner.result.result and \
                winner.result.result.get("base_commit") != self.baseline else ""
            why = f"not confirmed {moved}on {res.worker}: {res.verdict or res.status}"
            self.log.discard([check.exp_id])
            self.log.discard([winner.exp_id], f"{winner.result.reason}; {why}")
            self.laps.lap("settle")
            return False
        # the real loop makes the commit with `git commit-tree` here (not simulated)
        commit = hashlib.sha1(f"{self.baseline}+{check.exp_id}".encode()).hexdigest()
        self.log.land(self.loop_id, [winner.exp_id, check.exp_id], commit)
        self.baseline = commit
        self.laps.lap("settle")
        return True

    def confirm(self, winner: _Tried) -> bool:
        others = [w for w in self.executor.workers if w != winner.result.worker] \
            or self.executor.workers
        self.laps.lap("track")
        (check,) = self.run_wave([(winner.cand, others[0])], "confirm")
        return self.settle(winner, check)

    def wave_summary(self) -> None:
        experiments = self.log.summary(self.loop_id)["experiments"]
        refresh_from_experiments(self.ws, self.journal, str(self.root), experiments)
        del experiments  # freeing thousands of dicts is part of the cost
        self.laps.lap("wave_summary")

    # the two schedules

    def waves(self, queue: list[Candidate]) -> None:
        """The loop's schedule: a wave of W explorations, then each winner confirmed alone."""
        while True:
            if not queue:
                queue = self.refill()
                if not queue:
                    break
            size = min(len(self.executor.workers), len(queue))
            batch, queue = queue[:size], queue[size:]
            self.laps.lap("track")
            tried = self.run_wave(list(zip(batch, self.executor.workers, strict=False)),
                                  "explore")
            self.explored += len(batch)
            winners = [t for t in tried if t.result.verdict == "improved"]
            self.laps.lap("track")
            for t in tried:
                if t.result.verdict != "improved" and t.result.status == "finished":
                    self.laps.lap("pick")
                    self.log.discard([t.exp_id])
                    self.laps.lap("settle")
            self.laps.lap("pick")
            ranked = sorted(winners, key=lambda t: _gain(t, self.spec), reverse=True)
            self.laps.lap("track")
            for winner in ranked:
                self.confirm(winner)
            self.wave_summary()
            self.wave_no += 1

    def rolling(self, queue: list[Candidate]) -> None:
        """At most W in flight: a freed worker takes a pending confirmation or the next
        candidate at once; summary + research refresh after every W explorations."""
        width = len(self.executor.workers)
        idle = deque(self.executor.workers)
        todo = deque(queue)
        running: dict[int, Handle] = {}
        meta: dict[int, tuple[Candidate, _Tried | None]] = {}
        confirms: deque[_Tried] = deque()
        exhausted = False
        while True:
            while idle:
                winner = confirms.popleft() if confirms else None
                if winner is None and not todo and not exhausted:
                    todo.extend(self.refill())
                    exhausted = not todo
                if winner is None and not todo:
                    break
                worker = idle.popleft()
                if winner is not None and worker == winner.result.worker and idle:
                    idle.append(worker)
                    worker = idle.popleft()
                cand = winner.cand if winner is not None else todo.popleft()
                self.laps.lap("track")
                handle = self.start(cand, worker, "confirm" if winner else "explore")
                running[handle.exp_id] = handle
                meta[handle.exp_id] = (cand, winner)
            if not running:
                break
            results = self.executor.wait_any(list(running.values()))
            self.laps.lap("wait")
            for res in results:
                del running[res.exp_id]
                idle.append(res.worker)
                cand, winner = meta.pop(res.exp_id)
                self.laps.lap("handles")
                self.finish(res)
                tried = _Tried(cand, res.exp_id, res)
                if winner is not None:
                    self.settle(winner, tried)
                    continue
                self.explored += 1
                if res.verdict == "improved":
                    confirms.append(tried)
                elif res.status == "finished":
                    self.log.discard([res.exp_id])
                    self.laps.lap("settle")
                if self.explored % width == 0:
                    self.laps.lap("track")
                    self.wave_summary()
                    self.wave_no += 1
            self.laps.lap("track")

    def run(self, mode: str) -> dict[str, Any]:
        """Propose, admit, run the schedule, finish the run; the run summary."""
        fresh = self.proposer.propose()
        self.laps = Laps()
        self.record_skipped(self.proposer.skipped)
        queue = self.admit(fresh)
        if mode == "wave":
            self.waves(queue)
        else:
            self.rolling(queue)
        self.executor.close()
        self.log.finish(self.loop_id, "done", "no candidates left")
        summary = self.log.summary(self.loop_id)
        self.laps.lap("final")
        return summary


def simulate(workers: int, experiments_per_worker: int = 3, seed: int = 0, *,
             mode: str = "wave", proposer: str = "static", dup_rate: float = 0.01,
             profile: cProfile.Profile | None = None) -> SimReport:
    """One simulated loop run with `workers` workers and workers x experiments_per_worker
    candidates, on a fresh journal in a temp dir; `profile` profiles the orchestration only."""
    if mode not in ("wave", "rolling") or proposer not in ("static", "continuous"):
        raise ValueError(f"mode {mode!r} / proposer {proposer!r}")
    rng = random.Random(seed)
    cands = make_candidates(workers * experiments_per_worker, rng, dup_rate)
    outcomes = plan_outcomes(cands, rng)
    spec = Spec(target=TargetSection(build="make", bench="./bench", checks="make check"),
                metric=MetricSection(name="time_ms", unit="ms"))
    with tempfile.TemporaryDirectory(prefix="rf-schedsim-") as tmp:
        root = Path(tmp)
        Workspace(root).ensure()
        journal = Journal(Workspace(root).journal_path)
        try:
            sim = SimExecutor(workers, outcomes)
            loop = LoopSim(root, journal, sim, spec,
                           SimProposer(cands, workers if proposer == "continuous" else None))
            changes = journal.db.total_changes
            if profile is not None:
                profile.enable()
            try:
                summary = loop.run(mode)
            finally:
                if profile is not None:
                    profile.disable()
            writes = journal.db.total_changes - changes
        finally:
            journal.close()
    skipped = sum(1 for e in summary["experiments"] if e["wave"] == 0)
    return SimReport(mode, proposer, workers, loop.explored, loop.confirms, skipped,
                     sum(loop.laps.spent.values()), loop.laps.spent, writes, sim.peak_in_flight,
                     sim.wait_calls, sim.now / 3600, loop.submitted, summary)


# --- the report ------------------------------------------------------------------------------


def measure(workers: int, epw: int, seed: int, mode: str, proposer: str,
            repeat: int) -> SimReport:
    """The fastest of `repeat` identical runs (other load on the machine only adds time)."""
    return min((simulate(workers, epw, seed, mode=mode, proposer=proposer)
                for _ in range(repeat)), key=lambda r: r.seconds)


def print_tables(reports: list[SimReport]) -> None:
    print("| mode | workers | experiments (confirms) | total orchestration s | ms / experiment |"
          " journal writes / experiment | peak in-flight | simulated h |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in reports:
        print(f"| {r.mode} | {r.workers} | {r.experiments} ({r.confirms}) | {r.seconds:.3f} |"
              f" {r.ms_per_experiment:.3f} | {r.journal_writes / r.experiments:.2f} |"
              f" {r.peak_in_flight} | {r.virtual_hours:.1f} |")
    print("\nµs per experiment, by phase:\n")
    print("| mode | workers | " + " | ".join(PHASES) + " |")
    print("|---|---:|" + "---:|" * len(PHASES))
    for r in reports:
        cells = " | ".join(f"{1e6 * r.phases[p] / r.experiments:.1f}" for p in PHASES)
        print(f"| {r.mode} | {r.workers} | {cells} |")
    print()
    for p in PHASES:
        print(f"- {p}: {PHASE_HELP[p]}")


def print_growth(reports: list[SimReport]) -> None:
    """Which phases' per-experiment cost grows from the fewest to the most workers."""
    print()
    for mode in dict.fromkeys(r.mode for r in reports):
        rs = sorted((r for r in reports if r.mode == mode), key=lambda r: r.workers)
        lo, hi = rs[0], rs[-1]
        if lo is hi:
            continue
        total = hi.ms_per_experiment / lo.ms_per_experiment
        grown = []
        for p in PHASES:
            a, b = (1e6 * r.phases[p] / r.experiments for r in (lo, hi))
            if b - a > 3 and b > 1.5 * a:
                grown.append(f"{p} {a:.1f} -> {b:.1f} µs ({b / max(a, 1e-9):.1f}x)")
        print(f"{mode}: ms per experiment x{total:.2f} from {lo.workers} to {hi.workers} "
              f"workers; growing phases: {', '.join(grown) or 'none (> 3 µs and > 1.5x)'}")


def print_profile(workers: int, epw: int, seed: int, mode: str, proposer: str,
                  top: int = 5) -> None:
    """cProfile one run; the top functions of readfirst's own code by cumulative time."""
    prof = cProfile.Profile()
    simulate(workers, epw, seed, mode=mode, proposer=proposer, profile=prof)
    stats = pstats.Stats(prof).stats  # type: ignore[attr-defined]
    own = [(ct, nc, f"{Path(f).resolve().relative_to(SRC.parent)}:{line} {fn}")
           for (f, line, fn), (_cc, nc, _tt, ct, _callers) in stats.items()
           if Path(f).resolve().is_relative_to(SRC)]
    print(f"\ncProfile, {mode} mode, {workers} workers, {proposer} proposer: top {top} "
          "functions of readfirst's code by cumulative time (profiling overhead included)\n")
    print("| function | calls | cumulative s | µs / call |")
    print("|---|---:|---:|---:|")
    for ct, nc, name in sorted(own, reverse=True)[:top]:
        print(f"| `{name}` | {nc} | {ct:.3f} | {1e6 * ct / nc:.1f} |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", default="10,100,1000", help="comma-separated worker counts")
    ap.add_argument("--experiments-per-worker", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--mode", choices=("wave", "rolling", "both"), default="both")
    ap.add_argument("--proposer", choices=("static", "continuous"), default="static")
    ap.add_argument("--repeat", type=int, default=3, help="runs per row; the fastest is shown")
    ap.add_argument("--no-profile", action="store_true")
    args = ap.parse_args(argv)
    counts = [int(w) for w in args.workers.split(",") if w.strip()]
    modes = ("wave", "rolling") if args.mode == "both" else (args.mode,)
    epw = args.experiments_per_worker
    simulate(10, 1, args.seed)  # warm-up: imports, statement cache
    reports = [measure(w, epw, args.seed, m, args.proposer, args.repeat)
               for m in modes for w in counts]
    print(f"## Orchestration cost per experiment ({epw} experiments per worker, "
          f"{args.proposer} proposer, seed {args.seed}, best of {args.repeat})\n")
    print_tables(reports)
    print_growth(reports)
    if not args.no_profile:
        print_profile(max(counts), epw, args.seed, modes[0], args.proposer)
    return 0


if __name__ == "__main__":
    sys.exit(main())
