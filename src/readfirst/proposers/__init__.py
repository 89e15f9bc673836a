"""Proposers: where candidates come from. Built-ins plus plugins (entry-point group
`readfirst.proposers`, each loading a class that follows `Proposer`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Protocol

from readfirst.candidate import Candidate
from readfirst.config import Spec
from readfirst.errors import ConfigError

ENTRY_POINT_GROUP = "readfirst.proposers"


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


class Proposer(Protocol):
    name: str

    def propose(self, ctx: ProposerContext) -> list[Candidate]:
        """Candidates in the order they should be tried; skipped ones are reported via
        `skipped` (id, title, reason) so the run can record them."""
        ...

    @property
    def skipped(self) -> list[tuple[str, str, str]]: ...


def get_proposer(name: str) -> Proposer:
    from readfirst.proposers.forks import ForksProposer
    from readfirst.proposers.patches import PatchesProposer

    builtin: dict[str, type] = {"forks": ForksProposer, "patches": PatchesProposer}
    if name in builtin:
        return builtin[name]()  # type: ignore[no-any-return]
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            return ep.load()()  # type: ignore[no-any-return]
    names = sorted({*builtin, *(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))})
    raise ConfigError(f"unknown proposer {name!r}: expected one of {', '.join(names)}")
