"""The executor's workers as the loop sees them: healthy or quarantined as too noisy, busy or
idle, and when each is due for its next A-vs-A noise check; the jobs in flight on them; and
the second opinions a confirmed winner needs before it lands (the verify pool, a review)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from readfirst.core.candidate import Candidate
from readfirst.core.config import Spec
from readfirst.loop.executors.base import Executor, Handle, Job, JobResult
from readfirst.loop.landing import LandingQueue, Tried
from readfirst.loop.loop_setup import NoiseCheck, Setup
from readfirst.store.loop_journal import LoopLog

Kind = Literal["explore", "confirm", "noise", "verify"]
NOISE_STUB = Candidate("noise-check", "worker noise check (A vs A)", "", "", "readfirst")


@dataclass
class Flight:
    """A job in flight: what it measures, on which baseline, and the winner it confirms."""

    cand: Candidate
    kind: Kind
    worker: str
    baseline: str
    handle: Handle
    winner: Tried | None = None
    speculative: bool = False  # a confirmation on a tree without some winners ahead of it


class WorkerPool:
    def __init__(self, executor: Executor, noise: NoiseCheck, log: LoopLog, run_id: str,
                 say: Callable[[str], None]) -> None:
        self.executor, self.noise, self.log, self.run_id, self.say = (
            executor, noise, log, run_id, say)
        self.quarantined: set[str] = set()
        self.checked: dict[str, int] = {}  # worker -> wave of its last noise check

    def healthy(self) -> list[str]:
        return [w for w in self.executor.workers if w not in self.quarantined]

    def all_quarantined(self) -> bool:
        return all(w in self.quarantined for w in self.executor.workers)

    def idle(self, busy: set[str]) -> list[str]:
        return [w for w in self.healthy() if w not in busy]

    def noise_due(self, worker: str, wave: int) -> bool:
        last = self.checked.get(worker)
        return self.noise.enabled and (last is None or wave - last >= self.noise.every)

    def judge_noise(self, worker: str, exp_id: int, res: JobResult, wave: int) -> None:
        """A-vs-A: a worker whose baseline CV is above the threshold is quarantined (on
        SkyPilot, replaced with a fresh VM, checked before its first experiment)."""
        result = res.result or {}
        cv, limit = result.get("cv"), self.noise.max_cv
        noisy = cv is None or cv > limit
        self.log.record_noise(self.run_id, worker, cv, result.get("n"), noisy)
        self.log.discard([exp_id])
        self.checked[worker] = wave
        if noisy:
            self.say(f"  [{worker}] noise CV {cv if cv is None else f'{cv:.1%}'} > "
                     f"{limit:.0%}: quarantined")
            if hasattr(self.executor, "replace_worker"):
                self.executor.replace_worker(worker)
            else:
                self.quarantined.add(worker)


def run_alone(ex: Executor, log: LoopLog, run_id: str, wave: int, cand: Candidate,
              baseline: str, root: Path, spec: Spec) -> Tried:
    """One confirmation on another executor's first worker (the verify pool), waited for."""
    worker = ex.workers[0]
    exp_id = log.start_experiment(run_id, wave, "verify", cand, baseline, worker)
    job = Job(exp_id, str(root), baseline, cand.to_dict(), spec.model_dump(), clean_build=True)
    handle = ex.submit(job, worker)
    log.set_pid(exp_id, handle.pid or 0)
    res = ex.wait_any([handle])[0]  # no timeout: returns once the job is done
    log.finish_experiment(exp_id, res.status, verdict=res.verdict, reason=res.reason,
                          result=res.result, cand_commit=res.cand_commit, timings=res.timings)
    return Tried(cand, exp_id, res)


def second_opinion(s: Setup, wave: int, winner: Tried, check: Tried, baseline: str,
                   say: Callable[[str], None]) -> bool:
    """Whether a confirmed winner may land: the verify pool (e.g. arm64) must confirm it too,
    and a proposer that reviews (e.g. an LLM reading the project's conventions) must approve
    it. If not, the winner and its measurements are discarded with the reason."""
    if s.verifier is not None:
        other = run_alone(s.verifier, s.log, s.run_id, wave, winner.cand, baseline,
                          s.target.root, s.spec)
        if other.result.verdict != "improved":
            why = f"not confirmed on the verify pool: {other.result.verdict or other.result.status}"
            s.log.discard([winner.exp_id, check.exp_id, other.exp_id], why)
            say(f"  {why}: {winner.cand.title}")
            return False
    if hasattr(s.proposer, "review"):
        approve, why = s.proposer.review(s.ctx, winner.cand)
        if not approve:
            s.log.discard([winner.exp_id, check.exp_id], f"review veto: {why}")
            say(f"  review veto: {winner.cand.title}: {why}")
            return False
    return True


def cut_off(ex: Executor, log: LoopLog, flights: Iterable[Flight], landing: LandingQueue,
            halted: str | None) -> None:
    """After a halt, what was in flight is cancelled (redone on resume, not lost) and a
    confirmation that came back but did not land is discarded."""
    for flight in list(flights):
        ex.cancel(flight.handle)
        log.finish_experiment(flight.handle.exp_id, "cancelled", reason=f"cancelled: {halted}")
    for pending in landing.pending:
        if pending.check is not None:
            log.discard([pending.exp_id, pending.winner.exp_id], f"not landed: {halted}")
        for alt in pending.alts:
            if alt.check is not None:
                log.discard([alt.exp_id], f"speculative confirmation, not used: {halted}")


def confirmed(log: LoopLog, baseline: str, winner: Tried, check: Tried) -> bool:
    """Whether the second measurement agrees; if not, both are discarded."""
    res = check.result
    if res.verdict == "improved" and res.result is not None and res.cand_commit:
        return True
    moved = "on the new baseline " if winner.result.result and \
        winner.result.result.get("base_commit") != baseline else ""
    why = f"not confirmed {moved}on {res.worker}: {res.verdict or res.status}"
    log.discard([check.exp_id])
    log.discard([winner.exp_id], f"{winner.result.reason}; {why}")
    return False


def remeasure(log: LoopLog, landing: LandingQueue, baseline: str, winner: Tried,
              check: Tried) -> None:
    """A confirmation measured on top of a winner that was not kept: a winner there is
    measured again on the current tip; a loser there is discarded."""
    if check.result.verdict != "improved":
        confirmed(log, baseline, winner, check)
        return
    log.discard([check.exp_id], f"{check.result.reason}; measured on top of a winner that "
                "was not kept, so measured again")
    landing.add(winner, first=True)
