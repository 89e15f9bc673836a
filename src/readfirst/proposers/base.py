"""What a proposer is: `Proposer.propose(ProposerContext) -> list[Candidate]` with its skips
(`RecordsSkips`), and `ThinkingProposer` (asked again, repairs, reviews)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from readfirst.core.candidate import Candidate
from readfirst.core.config import Spec


@dataclass
class ProposerContext:
    """What a proposer may look at. It never sees the judge's internals."""

    repo: Path  # the target's git work tree (read-only for proposers: use refs, not checkouts)
    root: Path  # the target's directory (holds readfirst.toml)
    rel: str  # root relative to repo ("" at the top)
    baseline: str  # the commit candidates are made against
    spec: Spec
    state_dir: Path  # .readfirst/ (for caches and fetched data)
    options: dict[str, Any] = field(default_factory=dict)  # command-line options, e.g. patches_dir
    # What was tried before in this target (oldest first): dicts with title, candidate_id,
    # verdict, outcome, reason, ratio; for proposers that learn from failures.
    history: list[dict[str, Any]] = field(default_factory=list)
    brief: Path | None = None  # .readfirst/research/brief.md when research has run
    run_id: str | None = None  # the loop run asking


class Proposer(Protocol):
    name: str

    def propose(self, ctx: ProposerContext) -> list[Candidate]:
        """Candidates in the order they should be tried; skipped ones are reported via
        `skipped` (id, title, reason) so the run can record them."""
        ...

    @property
    def skipped(self) -> list[tuple[str, str, str]]: ...


class RecordsSkips:
    """Keeps what a proposer found but could not offer: (candidate id, title, reason)."""

    def __init__(self) -> None:
        self._skipped: list[tuple[str, str, str]] = []

    @property
    def skipped(self) -> list[tuple[str, str, str]]:
        return list(self._skipped)


class ThinkingProposer(Proposer, Protocol):
    """A proposer that can be asked again (the loop calls `propose` when its queue runs dry),
    repair a candidate that failed to build or pass checks, and review a winner."""

    continuous: bool

    def repair(self, ctx: ProposerContext, cand: Candidate, verdict: str,
               error_tail: str, attempt: int) -> Candidate | None: ...

    def review(self, ctx: ProposerContext, cand: Candidate) -> tuple[bool, str]:
        """(approve, reason) against the project's conventions; a veto is recorded."""
        ...
