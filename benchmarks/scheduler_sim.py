"""Scheduler simulation: the real loop (`readfirst.loop.loop.Loop`) driven through a simulated
executor.

`SimExecutor` is an `Executor` whose jobs finish on a virtual clock after simulated build and
benchmark times with set verdicts: `wait_any` jumps the clock to the next completion, so a
10-minute experiment takes no real time. Everything else is readfirst's own code, unchanged:
`Loop.start` on a real git repository in a temp dir, its SQLite journal, novelty checks,
confirmations on another worker, landing winners as real commits on `readfirst/<run-id>`,
research refreshes, the stop rules, the report. It measures two things:

- worker utilisation (busy worker-seconds / (workers x simulated makespan)), with build times
  drawn log-uniformly from 20-200 s and benchmark times from 60-600 s (a 10x spread each), for
  the barrier (`--waves`: a wave waits for its slowest candidate, confirmations run one at a
  time after it) and without it (a finishing worker takes the next piece of work at once);
- readfirst's own orchestration cost per experiment (wall time of `Loop.run` minus the time
  spent inside the simulated executor), which should stay flat as workers grow.

Usage: .venv/bin/python benchmarks/scheduler_sim.py [--workers 10,100,1000]
       [--experiments-per-worker 10] [--seed 0[,1,...]] [--schedules both|no-barrier]
       [--proposer static|continuous]
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import random
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from readfirst.core.candidate import Candidate
from readfirst.core.config import MetricSection, Spec, TargetSection
from readfirst.core.target import Target
from readfirst.loop.executors.base import Handle, Job, JobResult
from readfirst.loop.loop import Loop, LoopOptions
from readfirst.measure.judge import side_dict
from readfirst.vcs import gitcli
from readfirst.vcs.workspace import target_at

# (verdict, probability): what a worker reports for an exploration
OUTCOMES = (("no_change", 0.50), ("regressed", 0.25), ("inconclusive", 0.07),
            ("improved", 0.06), ("checks_failed", 0.04), ("skipped", 0.05),
            ("worker_died", 0.03))
CONFIRM_RATE = 0.6  # share of winners that an independent re-measurement confirms
BUILD_SECONDS = (20.0, 200.0)  # log-uniform: a 10x spread
BENCH_SECONDS = (60.0, 600.0)
CLEAN_BUILD_FACTOR = 1.5  # confirmations build from a clean tree


def _log_uniform(rng: random.Random, lo_hi: tuple[float, float]) -> float:
    lo, hi = lo_hi
    return math.exp(rng.uniform(math.log(lo), math.log(hi)))


# --- what each job will do ---------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """A job's simulated duration and the result it reports (exp_id, worker filled in later)."""

    seconds: float
    result: dict[str, Any]


def make_candidates(n: int, rng: random.Random, dup_rate: float = 0.01) -> list[Candidate]:
    """`n` candidates, each adding its own small C file (so any of them applies on any
    baseline); about `dup_rate` of them repeat an earlier one's edit under another id."""
    cands = []
    for i in range(n):
        j = rng.randrange(i) if i and rng.random() < dup_rate else i
        diff = (f"diff --git a/src/sim/k{j}.c b/src/sim/k{j}.c\nnew file mode 100644\n"
                f"--- /dev/null\n+++ b/src/sim/k{j}.c\n@@ -0,0 +1,3 @@\n"
                f"+int kernel{j}(const int *v, int n) {{\n"
                f"+    int acc = 0; for (int i = 0; i < n; i += 2) acc += v[i] + v[i + 1];"
                f" return acc * {j + 2};\n+}}\n")
        cands.append(Candidate(f"patch:sim-{i:05d}.diff", f"unroll kernel{j} by two",
                               "halves the loop overhead in the hot path", diff, "patches",
                               (f"src/sim/k{j}.c:1",)))
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
    return {
        "verdict": verdict, "mode": "interleaved", "logs": "/tmp/runs/sim",
        "reason": f"{(ratio - 1) * 100:+.2f}% (p={p:.3g}; 95.0% CI "
                  f"[{ratio - half:.4f}, {ratio + half:.4f}])",
        "metric": {"name": "time_ms", "unit": "ms", "direction": "lower"},
        "ratio": ratio, "ci_low": ratio - half, "ci_high": ratio + half, "ci_level": 0.95,
        "p_value": p, "rounds": rounds, "base": side_dict(base), "cand": side_dict(cand),
        "secondary": {}, "flags": [] if rng.random() < 0.9 else ["high_cv_base"],
    }


def _outcome(rng: random.Random, kind: str, verdict: str) -> Outcome:
    build = _log_uniform(rng, BUILD_SECONDS) * (CLEAN_BUILD_FACTOR if kind == "confirm" else 1)
    bench = _log_uniform(rng, BENCH_SECONDS)
    timings = {"build": build, "bench": bench, "total": build + bench}
    if verdict == "skipped":
        secs = rng.uniform(1, 10)
        return Outcome(secs, {"status": "skipped", "reason": "does not apply: patch failed",
                              "timings": {"apply": secs}})
    if verdict == "worker_died":
        return Outcome((build + bench) * rng.random(),
                       {"status": "worker_died", "reason": "worker died (killed by signal 9)"})
    if verdict == "checks_failed":
        result = {"verdict": "checks_failed", "reason": "checks failed on the candidate",
                  "flags": ["checks_failed"], "tail": "assertion failed: sum == expected"}
        return Outcome(build + 5, {"status": "finished", "verdict": verdict,
                                   "reason": result["reason"], "result": result,
                                   "timings": {"build": build, "checks": 5.0}})
    result = _measured(rng, verdict)
    return Outcome(build + bench, {"status": "finished", "verdict": verdict,
                                   "reason": result["reason"], "result": result,
                                   "timings": timings})


def plan_outcomes(cands: Sequence[Candidate], rng: random.Random
                  ) -> dict[tuple[str, str], Outcome]:
    """Each candidate's exploration, and a confirmation for the winners."""
    names, weights = zip(*OUTCOMES, strict=True)
    plan: dict[tuple[str, str], Outcome] = {}
    for cand in cands:
        verdict = rng.choices(names, weights)[0]
        plan[(cand.id, "explore")] = _outcome(rng, "explore", verdict)
        if verdict == "improved":
            again = "improved" if rng.random() < CONFIRM_RATE else "no_change"
            plan[(cand.id, "confirm")] = _outcome(rng, "confirm", again)
    return plan


# --- the simulated executor and proposer -------------------------------------------------------


class SimExecutor:
    """An `Executor` on a virtual clock: a job finishes `Outcome.seconds` after it starts.

    `wait_any` advances the clock to the earliest completion among the handles and returns
    every result due then; nothing sleeps. Jobs and results cross as JSON, as they would to
    other machines. The time spent in its own methods is kept apart (`own_seconds`)."""

    def __init__(self, workers: int, outcomes: dict[tuple[str, str], Outcome]) -> None:
        self.workers = [f"w{i}" for i in range(workers)]
        self.now = 0.0
        self.busy_seconds = 0.0  # worker-seconds spent on jobs
        self.peak_in_flight = 0
        self.own_seconds = 0.0
        self.log: list[tuple[float, str, str, int]] = []  # (time, "start"/"end", worker, id)
        self.baselines: dict[int, str] = {}  # exp_id -> the baseline its job was run on
        self._outcomes = outcomes
        self._running: dict[int, tuple[Handle, float, float, str]] = {}  # start, end, json
        self._heap: list[tuple[float, int]] = []
        # idle spells: (from, to, idle workers, why: `classify` reads the loop's state)
        self.idle_log: list[tuple[float, float, int, str]] = []
        self.classify: Callable[[], str] = lambda: "tail"

    def idle_workers(self) -> list[str]:
        busy = {h.worker for h, *_ in self._running.values()}
        return [w for w in self.workers if w not in busy]

    def submit(self, job: Job, worker: str) -> Handle:
        t0 = time.perf_counter()
        if any(h.worker == worker for h, *_ in self._running.values()):
            raise RuntimeError(f"worker {worker} is busy")
        job = Job(**json.loads(json.dumps(job.to_dict())))  # shipped as JSON
        kind = "confirm" if job.clean_build else "explore"
        out = self._outcomes[(job.candidate["id"], kind)]
        d = {"exp_id": job.exp_id, "worker": worker, **out.result}
        if d.get("result") is not None:
            d["result"] = {**d["result"], "base_commit": job.baseline}
            if d["verdict"] == "improved":  # the worker's commit is on its own machine
                d["cand_commit"] = f"{job.exp_id:040x}"
        handle = Handle(job.exp_id, worker, pid=None)
        self._running[job.exp_id] = (handle, self.now, self.now + out.seconds, json.dumps(d))
        self.baselines[job.exp_id] = job.baseline
        heapq.heappush(self._heap, (self.now + out.seconds, job.exp_id))
        self.peak_in_flight = max(self.peak_in_flight, len(self._running))
        self.log.append((self.now, "start", worker, job.exp_id))
        self.own_seconds += time.perf_counter() - t0
        return handle

    def poll(self, handle: Handle) -> JobResult | None:
        entry = self._running.get(handle.exp_id)
        return self._collect(handle.exp_id) if entry and entry[2] <= self.now else None

    def wait_any(self, handles: list[Handle], timeout: float | None = None) -> list[JobResult]:
        t0 = time.perf_counter()
        wanted = {h.exp_id for h in handles}
        due = sorted(self._running[i][2] for i in wanted if i in self._running)
        done: list[JobResult] = []
        if due and (timeout is None or due[0] <= self.now + timeout):
            self._advance(max(self.now, due[0]))
            aside = []
            while self._heap and self._heap[0][0] <= self.now:
                end, exp_id = heapq.heappop(self._heap)
                if exp_id in wanted and exp_id in self._running:
                    done.append(self._collect(exp_id))
                elif exp_id in self._running:
                    aside.append((end, exp_id))
            for item in aside:
                heapq.heappush(self._heap, item)
        elif timeout is not None:
            self._advance(self.now + timeout)
        self.own_seconds += time.perf_counter() - t0
        return done

    def _advance(self, to: float) -> None:
        """Move the clock, booking the idle workers' time under the loop's reason."""
        idle = len(self.workers) - len(self._running)
        if idle and to > self.now:
            self.idle_log.append((self.now, to, idle, self.classify()))
        self.now = to

    def cancel(self, handle: Handle) -> None:
        entry = self._running.pop(handle.exp_id, None)
        if entry is not None:
            self.busy_seconds += self.now - entry[1]
            self.log.append((self.now, "cancel", handle.worker, handle.exp_id))

    def close(self) -> None:
        for handle, *_ in list(self._running.values()):
            self.cancel(handle)

    def _collect(self, exp_id: int) -> JobResult:
        handle, start, end, result_json = self._running.pop(exp_id)
        self.busy_seconds += end - start
        self.log.append((end, "end", handle.worker, exp_id))
        return JobResult.from_dict(json.loads(result_json))


class SimProposer:
    """Hands out candidates: all at once (static, like forks/patches) or `batch` per call
    (continuous, like an LLM asked again when the queue runs dry)."""

    name = "sim"

    def __init__(self, cands: list[Candidate], batch: int | None = None) -> None:
        self.cands, self.batch, self.given = cands, batch, 0
        self.continuous = batch is not None

    @property
    def skipped(self) -> list[tuple[str, str, str]]:
        return []

    def propose(self, _ctx: Any) -> list[Candidate]:
        n = len(self.cands) if self.batch is None else self.batch
        out = self.cands[self.given:self.given + n]
        self.given += len(out)
        return out


# --- one simulated run ---------------------------------------------------------------------


@dataclass
class SimReport:
    mode: str  # "barrier" or "no barrier"
    workers: int
    explorations: int
    confirmations: int
    kept: int
    makespan_h: float  # simulated
    utilisation: float  # over the whole run
    while_work: float  # over the span where work remained (the tail left out; see `idle_reason`)
    idle: dict[str, float]  # idle worker-seconds by reason, as a share of workers x makespan
    loop_seconds: float  # readfirst's own wall time: Loop.run minus the simulated executor
    report_seconds: float  # the Markdown + HTML report at the end (part of loop_seconds)
    journal_writes: int
    peak_in_flight: int
    speculative: int  # speculative confirmations started (on workers that would have idled)
    speculative_used: int  # those that became a winner's confirmation
    speculation_wasted: float  # unused speculation's worker-seconds / (workers x makespan)
    summary: dict[str, Any] = field(repr=False)
    executor: SimExecutor = field(repr=False)
    speculative_ids: frozenset[int] = frozenset()  # experiment ids (= seq in a fresh journal)

    @property
    def experiments(self) -> int:
        return self.explorations + self.confirmations

    @property
    def ms_per_experiment(self) -> float:
        return 1e3 * (self.loop_seconds - self.report_seconds) / max(self.experiments, 1)


def _sim_target(root: Path) -> Target:
    """A real git repository for the loop to land commits in."""
    root.mkdir(parents=True)
    gitcli.git(root, "init", "-q")
    (root / "src").mkdir()
    (root / "src" / "main.c").write_text("int main(void) { return 0; }\n")
    env = {"GIT_AUTHOR_NAME": "sim", "GIT_AUTHOR_EMAIL": "sim@localhost",
           "GIT_COMMITTER_NAME": "sim", "GIT_COMMITTER_EMAIL": "sim@localhost"}
    gitcli.git(root, "add", "-A")
    gitcli.git(root, "commit", "-q", "-m", "base", env=env)
    return target_at(root)


def simulate(workers: int, experiments_per_worker: int = 10, seed: int = 0, *,
             barrier: bool = False, proposer: str = "static", dup_rate: float = 0.01,
             workdir: Path | None = None) -> SimReport:
    """One run of the real loop with `workers` simulated workers and workers x
    experiments_per_worker candidates, in a fresh repository (under `workdir`, kept, or in a
    temp dir)."""
    rng = random.Random(seed)
    cands = make_candidates(workers * experiments_per_worker, rng, dup_rate)
    sim = SimExecutor(workers, plan_outcomes(cands, rng))
    spec = Spec(target=TargetSection(build="make", bench="./bench", checks="make check"),
                metric=MetricSection(name="time_ms", unit="ms"))
    opts = LoopOptions(proposer="sim", workers=workers, waves=barrier)
    with tempfile.TemporaryDirectory(prefix="rf-schedsim-") as tmp:
        target = _sim_target((workdir or Path(tmp)) / "target")
        prop = SimProposer(cands, workers if proposer == "continuous" else None)
        loop = Loop.start(target, spec, opts, executor=sim, proposer=prop)  # type: ignore[arg-type]
        sim.classify = lambda: idle_reason(loop, prop)
        db = loop.log.db
        writes0 = db.total_changes
        report_t = [0.0]
        write_report = loop.write_report

        def timed_report() -> None:
            t0 = time.perf_counter()
            write_report()
            report_t[0] += time.perf_counter() - t0

        loop.write_report = timed_report  # type: ignore[method-assign]
        writes = [0]
        real_finish = loop.log.finish

        def finish(*a: Any, **kw: Any) -> None:  # the journal closes with the run
            writes[0] = db.total_changes - writes0
            real_finish(*a, **kw)

        loop.log.finish = finish  # type: ignore[method-assign]
        t0 = time.perf_counter()
        summary = loop.run()
        wall = time.perf_counter() - t0
    rows = summary["experiments"]
    makespan = sim.now
    capacity = workers * makespan
    spec = loop.speculator
    idle = book_idle(sim, rows, spec.started)
    spans = _spans(sim)
    wasted = sum(end - start for i, (start, end) in spans.items()
                 if i in spec.started and i not in spec.used)
    return SimReport(
        "barrier" if barrier else "no barrier", workers,
        sum(1 for r in rows if r["kind"] == "explore" and r["wave"] > 0),
        sum(1 for r in rows if r["kind"] == "confirm"),
        sum(1 for r in rows if r["kind"] == "confirm" and r["outcome"] == "kept"),
        makespan / 3600, sim.busy_seconds / capacity if makespan else 0.0,
        sim.busy_seconds / (capacity - idle["tail"]) if makespan else 0.0,
        {k: v / capacity for k, v in idle.items()} if makespan else {},
        wall - sim.own_seconds, report_t[0], writes[0], sim.peak_in_flight,
        len(spec.started), len(spec.used), wasted / capacity if makespan else 0.0, summary, sim,
        frozenset(spec.started))


IDLE_REASONS = ("barrier", "proposer had nothing", "waiting for landing",
                "confirmation serialisation", "tail")


def idle_reason(loop: Loop, prop: SimProposer) -> str:
    """Why the loop left workers idle just now (it has just given every idle worker what it
    could): one of IDLE_REASONS, or "nothing to start" (settled by `book_idle`)."""
    if loop.halted or loop.stop_reason() is not None:
        return "nothing to start"
    if loop.opts.waves and loop.flights and (loop.queue or loop.landing.winners):
        return "barrier"  # work is waiting for the wave to end
    if loop.landing.winners or loop.landing.deferred:  # a winner waits for a worker or a tip
        return "confirmation serialisation"
    if loop.queue:  # candidates held until a change on their files is settled
        return "waiting for landing"
    if prop.continuous and prop.given < len(prop.cands):
        return "waiting for landing" if loop.landing.busy() else "proposer had nothing"
    return "nothing to start"


def book_idle(sim: SimExecutor, rows: list[dict[str, Any]],
              speculative: set[int] | frozenset[int] = frozenset()) -> Counter[str]:
    """Idle worker-seconds by reason. While nothing could start, the idle workers were
    waiting on the confirmations in flight: if a winner was measured again after that
    (stacked on one that was not kept), that is `confirmation serialisation`; otherwise it is
    the `tail`: only the last experiments' own results were awaited (an exploration before its
    confirmation, a confirmation before its landing), and no schedule could fill it. A
    speculative confirmation (`speculative`: started on a worker that would otherwise idle,
    in case the winner ahead is not kept) is not a winner measured again."""
    seen: set[str] = set()
    again: list[int] = []  # a fresh journal: experiment id = seq
    for r in sorted(rows, key=lambda r: r["seq"]):
        if r["kind"] == "confirm" and r["seq"] not in speculative:
            if r["candidate_id"] in seen:
                again.append(r["seq"])
            seen.add(r["candidate_id"])
    starts = {i: t for t, what, _w, i in sim.log if what == "start"}
    last_again = max((starts[i] for i in again if i in starts), default=-1.0)
    out: Counter[str] = Counter()
    for t0, t1, idle, why in sim.idle_log:
        if why == "nothing to start":
            why = "confirmation serialisation" if last_again >= t1 else "tail"
        out[why] += idle * (t1 - t0)
    return out


def _spans(sim: SimExecutor) -> dict[int, tuple[float, float]]:
    """exp_id -> (start, end) on the simulated clock."""
    starts: dict[int, float] = {}
    out: dict[int, tuple[float, float]] = {}
    for t, what, _worker, exp_id in sim.log:  # "start", then "end" or "cancel"
        if what == "start":
            starts[exp_id] = t
        else:
            out[exp_id] = (starts[exp_id], t)
    return out


def print_table(reports: list[SimReport]) -> None:
    idle = " | ".join(f"idle: {why}" for why in IDLE_REASONS)
    print("| schedule | workers | experiments (confirmations, kept) | simulated h |"
          f" utilisation while work remained | utilisation overall | {idle} |"
          " speculative confirmations (used) | unused speculation |"
          " loop ms / experiment | journal writes / experiment | peak in flight |")
    print("|---|---:|---:|---:|---:|---:|" + "---:|" * len(IDLE_REASONS) + "---:|" * 5)
    for r in reports:
        shares = " | ".join(f"{r.idle.get(why, 0.0):.1%}" for why in IDLE_REASONS)
        print(f"| {r.mode} | {r.workers} | {r.experiments} ({r.confirmations}, {r.kept}) |"
              f" {r.makespan_h:.1f} | {r.while_work:.1%} | {r.utilisation:.1%} | {shares} |"
              f" {r.speculative} ({r.speculative_used}) | {r.speculation_wasted:.1%} |"
              f" {r.ms_per_experiment:.2f} |"
              f" {r.journal_writes / max(r.experiments, 1):.1f} | {r.peak_in_flight} |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", default="10,100,1000", help="comma-separated worker counts")
    ap.add_argument("--experiments-per-worker", type=int, default=10)
    ap.add_argument("--seed", default="0", help="comma-separated seeds (one run each)")
    ap.add_argument("--schedules", choices=("both", "no-barrier"), default="both")
    ap.add_argument("--proposer", choices=("static", "continuous"), default="static")
    args = ap.parse_args(argv)
    counts = [int(w) for w in args.workers.split(",") if w.strip()]
    seeds = [int(x) for x in args.seed.split(",") if x.strip()]
    modes = (True, False) if args.schedules == "both" else (False,)
    epw = args.experiments_per_worker
    reports = []
    for w in counts:
        for seed in seeds:
            for b in modes:
                rep = simulate(w, epw, seed, barrier=b, proposer=args.proposer)
                if len(seeds) > 1:
                    rep.mode += f" (seed {seed})"
                reports.append(rep)
    print(f"## The loop on a simulated executor ({epw} candidates per worker, {args.proposer} "
          f"proposer, seed {args.seed}; build {BUILD_SECONDS[0]:.0f}-{BUILD_SECONDS[1]:.0f} s,"
          f" benchmark {BENCH_SECONDS[0]:.0f}-{BENCH_SECONDS[1]:.0f} s, log-uniform)\n")
    print_table(reports)
    return 0


if __name__ == "__main__":
    sys.exit(main())
