"""Landing winners: the queue of winners and their confirmations (`LandingQueue`), and the
commit a confirmed winner becomes: the candidate's tree on the baseline, with the evidence
(metric change, CI, p, rounds, where it was confirmed, provenance) in its message."""

from __future__ import annotations

import functools
import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path

from readfirst.core import constants as C
from readfirst.core.candidate import Candidate
from readfirst.core.config import Spec
from readfirst.core.notation import format_result_change
from readfirst.core.target import Target
from readfirst.loop.executors.base import JobResult
from readfirst.vcs import gitcli
from readfirst.vcs.apply import apply_candidate
from readfirst.vcs.gitcli import COMMIT_IDENTITY
from readfirst.vcs.workspace import Workspace


def evidence_line(result: dict, worker: str) -> str:  # type: ignore[type-arg]
    """`time_ms: 10.2 -> 9.1 ms (-10.80%, 95.0% CI [...], p=..., 9 rounds, confirmed on w1)`."""
    m = result.get("metric", {})
    unit = f" {m['unit']}" if m.get("unit") else ""
    change = format_result_change(result, decimals=2)
    return (f"{m.get('name')}: {result['base']['median']:.4g} -> "
            f"{result['cand']['median']:.4g}{unit} ({change}, p={result['p_value']:.2g}, "
            f"{result['rounds']} rounds, confirmed on {worker})")


def commit_message(cand: Candidate, res: JobResult, run_id: str, seq: int) -> str:
    lines = [cand.title, "", evidence_line(res.result or {}, res.worker)]
    if cand.provenance:
        lines.append("Provenance: " + ", ".join(cand.provenance))
    if cand.rationale:
        lines += ["", cand.rationale.strip()]
    lines += ["", f"readfirst run {run_id}, experiment #{seq}"]
    return "\n".join(lines)


def land_commit(target: Target, cand: Candidate, res: JobResult, baseline: str,
                run_id: str, seq: int) -> str:
    """The commit (not yet on any branch) that lands `cand` on `baseline`."""
    tree = candidate_tree(target, cand, res, baseline)
    return gitcli.git(target.repo, "commit-tree", tree, "-p", baseline, "-m",
                      commit_message(cand, res, run_id, seq), env=COMMIT_IDENTITY)


def candidate_tree(target: Target, cand: Candidate, res: JobResult, baseline: str) -> str:
    """The tree of the candidate on the baseline. A remote worker's commit lives on its
    machine only, so then the diff is applied again here, in a worktree of our own."""
    parent = res.cand_commit and gitcli.git(
        target.repo, "rev-parse", "--verify", "--quiet", f"{res.cand_commit}^", check=False)
    # made here, on this baseline's tree (or a commit on the landing queue's tip with it)
    if parent and gitcli.tree_of(target.repo, parent) == gitcli.tree_of(target.repo, baseline):
        return gitcli.tree_of(target.repo, res.cand_commit or "")
    ws = Workspace(target.root)
    with ws.lock_slot("land"):
        commit = apply_candidate(ws.checkout("land", baseline), baseline, cand)
    return gitcli.tree_of(target.repo, commit)


@dataclass
class Tried:
    """A candidate and what one experiment on it came back with."""

    cand: Candidate
    exp_id: int
    result: JobResult


@dataclass
class Speculation:
    """A winner stacked on unconfirmed ones, measured also on the tree it would land on if
    the winners `without` are not kept (run only on a worker that would otherwise idle)."""

    exp_id: int
    on: str  # the commit it is measured on: the baseline with the winners between applied
    without: frozenset[int]  # the winners ahead left out (their explorations' ids)
    check: Tried | None = None  # its result, once back


@dataclass
class Pending:
    """A confirmation in the landing queue, measured on the tip of the queue at its start:
    the baseline with every winner ahead of it applied. It lands only if they all did."""

    winner: Tried
    exp_id: int
    check: Tried | None = None  # its result, once back
    # measured without some winners ahead, in case they are not kept (most likely first)
    alts: list[Speculation] = field(default_factory=list)
    no_alt: bool = False  # an alternative tree could not be made


@dataclass
class Cut:
    """What a head that was not kept leaves: confirmations back (to judge again), winners
    promoted with their speculative confirmation, and experiments no longer of use."""

    back: list[Pending]
    promoted: list[Pending]  # the new queue: each one's speculation matched the new tip
    superseded: list[int]  # their own confirmations, measured on top of the failed head
    unused: list[Speculation]


class LandingQueue:
    """Winners waiting for their confirmation (best first), and the confirmations started,
    in the order they may land. Each confirmation is measured on the queue's tip, so winners
    confirmed at once must stack; when one is not kept, those measured on top of it are
    stale and measured again, unless a speculative confirmation (`speculation`, run on a
    worker that would otherwise idle) was measured on exactly the new tip."""

    def __init__(self, repo: Path, baseline: str, spec: Spec) -> None:
        self.repo, self.spec = repo, spec
        self.tip = baseline  # what the next confirmation is measured on
        self.winners: list[Tried] = []
        self.pending: list[Pending] = []
        self.stale: dict[int, Tried] = {}  # confirmation exp_id -> its winner
        self.deferred: list[Tried] = []  # do not apply on the tip: tried once it is empty
        self._next_tip: str | None = None
        self._stacked: dict[tuple[str, int], str] = {}  # (parent, winner) -> commit
        self._alt: dict[tuple[str, tuple[int, ...]], str] = {}  # (baseline, applied) -> commit
        self._trees: dict[str, str] = {}  # commit -> its tree (commits do not change)

    def add(self, winner: Tried, *, first: bool = False) -> None:
        self.winners.insert(0, winner) if first else self.winners.append(winner)
        if not first:
            self.winners.sort(key=lambda t: gain(t, self.spec), reverse=True)

    def busy(self) -> bool:
        return bool(self.winners or self.pending)

    def files(self) -> set[str]:
        """The files the winners here touch."""
        out: set[str] = set()
        for t in (*self.winners, *self.deferred, *(p.winner for p in self.pending)):
            out |= files_of(t.cand)
        return out

    def take(self, worker: str, single: bool) -> Tried | None:
        """The best winner not found on `worker` (any, with a single worker) that applies
        on the tip, off the list; `started` then puts it in the queue."""
        for winner in list(self.winners):
            if found_on(winner) == worker and not single:
                continue
            self.winners.remove(winner)
            try:
                self._next_tip = self.stacked(self.tip, winner)
            except gitcli.GitError:
                self._next_tip = None
                if self.pending:
                    self.deferred.append(winner)
                    continue
            return winner
        return None

    def started(self, winner: Tried, exp_id: int) -> None:
        self.pending.append(Pending(winner, exp_id))
        self.tip = self._next_tip or self.tip

    def back(self, check: Tried) -> Tried | None:
        """Note a confirmation's result; its winner if it was stale (measured on top of a
        winner that was not kept)."""
        if check.exp_id in self.stale:
            return self.stale.pop(check.exp_id)
        next(p for p in self.pending if p.exp_id == check.exp_id).check = check
        return None

    def ready(self) -> Pending | None:
        """The head of the queue, once its result is back."""
        if self.pending and self.pending[0].check is not None:
            return self.pending.pop(0)
        return None

    def cut(self, baseline: str) -> Cut:
        """The head was not kept: those measured on top of it are stale. In queue order, one
        whose speculative confirmation was measured on exactly the new tip keeps its place
        with it; of the others, those back are returned, the rest noted for when they come
        back; every other speculation is unused."""
        out = Cut([], [], [], [])
        rest, self.pending, self.tip = self.pending, [], baseline
        tip_tree = self.tree(baseline)
        for p in rest:
            alt = next((a for a in p.alts if self.tree(a.on) == tip_tree), None)
            if alt is not None:
                try:
                    self.tip = self.stacked(self.tip, p.winner)
                except gitcli.GitError:  # cannot happen for a tree it was measured on
                    alt = None
                else:
                    tip_tree = self.tree(self.tip)
                    promoted = Pending(p.winner, alt.exp_id, alt.check)
                    self.pending.append(promoted)
                    out.promoted.append(promoted)
                    out.superseded.append(p.exp_id)
            out.unused += [a for a in p.alts if a is not alt]
            if alt is not None:
                continue
            if p.check is not None:
                out.back.append(p)
            else:
                self.stale[p.exp_id] = p.winner
        return out

    def unused(self, kept: Tried) -> list[Speculation]:
        """The head was kept: speculations measured without it are of no use."""
        out = []
        for p in self.pending:
            out += [a for a in p.alts if kept.exp_id in a.without]
            p.alts = [a for a in p.alts if kept.exp_id not in a.without]
        return out

    def impossible(self) -> list[Speculation]:
        """Speculations off the queue that apply a winner whose confirmation failed (it
        will not be kept), or an alternative no longer listed; off their entries."""
        if not any(p.alts for p in self.pending):
            return []
        wanted = {(id(p), w) for p, w in self.speculations(every=True)}
        out = []
        for p in self.pending:
            out += [a for a in p.alts if (id(p), a.without) not in wanted]
            p.alts = [a for a in p.alts if (id(p), a.without) in wanted]
        return out

    def speculations(self, every: bool = False) -> list[tuple[Pending, frozenset[int]]]:
        """The winners stacked on unconfirmed ones that want a speculative confirmation, and
        which winners ahead to leave out: always those whose confirmation already failed
        (they will not be kept), and some of those not back yet (they may fail), fewest and
        earliest first, up to C.SPECULATIONS_PER_WINNER per winner. Ranked across winners:
        every winner's most likely alternative first. Those already measured are left out
        (unless `every`)."""
        ranked: list[tuple[int, int, Pending, frozenset[int]]] = []
        lost: list[int] = []
        unknown: list[int] = []
        for i, p in enumerate(self.pending):
            failed = p.check is not None and p.check.result.verdict != "improved"
            if not failed and not p.no_alt:
                have = {a.without for a in p.alts}
                alts = _alternatives(lost, unknown)
                for rank, without in enumerate(alts if i < C.SPECULATION_DEPTH else alts[:1]):
                    if every or without not in have:
                        ranked.append((rank, i, p, without))
            if failed:
                lost.append(p.winner.exp_id)
            elif p.check is None:
                unknown.append(p.winner.exp_id)
        ranked.sort(key=lambda r: (r[0], r[1]))
        return [(p, w) for _, _, p, w in ranked]

    def alt_tree(self, entry: Pending, without: frozenset[int], baseline: str) -> str | None:
        """The baseline with the winners ahead of `entry` applied, but those `without`
        (None, and `no_alt` noted, when one does not apply). Cached by the baseline and the
        winners applied: entries that leave out the same winners share their prefix."""
        ahead = list(itertools.takewhile(lambda p: p is not entry, self.pending))
        if len(ahead) == len(self.pending):
            return None
        applied = [p.winner for p in ahead if p.winner.exp_id not in without]
        key = (baseline, tuple(w.exp_id for w in applied))
        if key not in self._alt:
            on = baseline
            for winner in applied:
                try:
                    on = self.stacked(on, winner)
                except gitcli.GitError:
                    entry.no_alt = True
                    return None
            self._alt[key] = on
        return self._alt[key]

    def tree(self, commit: str) -> str:
        if commit not in self._trees:
            self._trees[commit] = gitcli.tree_of(self.repo, commit)
        return self._trees[commit]

    def speculation_back(self, check: Tried) -> bool:
        """Note a speculative confirmation's result on its winner's entry; False when it is
        of no use any more."""
        for p in self.pending:
            for a in p.alts:
                if a.exp_id == check.exp_id:
                    a.check = check
                    return True
        return False

    def drop(self, exp_id: int) -> None:
        """A speculation cancelled: off its entry (it may be started again later)."""
        for p in self.pending:
            p.alts = [a for a in p.alts if a.exp_id != exp_id]

    def owns(self, exp_id: int) -> bool:
        """Whether `exp_id` is a confirmation in the queue (or a stale one): a speculative
        measurement is one once its winner was promoted with it."""
        return exp_id in self.stale or any(p.exp_id == exp_id for p in self.pending)

    def stacked(self, parent: str, winner: Tried) -> str:
        """`winner` applied on `parent` (cached: the same commit each time); GitError."""
        key = (parent, winner.exp_id)
        if key not in self._stacked:
            self._stacked[key] = gitcli.commit_diff(self.repo, parent, winner.cand.diff,
                                                    winner.cand.title)
        return self._stacked[key]

    def settle(self, baseline: str) -> None:
        """Nothing in the queue: the tip is the baseline, deferred winners are back."""
        if not self.pending:
            self.tip = baseline
            self.winners = sorted(self.winners + self.deferred, reverse=True,
                                  key=lambda t: gain(t, self.spec))
            self.deferred = []


def _alternatives(lost: list[int], unknown: list[int]) -> list[frozenset[int]]:
    """Which winners ahead to leave out: every failed one, and each subset (not the empty
    one when none failed: that is the regular confirmation's tree) of the first few not back
    yet, the most likely first (each leaves out fewer, those ahead sooner known)."""
    heads = unknown[:C.SPECULATION_UNKNOWN_AHEAD]
    subsets = [frozenset(c) for k in range(len(heads) + 1)
               for c in itertools.combinations(heads, k)]
    out = [frozenset(lost) | s for s in subsets if s or lost]
    return out[:C.SPECULATIONS_PER_WINNER]


def files_of(cand: Candidate) -> frozenset[str]:
    """The paths a candidate's diff touches."""
    return _diff_files(cand.diff)


@functools.lru_cache(maxsize=65536)
def _diff_files(diff: str) -> frozenset[str]:
    return frozenset(m.group(1) for m in _DIFF_PATH.finditer(diff))


_DIFF_PATH = re.compile(r"^(?:---|\+\+\+) [ab]/(.+?)\s*$", re.MULTILINE)


def found_on(t: Tried) -> str:
    """Where a winner was found (remote executors name their slot in `executor`)."""
    return ((t.result.result or {}).get("executor") or {}).get("slot") or t.result.worker


def gain(t: Tried, spec: Spec) -> float:
    """How much better than the baseline, in the metric's direction (for ordering winners)."""
    ratio = (t.result.result or {}).get("ratio") or 1.0
    return ratio - 1 if spec.metric.direction == "higher" else 1 - ratio
