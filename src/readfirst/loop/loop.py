"""`readfirst run`: the optimisation loop.

Every idle worker takes the next piece of work at once: a noise check when one is due, a
winner to confirm, else the next candidate. Whatever finishes is judged: an exploration that
wins waits for a confirmation on another worker; one that fails to build or pass the checks
may come back repaired. Confirmations are measured on the landing queue's tip (the baseline
with the winners ahead of them applied: gains must stack), and winners land one at a time,
in order, as commits on `readfirst/<run-id>`; those measured on top of a winner that is not
kept are measured again, unless a worker that would have idled measured them on the right tree
already (`speculation.py`). Research is refreshed every W explorations. `--waves` keeps the old
rhythm (W candidates, wait for all, confirm the winners one by one). The stop rules are one
method; the journal records every step, so `--resume` continues after a kill.

Reading order: `run`, `dispatch` / `start_next` (or `dispatch_wave`), `propose`, `judge`,
`judge_exploration`, `confirm`, `land`, `refresh_research`, `stop_reason`, `finish`; pieces
start with an underscore. The queue is `loop_queue.py`; the workers `loop_workers.py`."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from readfirst.core.candidate import Candidate
from readfirst.core.config import Spec
from readfirst.core.constants import PROPOSE_WHILE_LANDING_IDLE_SHARE
from readfirst.core.errors import BudgetExceeded
from readfirst.core.notation import format_result_change
from readfirst.core.target import Target
from readfirst.loop import loop_setup
from readfirst.loop import loop_workers as lw
from readfirst.loop.executors.base import Executor, Job, JobResult
from readfirst.loop.landing import LandingQueue, Tried, files_of, found_on, land_commit
from readfirst.loop.loop_queue import CandidateQueue
from readfirst.loop.loop_setup import LoopOptions, Setup, new_run_id, open_run, repair_of, restore
from readfirst.loop.loop_workers import NOISE_STUB, Flight, Kind, WorkerPool
from readfirst.loop.speculation import Speculator
from readfirst.proposers.base import Proposer
from readfirst.research.orchestrate import refresh_from_experiments, research_after_landing
from readfirst.vcs import gitcli

__all__ = ["Loop", "LoopOptions", "new_run_id", "run_loop"]

Say = Callable[[str], None]


class Loop:
    """One run of the loop. Build it with `Loop.start` or `Loop.resume`, then `run()`."""

    def __init__(self, setup: Setup, say: Say) -> None:
        self.s, self.say = setup, say
        self.log, self.run_id, self.opts = setup.log, setup.run_id, setup.opts
        self.executor, self.proposer = setup.executor, setup.proposer
        self.baseline = setup.baseline
        self.flights: dict[int, Flight] = {}
        self.busy_workers: set[str] = set()  # the flights' workers and files, kept as they go
        self.busy_files: Counter[str] = Counter()
        self.landing = LandingQueue(setup.target.repo, setup.baseline, setup.spec)
        self.pool = WorkerPool(setup.executor, setup.noise, self.log, self.run_id, say)
        self.halted: str | None = None  # the baseline failed, or the proposer's budget ran out
        self.started = time.monotonic()
        # results and landings since the proposer was last asked (it was, for `candidates`)
        self.answers_since_ask = 0 if setup.candidates else 1
        self.wave_open = False  # --waves: the current wave's explorations are dispatched
        self.wave_fill = 0  # explorations dispatched in the current wave
        self.finished_explorations = 0
        self.queue = CandidateQueue(self.log, self.run_id, setup.target.repo, self.proposer.name)
        self.speculator = Speculator(self)  # work for workers that would otherwise idle
        self._restore(setup.rows, setup.candidates)

    @classmethod
    def start(cls, target: Target, spec: Spec, opts: LoopOptions, say: Say = lambda _m: None,
              *, executor: Executor | None = None, proposer: Proposer | None = None) -> Loop:
        """A new run from `opts.base`; `executor` / `proposer` replace the configured ones."""
        return cls(open_run(target, spec, opts, resume=False, executor=executor,
                            proposer=proposer), say)

    @classmethod
    def resume(cls, target: Target, spec: Spec, say: Say = lambda _m: None) -> Loop:
        """The last interrupted run, with the options it was started with."""
        loop = cls(open_run(target, spec, None, resume=True), say)
        say(f"resuming run {loop.run_id} at {gitcli.short(loop.baseline)}")
        return loop

    def _restore(self, rows: list[Any], candidates: list[Candidate]) -> None:
        """What the journal says is done; the rest is queued."""
        self.queue.record_skipped(self.proposer.skipped, self.baseline)
        done = restore(self.log, rows, candidates)
        for winner in done.winners:  # found by a killed run, not confirmed yet
            self.landing.add(winner)
        self.queue.add(done.todo, self.baseline)
        self.explored, self.nonwins, self.wave = done.explored, done.nonwins, done.wave
        if not self.s.resumed:
            self.say(f"run {self.run_id}: branch {self.s.branch} from "
                     f"{gitcli.short(self.baseline)}")
        self.say(f"{len(candidates)} candidates from {self.opts.proposer}, {len(self.queue)} to "
                 f"try, {len(self.proposer.skipped)} skipped")

    # --- the loop ----------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        """Until nothing can start and nothing is in flight: give every idle worker its next
        piece of work, then judge whatever finishes. The run summary at the end."""
        with self.s.cleanup:
            try:
                while self.dispatch() or self.flights:
                    handles = [f.handle for f in self.flights.values()]
                    for res in self.executor.wait_any(handles):
                        self.judge(res)
            except KeyboardInterrupt:
                self.executor.close()
                self.log.finish(self.run_id, "interrupted", "interrupted")
                self.write_report()
                raise
            return self.finish()

    def dispatch(self) -> bool:
        """Start the next piece of work on every idle worker; whether anything started."""
        if self.halted:
            return False
        if self.opts.waves:
            return self.dispatch_wave()
        started = False
        for worker in self.pool.idle(self.busy_workers):
            if self.start_next(worker):
                started = True
            elif not self.landing.winners:  # nothing for this worker is nothing for others
                break
        return self.speculator.fill() or started

    def start_next(self, worker: str) -> bool:
        """A noise check when due, else a winner to confirm, else the next candidate."""
        if self.pool.noise_due(worker, self.wave) and (self.queue or self.landing.winners):
            self.submit(NOISE_STUB, worker, "noise")
            return True
        winner = self.landing.take(worker, single=len(self.pool.healthy()) == 1)
        if winner is not None:
            self.submit(winner.cand, worker, "confirm", winner)
            return True
        if self.stop_reason() is None and (self.queue or self.propose()):
            cand = self.queue.take(self.baseline, self.landing.files(), self.busy_files)
            if cand is not None:
                self.submit(cand, worker, "explore")
                return True
        return False

    def dispatch_wave(self) -> bool:
        """--waves: W explorations, wait for all, then each winner confirmed alone."""
        if self.flights:
            return False
        if self.landing.winners:
            pool, found = self.pool.healthy(), found_on(self.landing.winners[0])
            worker = ([w for w in pool if w != found] or pool)[0]
            winner = self.landing.take(worker, single=len(pool) == 1)
            if winner is not None:
                self.submit(winner.cand, worker, "confirm", winner)
                return True
        if self.wave_open:
            self.wave_open = False
            self._next_wave()
        if self.stop_reason() is not None or not (self.queue or self.propose()):
            return False
        due = [w for w in self.pool.healthy() if self.pool.noise_due(w, self.wave)]
        for worker in due:
            self.submit(NOISE_STUB, worker, "noise")
        if due:
            return True
        left = self.opts.max_experiments
        size = min(len(self.pool.healthy()), len(self.queue),
                   len(self.queue) if left is None else left - self.explored)
        self.say(f"wave {self.wave}: {size} candidate(s) on {gitcli.short(self.baseline)}")
        for worker in self.pool.healthy()[:size]:
            self.submit(self.queue.popleft(), worker, "explore")
        self.wave_open = True
        return True

    def stop_reason(self) -> str | None:
        """Why no new candidate may start now (None: go on). Work in flight still finishes,
        and winners already found are still confirmed."""
        o = self.opts
        if o.max_experiments is not None and self.explored >= o.max_experiments:
            return "max experiments"
        if o.max_time is not None and time.monotonic() - self.started >= o.max_time:
            return "max time"
        if o.patience is not None and self.nonwins >= o.patience:
            return "patience"
        if self.pool.all_quarantined():
            return "every worker is too noisy (quarantined)"
        if o.max_cost is not None and \
                self.log.summary(self.run_id)["cost"]["total_usd"] >= o.max_cost:
            return "max cost"
        return None

    def propose(self) -> bool:
        """Ask a thinking proposer again, on the current baseline, knowing what was tried
        (only once something new came back since it was last asked); whether it gave any."""
        if not getattr(self.proposer, "continuous", False) or not self.answers_since_ask:
            return False
        if self.landing.busy():  # ask on the new baseline, unless many workers would wait
            idle = len(self.pool.idle(self.busy_workers)) - len(self.landing.winners)
            if idle < max(2, PROPOSE_WHILE_LANDING_IDLE_SHARE * len(self.pool.healthy())):
                return False
        self.answers_since_ask = 0
        ctx = self.s.ctx
        ctx.baseline = self.baseline
        ctx.history = [e for e in self.log.summary(self.run_id)["experiments"]
                       if e["kind"] == "explore"]
        try:
            fresh = self.queue.add(self.proposer.propose(ctx), self.baseline)
        except BudgetExceeded as e:
            self.halted = f"max cost: {e}"
            return False
        self.queue.record_skipped(self.proposer.skipped, self.baseline)
        self.say(f"{self.opts.proposer}: {fresh} new candidate(s)")
        return bool(fresh)

    def submit(self, cand: Candidate, worker: str, kind: Kind, winner: Tried | None = None,
               *, on: str | None = None, speculative: bool = False) -> int:
        """Journal the experiment, then hand its job to the worker; its id. A confirmation
        is measured on the landing queue's tip (a speculative one on `on`)."""
        on = on or (self.landing.tip if kind == "confirm" else self.baseline)
        exp_id = self.log.start_experiment(self.run_id, self.wave, kind, cand, on, worker)
        seq = self.log.seq_of(exp_id)  # the one number console, status and commits show
        if kind in ("explore", "confirm"):
            self.queue.novelty.remember(cand, seq)
        job = Job(exp_id, str(self.s.target.root), on, cand.to_dict(),
                  self.s.spec.model_dump(), clean_build=kind in ("confirm", "verify"),
                  kind="noise" if kind == "noise" else "experiment")
        handle = self.executor.submit(job, worker)
        self.log.set_pid(exp_id, handle.pid or 0)
        self.flights[exp_id] = Flight(cand, kind, worker, on, handle, winner, speculative)
        self.busy_workers.add(worker)
        self.busy_files.update(files_of(cand))
        if winner is not None and not speculative:
            self.landing.started(winner, exp_id)
        if kind == "explore":
            self.explored += 1
            self.wave_fill += 1
            if not self.opts.waves and self.wave_fill >= len(self.executor.workers):
                self._next_wave()
        if kind != "noise":
            self.say(f"  [{worker}] {'speculative ' if speculative else ''}{kind} #{seq}: "
                     f"{cand.title}")
        return exp_id

    def judge(self, res: JobResult) -> None:
        """Record what came back, then act on it by kind."""
        flight = self.release(res.exp_id)
        final = res.status in ("skipped", "worker_died", "dry_run")
        self.log.finish_experiment(res.exp_id, res.status, verdict=res.verdict,
                                   reason=res.reason, result=res.result,
                                   cand_commit=res.cand_commit, timings=res.timings,
                                   outcome="discarded" if final else None)
        if flight.kind != "noise":
            self.say(f"  [{res.worker}] #{self.log.seq_of(res.exp_id)} "
                     f"{res.verdict or res.status}: {res.reason}")
        if res.status == "base_failed":
            self.halted = f"baseline cannot be measured: {res.reason}"
            return
        tried = Tried(flight.cand, res.exp_id, res)
        if flight.kind == "noise":
            self.pool.judge_noise(flight.worker, res.exp_id, res, self.wave)
        elif flight.speculative and not self.landing.owns(res.exp_id):
            self.speculator.back(tried)
        elif flight.winner is not None:
            self.confirm(tried)
        else:
            self.judge_exploration(tried)

    def judge_exploration(self, tried: Tried) -> None:
        """A winner waits for its confirmation; a loser is discarded, and repaired if its
        proposer can; every W explorations the research is refreshed."""
        res = tried.result
        self.finished_explorations += 1
        self.answers_since_ask += 1
        if res.verdict == "improved":
            self.landing.add(tried)
        else:
            self.nonwins += 1
            if res.status == "finished":
                self.log.discard([tried.exp_id])
            self.queue.add(self._repairs(tried), self.baseline, first=True)
        width = len(self.executor.workers)
        if not self.opts.waves and self.finished_explorations % width == 0:
            self.refresh_research()

    def confirm(self, check: Tried) -> None:
        """A confirmation came back. Winners land in the order their confirmations started,
        each measured on the baseline with the ones before it: when one is not kept, those
        measured on top of it are measured again (if they still won) on the new tip."""
        stale = self.landing.back(check)
        if stale is not None:
            lw.remeasure(self.log, self.landing, self.baseline, stale, check)
        self.land_ready()

    def land_ready(self) -> None:
        """Land the head of the queue while its confirmation is back; one not kept cuts the
        queue (see `Speculator.after_head`)."""
        while (head := self.landing.ready()) is not None:
            assert head.check is not None
            kept = lw.confirmed(self.log, self.baseline, head.winner, head.check) and \
                self.land(head.winner, head.check)
            self.nonwins = 0 if kept else self.nonwins + 1
            self.speculator.after_head(head, kept)
        self.landing.settle(self.baseline)

    def land(self, winner: Tried, check: Tried) -> bool:
        """Winner confirmed: the verify pool and the proposer's review must agree, then it
        becomes a commit on the run's branch and the new baseline (one landing at a time)."""
        if not lw.second_opinion(self.s, self.wave, winner, check, self.baseline, self.say):
            return False
        try:  # the branch must be where the journal says, else someone forged it
            gitcli.check_branch(self.s.target.repo, self.s.branch, self.baseline)
        except gitcli.BranchMoved as e:
            self.halted = f"tampering: {e}"
            return False
        commit = land_commit(self.s.target, winner.cand, check.result, self.baseline,
                             self.run_id, self.log.seq_of(check.exp_id))
        self.log.land(self.run_id, [winner.exp_id, check.exp_id], commit)  # journal, then ref
        gitcli.git(self.s.target.repo, "update-ref", f"refs/heads/{self.s.branch}", commit,
                   self.baseline)
        self.answers_since_ask += 1
        change = format_result_change(check.result.result or {}, decimals=2)
        self.say(f"  kept: {winner.cand.title} ({change}) -> {gitcli.short(commit)}")
        self.baseline = commit
        return True

    def refresh_research(self) -> None:
        """Hypotheses behind failed candidates are demoted in the brief; once a change has
        landed, the research is run again on the new baseline."""
        updated = refresh_from_experiments(self.s.ws, self.log.j, str(self.s.target.root),
                                           self.log.summary(self.run_id)["experiments"])
        if updated:
            self.say(f"research: {updated} hypothesis(es) updated from wave {self.wave}")
        research_after_landing(self.s.target, self.s.spec, self.baseline)

    def finish(self) -> dict[str, Any]:
        """Mark the run done with its stop reason, write the report; the run summary."""
        lw.cut_off(self.executor, self.log, self.flights.values(), self.landing, self.halted)
        if not self.opts.waves and not self.halted:  # what came back since the last refresh
            self.refresh_research()
        reason = self.halted or self.stop_reason() or "no candidates left"
        try:
            gitcli.check_branch(self.s.target.repo, self.s.branch, self.baseline)
        except gitcli.BranchMoved as e:
            reason = f"tampering: {e}"
        if self.opts.dry_run:
            reason = f"dry run: nothing launched ({reason})"
        self.log.finish(self.run_id, "done", reason)
        self.write_report()
        self.say(f"stopped: {reason}")
        return self.log.summary(self.run_id)

    # --- the pieces --------------------------------------------------------------------------

    def _repairs(self, tried: Tried) -> list[Candidate]:
        """A fixed version of a candidate that failed to build or pass the checks."""
        try:
            return repair_of(self.proposer, self.s.ctx, self.s.spec, tried.cand, tried.result)
        except BudgetExceeded as e:
            self.halted = f"max cost: {e}"
            return []

    def release(self, exp_id: int) -> Flight:
        """A flight is over: its worker and files are free."""
        flight = self.flights.pop(exp_id)
        self.busy_workers.discard(flight.worker)
        self.busy_files.subtract(files_of(flight.cand))
        return flight

    def _next_wave(self) -> None:
        if self.opts.waves:
            self.refresh_research()
        self.wave += 1
        self.wave_fill = 0

    def write_report(self) -> None:
        loop_setup.write_run_report(self.log, self.s.ws, self.run_id)


def run_loop(target: Target, spec: Spec, opts: LoopOptions | None, *, resume: bool = False,
             say: Say = lambda _m: None) -> dict[str, Any]:
    """`readfirst run`: start (or resume) a run and run it to the end; the run summary."""
    with loop_setup.interrupts_marked(target):
        return (Loop.resume(target, spec, say) if resume or opts is None
                else Loop.start(target, spec, opts, say)).run()
