"""`readfirst research`: run the sources, rank their hypotheses, write the brief and journal.

Order matters: the diagnosis runs first because its hotspots steer the other sources (paper
queries, multi-pass scores); then the static sources; then the network ones (skipped with
`--offline`, which uses only local sources and caches).
"""

from __future__ import annotations

import importlib
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from readfirst.core import constants as C
from readfirst.core.errors import ConfigError
from readfirst.research import Finding, Hypothesis, Reference, ResearchContext, Source
from readfirst.research.queries import query_keywords
from readfirst.research.ranking import (
    Profile,
    apply_scope,
    merge_by_site,
    reconcile,
    sort_key,
    weigh_by_profile,
)

ENTRY_POINT_GROUP = "readfirst.research_sources"
# name -> "module:Class", in the order they run
BUILTIN_SOURCES: dict[str, str] = {
    "diagnosis": "readfirst.research.diagnosis:BottleneckSource",
    "siblings": "readfirst.research.siblings:SiblingBackendsSource",
    "multipass": "readfirst.research.multipass:MultiPassSource",
    "history": "readfirst.research.history:HistorySource",
    "forks": "readfirst.research.forks_github:ForkDiscoverySource",
    "arxiv": "readfirst.research.papers:ArxivSource",
    "semantic_scholar": "readfirst.research.papers:SemanticScholarSource",
    "papers_dir": "readfirst.research.papers:LocalPapersSource",
}
# Kinds whose lever is fewer passes over memory: boosted when the diagnosis says memory-bound.
MEMORY_LEVERS = ("multi-pass", "fusion", "backend-gap", "port-commit")
PAPER_SOURCES = ("arxiv", "semantic_scholar", "papers_dir")
MAX_SCORE = 2.5
_STOPWORD_TEXT = """the a an and or of to in for on with is are be this that it as by from at into
its your you we our can will use used using not no all any more most than then there these
those which when where how what also has have had was were been via per each such other"""
STOPWORDS = frozenset(_STOPWORD_TEXT.split())


@dataclass
class ResearchResult:
    diagnosis: dict[str, Any] | None
    hypotheses: list[Hypothesis]
    references: list[Reference]
    notes: list[str]
    sources: list[dict[str, Any]] = field(default_factory=list)
    brief: str | None = None
    research_id: int | None = None
    changes: list[str] = field(default_factory=list)  # since the previous research run

    def to_dict(self) -> dict[str, Any]:
        return {
            "research_id": self.research_id,
            "diagnosis": self.diagnosis,
            "hypotheses": [{"rank": i + 1, **h.to_dict()} for i, h in enumerate(self.hypotheses)],
            "references": [r.to_dict() for r in self.references],
            "notes": self.notes,
            "sources": self.sources,
            "brief": self.brief,
            "changes": self.changes,
        }


def load_source(name: str) -> Source:
    if name in BUILTIN_SOURCES:
        module, cls = BUILTIN_SOURCES[name].split(":")
        return getattr(importlib.import_module(module), cls)()  # type: ignore[no-any-return]
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            return ep.load()()  # type: ignore[no-any-return]
    known = sorted({*BUILTIN_SOURCES, *(e.name for e in entry_points(group=ENTRY_POINT_GROUP))})
    raise ConfigError(f"unknown research source {name!r}: expected one of {', '.join(known)}")


def source_names(ctx: ResearchContext, only: list[str] | None, profile: bool) -> list[str]:
    names = only or ctx.research.get("sources") or list(BUILTIN_SOURCES)
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ConfigError("[research] sources: expected a list of source names")
    if not profile:
        names = [n for n in names if n != "diagnosis"]
    for n in names:
        load_source(n)  # validate every name before anything runs
    return names


def readme_keywords(root: Path, limit: int = 8) -> list[str]:
    """The README's most frequent content words (kept for callers; paper queries no longer
    use them: words like "build" or "autoresearch" say nothing about the algorithm)."""
    for name in ("README.md", "README.rst", "README.txt", "README"):
        path = root / name
        if path.is_file():
            words = re.findall(r"[A-Za-z][A-Za-z0-9+-]{2,}", path.read_text(errors="replace"))
            counts = Counter(w.lower() for w in words if w.lower() not in STOPWORDS)
            return [w for w, _ in counts.most_common(limit)]
    return []


def run_research(ctx: ResearchContext, *, only: list[str] | None = None,
                 profile: bool = True) -> ResearchResult:
    names = source_names(ctx, only, profile)
    topics = ctx.research.get("topics", [])
    if not isinstance(topics, list):
        raise ConfigError("[research] topics: expected a list of strings")
    ctx.keywords = []
    findings: list[Finding] = []
    diagnosis: dict[str, Any] | None = None
    scope = list(ctx.spec.target.scope)
    queried = False
    for name in names:
        source = load_source(name)
        if name in PAPER_SOURCES and not queried:  # queries from what the code analysis found
            ctx.keywords = query_keywords(ctx, findings, diagnosis, scope)
            queried = True
        started = time.perf_counter()
        finding = _run_guarded(source, ctx)  # network sources honour ctx.offline themselves
        finding.seconds = time.perf_counter() - started
        findings.append(finding)
        if finding.diagnosis:
            diagnosis = finding.diagnosis
            ctx.hotspots = list(diagnosis.get("hotspots", []))
    _merge_duplicate_papers(findings)
    scope_notes = apply_scope(findings, scope)
    hypotheses = rank_hypotheses(findings, diagnosis, ctx.hotspots, root=ctx.root)
    references = _references(findings, hypotheses)
    if ctx.spec.agent:  # the synthesis pass: an LLM combines the evidence, citing it
        from readfirst.research.synthesis import synthesize

        started = time.perf_counter()
        made, synth_notes = synthesize(ctx, diagnosis, hypotheses, references)
        findings.append(Finding("synthesis", made, notes=synth_notes,
                                seconds=time.perf_counter() - started))
        if made:
            hypotheses = rank_hypotheses(findings, diagnosis, ctx.hotspots, root=ctx.root)
            references = _references(findings, hypotheses)
    notes = [n for f in findings for n in f.notes] + scope_notes
    sources = [{"name": f.source, "seconds": round(f.seconds, 3),
                "hypotheses": len(f.hypotheses), "references": len(f.references),
                "notes": f.notes} for f in findings]
    return ResearchResult(diagnosis, hypotheses, references, notes, sources)


def _merge_duplicate_papers(findings: list[Finding]) -> None:
    """One paper found by arXiv and Semantic Scholar is one reference: keep the first id and
    re-point the citations of the others to it."""
    papers = [r for f in findings for r in f.references if r.kind == "paper"]
    if len(papers) < 2:
        return
    from readfirst.research.papers import merge_papers

    _kept, renamed = merge_papers(papers)
    for f in findings:
        f.references = [r for r in f.references if r.id not in renamed]
        for h in f.hypotheses:
            h.sources = list(dict.fromkeys(renamed.get(s, s) for s in h.sources))


def _run_guarded(source: Source, ctx: ResearchContext) -> Finding:
    """A source that fails is a note in the brief, never the end of the research."""
    try:
        return source.run(ctx)
    except ConfigError:
        raise
    except Exception as e:  # noqa: BLE001 - any bug in one source must not sink the others
        return Finding(source.name, notes=[f"{source.name}: failed ({type(e).__name__}: {e})"])


def rank_hypotheses(findings: list[Finding], diagnosis: dict[str, Any] | None,
                    hotspots: list[str], root: Path | None = None) -> list[Hypothesis]:
    """Deterministic ranking without an LLM.

    Start from each source's own score; merge duplicates (same kind and title), +0.05 per
    extra corroborating source. With an inclusive profile (and `root` to find the function
    around a site): + the share of samples in the hypothesis's functions, and sites the
    benchmark never runs last; without one, +0.1 when a site is in one of the five hottest
    functions. +0.1 for memory levers when the diagnosis says memory-bound. Then one row per
    site, advice reconciled with the diagnosis. Ties break on kind, then title.
    """
    merged: dict[tuple[str, str], Hypothesis] = {}
    for f in findings:
        for h in f.hypotheses:
            key = (h.kind, h.title)
            if key not in merged:
                merged[key] = Hypothesis(h.title, h.kind, h.rationale, list(h.sites),
                                         list(h.sources), h.expected_effect, h.score,
                                         dict(h.data))
                continue
            m = merged[key]
            m.sources = list(dict.fromkeys([*m.sources, *h.sources]))
            m.sites = list(dict.fromkeys([*m.sites, *h.sites]))
            m.score = max(m.score, h.score) + C.CORROBORATION_BOOST
    profile = Profile(diagnosis)
    memory_bound = bool(diagnosis and str(diagnosis.get("conclusion", "")).startswith("memory"))
    hyps = list(merged.values())
    if profile.available and root is not None:
        weigh_by_profile(hyps, profile, root)
    else:
        hot = set(hotspots[:5])
        for h in hyps:
            if hot and any(s.function in hot for s in h.sites):
                h.score += C.HOT_BOOST
                h.rationale += " (touches a hot function)"
    for h in hyps:
        if memory_bound and h.kind in MEMORY_LEVERS:
            h.score += C.MEMORY_LEVER_BOOST
        h.score = round(min(h.score, MAX_SCORE), 4)
        reconcile(h, diagnosis)
    rows = merge_by_site(sorted(hyps, key=sort_key))
    for h in rows:
        h.score = round(min(h.score, MAX_SCORE), 4)
    return sorted(rows, key=sort_key)


def _references(findings: list[Finding], hypotheses: list[Hypothesis]) -> list[Reference]:
    """Every reference once, cited ones first in citation order, then the rest by id."""
    by_id: dict[str, Reference] = {}
    for f in findings:
        for r in f.references:
            by_id.setdefault(r.id, r)
    cited = list(dict.fromkeys(s for h in hypotheses for s in h.sources))
    ordered = [by_id.pop(i) for i in cited if i in by_id]
    return ordered + sorted(by_id.values(), key=lambda r: r.id)
