"""Research: the homework before the code. Sources (plugins) study papers, competing forks,
sibling backends, multi-pass code and the bottleneck, and return hypotheses with references.

Every source follows `Source`: `run(ctx) -> Finding`. Network sources go through `Cache`
(research/cache.py) and degrade to a clear note and the cached answer when offline.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from readfirst.core.config import Spec


@dataclass(frozen=True)
class Reference:
    """Something a hypothesis cites, under a stable id."""

    id: str  # "arXiv:2205.14135", "doi:10.1145/...", "s2:<paperId>", "<repo>@<sha>", "path:line"
    kind: str  # paper | commit | code | profile | note
    title: str
    url: str | None = None
    detail: str = ""  # abstract snippet, commit message, code excerpt

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Site:
    path: str  # relative to the target's root
    line: int
    function: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Hypothesis:
    title: str
    # port-commit | backend-gap | fusion | multi-pass | memory-bound | history | paper | todo
    kind: str
    rationale: str
    sites: list[Site] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)  # Reference ids
    expected_effect: str = ""
    score: float = 0.0  # higher first; deterministic, from the source's own evidence
    data: dict[str, Any] = field(default_factory=dict)  # e.g. {"competitor": .., "commit": ..}

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["sites"] = [s.to_dict() for s in self.sites]
        return d


@dataclass
class Finding:
    """What one source found. `notes` carry degradations ("offline: cached answer of ...")."""

    source: str
    hypotheses: list[Hypothesis] = field(default_factory=list)
    references: list[Reference] = field(default_factory=list)
    diagnosis: dict[str, Any] | None = None  # only the bottleneck source fills this
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class ResearchContext:
    repo: Path  # the git work tree
    root: Path  # the target's directory (readfirst.toml)
    rel: str  # root relative to repo
    spec: Spec
    state_dir: Path  # .readfirst/
    offline: bool = False
    baseline: str | None = None  # the commit studied (None: HEAD)
    hotspots: list[str] = field(default_factory=list)  # function names, hottest first
    # the user's target directory when `root` is a checkout of another baseline: where
    # config-relative paths (competitors) and the workspace are
    home: Path | None = None
    keywords: list[str] = field(default_factory=list)  # from README, topics, metric

    @property
    def cache_dir(self) -> Path:
        return self.state_dir / "cache"

    @property
    def research(self) -> dict[str, Any]:
        return self.spec.research


class Source(Protocol):
    name: str
    needs_network: bool

    def run(self, ctx: ResearchContext) -> Finding: ...
