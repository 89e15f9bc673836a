"""Speculative confirmations: work for workers that would otherwise idle.

Winners confirmed at once are stacked on the landing queue's tip; when the head is not kept,
those measured on top of it are stale and were measured again, one chain after another, while
other workers idled. So a worker with nothing else to do measures a stacked winner also on the
tree it would land on if the head is not kept (the baseline with the winners between them
applied). When the head fails, a winner whose speculative measurement was made on exactly the
new tip keeps its place with it: that measurement is its confirmation (the one on top of the
failed head is discarded). Unused speculation is discarded with a reason that says so.

A speculative measurement never takes a worker that an exploration or a regular confirmation
could use: it starts only on a worker left idle after everything else was dispatched, and it
is cancelled the moment such work waits and no worker is idle."""

from __future__ import annotations

from typing import TYPE_CHECKING

from readfirst.loop.landing import Pending, Speculation, Tried, found_on
from readfirst.loop.loop_workers import remeasure

if TYPE_CHECKING:
    from readfirst.loop.loop import Loop

NOT_USED = "speculative confirmation (run on a worker that would otherwise idle), not used"


class Speculator:
    def __init__(self, loop: Loop) -> None:
        self.loop = loop
        self.started: set[int] = set()  # experiment ids of speculative measurements
        self.used: set[int] = set()  # those that became a winner's confirmation
        self.live: set[int] = set()  # those that may still be in flight (a superset)

    def fill(self) -> bool:
        """Free a speculating worker for regular work that waits, then give each worker
        still idle a speculative confirmation; whether anything started."""
        lp = self.loop
        if lp.opts.waves or lp.halted:
            return False
        started = self._preempt()
        for stale in lp.landing.impossible():
            self.retire(stale.exp_id, f"{NOT_USED}: it applies a winner ahead whose "
                        "confirmation failed, or leaves out one no longer in question")
        idle = lp.pool.idle(lp.busy_workers)
        wanted = lp.landing.speculations() if idle and len(lp.landing.pending) > 1 else []
        single = len(lp.pool.healthy()) == 1
        for pending, without in wanted:
            if not idle:
                break
            worker = next((w for w in idle if found_on(pending.winner) != w or single), None)
            on = worker and lp.landing.alt_tree(pending, without, lp.baseline)
            if worker is None or on is None:
                continue
            idle.remove(worker)
            exp_id = lp.submit(pending.winner.cand, worker, "confirm", pending.winner, on=on,
                               speculative=True)
            pending.alts.append(Speculation(exp_id, on, without))
            self.started.add(exp_id)
            self.live.add(exp_id)
            started = True
        return started

    def _preempt(self) -> bool:
        lp = self.loop
        # (work that waits now could not be taken by the idle workers, if any: it was
        # offered to them first; e.g. a winner whose only idle worker is its finder)
        if not self.live or not (lp.landing.winners or lp.queue):
            return False
        # (the few speculative flights, not a scan of every flight on each dispatch)
        self.live = {i for i in self.live if i in lp.flights}
        flights = [lp.flights[i] for i in sorted(self.live) if not lp.landing.owns(i)]
        started = False
        for flight in flights:
            if not self._work_for(flight.worker):
                continue
            lp.landing.drop(flight.handle.exp_id)  # may be speculated again later
            self.retire(flight.handle.exp_id, f"{NOT_USED}: cancelled, a regular experiment "
                        "needed its worker")
            started = lp.start_next(flight.worker) or started
        return started

    def _work_for(self, worker: str) -> bool:
        """Whether an exploration or a regular confirmation could start on `worker` now."""
        lp = self.loop
        single = len(lp.pool.healthy()) == 1
        if any(found_on(w) != worker or single for w in lp.landing.winners):
            return True
        return bool(lp.queue) and lp.stop_reason() is None and lp.queue.peek(
            lp.baseline, lp.landing.files(), lp.busy_files) is not None

    def back(self, tried: Tried) -> None:
        """A speculative measurement came back: kept on its winner's entry, or discarded
        when its winner has moved on."""
        if not self.loop.landing.speculation_back(tried):
            self.retire(tried.exp_id, f"{NOT_USED}: its winner was settled meanwhile")

    def after_head(self, head: Pending, kept: bool) -> None:
        """The head of the landing queue was settled. Kept: every speculation (measured
        without it) is of no use. Not kept: the queue is cut; winners whose speculation was
        measured on the new tip keep their place with it, the others go back as before."""
        lp = self.loop
        seq = lp.log.seq_of(head.exp_id)
        if kept:
            for alt in lp.landing.unused(head.winner):
                self.retire(alt.exp_id, f"{NOT_USED}: #{seq} ahead of it was kept")
            return
        cut = lp.landing.cut(lp.baseline)
        for promoted, old in zip(cut.promoted, cut.superseded, strict=True):
            self.used.add(promoted.exp_id)
            lp.say(f"  #{lp.log.seq_of(promoted.exp_id)}: speculative confirmation used "
                   f"for {promoted.winner.cand.title} (#{seq} was not kept)")
            self.retire(old, f"measured on top of #{seq}, which was not kept; the speculative "
                        f"confirmation #{lp.log.seq_of(promoted.exp_id)} on the new tip is "
                        "used instead")
        for alt in cut.unused:
            self.retire(alt.exp_id, f"{NOT_USED}: #{seq} was not kept, but the new tip is "
                        "not the tree it was measured on")
        for later in cut.back:
            assert later.check is not None
            remeasure(lp.log, lp.landing, lp.baseline, later.winner, later.check)

    def retire(self, exp_id: int, why: str) -> None:
        """An experiment no longer of use: cancelled if in flight, discarded with `why`."""
        lp = self.loop
        flight = lp.flights.get(exp_id)
        if flight is not None:
            lp.executor.cancel(flight.handle)
            lp.release(exp_id)
            lp.log.finish_experiment(exp_id, "cancelled", reason=why, outcome="discarded")
        else:
            lp.log.discard([exp_id], why)
