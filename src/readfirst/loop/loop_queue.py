"""The candidates still to explore: only novel ones are admitted (the others are recorded as
skipped, with where the same edit was measured), and the next one taken is the first that
can be measured now."""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterator
from pathlib import Path

from readfirst.core.candidate import Candidate
from readfirst.loop.landing import files_of
from readfirst.loop.novelty import Novelty
from readfirst.store.loop_journal import LoopLog
from readfirst.vcs import gitcli

Skip = tuple[str, str, str]  # (candidate id, title, reason)


class CandidateQueue:
    def __init__(self, log: LoopLog, run_id: str, repo: Path, source: str) -> None:
        self.log, self.run_id, self.repo, self.source = log, run_id, repo, source
        self.novelty = Novelty(log, run_id)
        self.items: deque[Candidate] = deque()
        self.apply_checks: dict[tuple[str, str], bool] = {}  # (candidate, baseline) -> applies

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[Candidate]:
        return iter(self.items)

    def add(self, fresh: list[Candidate], baseline: str, *, first: bool = False) -> int:
        """Queue the novel ones (`first`: ahead of the others, e.g. repairs); how many."""
        novel = self.admit(fresh, baseline)
        if first:
            self.items.extendleft(reversed(novel))
        else:
            self.items.extend(novel)
        return len(novel)

    def admit(self, fresh: list[Candidate], baseline: str) -> list[Candidate]:
        """The novel candidates; the others are recorded as skipped with the reason."""
        out, skipped = self.novelty.admit(fresh, baseline)
        self.record_skipped(skipped, baseline)
        return out

    def popleft(self) -> Candidate:
        return self.items.popleft()

    def take(self, baseline: str, held: set[str], busy: Counter[str]) -> Candidate | None:
        """The first queued candidate that can be measured now (`peek`), taken off the queue."""
        cand = self.peek(baseline, held, busy)
        if cand is not None:
            self.items.remove(cand)
        return cand

    def peek(self, baseline: str, held: set[str], busy: Counter[str]) -> Candidate | None:
        """The first queued candidate that can be measured now. One that touches a file of a
        change still being measured (`busy`) or landed (`held`), and does not apply on the
        baseline, waits until that change is settled: a fork's later commit usually builds
        on an earlier one (as it would in waves, where it came after it)."""
        for cand in self.items:
            files = files_of(cand)
            touched = files & held or any(busy[f] > 0 for f in files)
            if not touched or self.applies(cand, baseline):
                return cand
        return None

    def applies(self, cand: Candidate, baseline: str) -> bool:
        key = (cand.id, baseline)
        if key not in self.apply_checks:
            self.apply_checks[key] = gitcli.applies(self.repo, baseline, cand.diff)
        return self.apply_checks[key]

    def record_skipped(self, skipped: list[Skip], baseline: str) -> None:
        """Each skip once in the journal, as a settled experiment outside every wave."""
        if not skipped:  # (reading the run's rows costs O(experiments))
            return
        recorded = {r["candidate_id"] for r in self.log.experiments(self.run_id)}
        for cid, title, reason in skipped:
            if cid not in recorded:
                stub = Candidate(cid, title, "", "", self.source)
                exp = self.log.start_experiment(self.run_id, 0, "explore", stub, baseline,
                                                None, "skipped")
                self.log.finish_experiment(exp, "skipped", reason=reason, outcome="discarded")
