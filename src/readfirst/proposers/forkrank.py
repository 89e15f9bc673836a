"""One competitor's commits as ranked candidates: triage, diffs, dependencies, ranking, cap.

Every failure on one commit (an object git cannot read, a diff that is not UTF-8, a path it
cannot map) is a skip with its reason; the other commits go on. The ranking and its reasons go
into each candidate's rationale and into `research/fork_ranking.md` (and the brief).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from readfirst.core.candidate import Candidate
from readfirst.core.globs import matches, under
from readfirst.proposers.archcheck import BuildInfo, read_build
from readfirst.proposers.rank import (
    Rank,
    Signals,
    parse_diff,
    rank_commit,
    read_blobs,
    read_signals,
)
from readfirst.proposers.stack import Offer, Stacker
from readfirst.proposers.triage import CAPPED, EMPTY, SkipTally, sort_commit
from readfirst.vcs import gitcli
from readfirst.vcs.competitors import (
    CannotPort,
    Competitor,
    ForkCommit,
    PathMapper,
    commit_diff,
    list_fork_commits,
)

if TYPE_CHECKING:
    from readfirst.proposers.base import ProposerContext

BRIEF_START = "<!-- readfirst:fork-ranking -->"
BRIEF_END = "<!-- /readfirst:fork-ranking -->"


@dataclass
class Ported:
    candidates: list[Candidate] = field(default_factory=list)
    skipped: list[tuple[str, str, str]] = field(default_factory=list)
    report: str = ""


@dataclass
class _Ready:
    offer: Offer
    deps: list[Offer]
    diff: str
    rank: Rank


def scope_patterns(ctx: ProposerContext) -> list[str]:
    """The target's scope as repo-relative patterns; empty means everything."""
    return under(ctx.rel, ctx.spec.target.scope)


def port_competitor(ctx: ProposerContext, comp: Competitor, cap: int,
                    signals: Signals | None = None, build: BuildInfo | None = None) -> Ported:
    out = Ported()
    commits, shared = list_fork_commits(ctx.repo, ctx.baseline, comp.ref)
    scope = scope_patterns(ctx) or ([f"{ctx.rel.rstrip('/')}/**"] if ctx.rel else [])
    protected = under(ctx.rel, ctx.spec.protected_patterns())
    mapper = None if shared else PathMapper(ctx.repo, ctx.baseline, scope)

    def in_scope(path: str) -> bool:
        if mapper is not None:
            target = mapper.lookup(path)
            return target is not None and not matches(target, protected)
        return (not scope or matches(path, scope)) and not matches(path, protected)

    tally = SkipTally(comp.name)
    offers = _offers(ctx, comp, commits, in_scope, mapper, tally, out.skipped)
    signals = signals if signals is not None else read_signals(ctx.state_dir, ctx.rel)
    build = build if build is not None else read_build(
        ctx.repo, ctx.rel, ctx.state_dir, ctx.spec.target.build,
        ctx.spec.research.get("compile_commands"))
    stacker = Stacker(ctx.repo, ctx.baseline)
    ready: list[_Ready] = []
    for o in offers:
        got = stacker.resolve(o, [e for e in offers if e.order < o.order])
        if isinstance(got, str):
            out.skipped.append((_cid(comp, o.sha), o.subject or o.sha[:12], got))
            continue
        ready.append(_Ready(o, got[0], got[1], Rank()))
    parsed = {id(r): parse_diff(r.diff) for r in ready}
    blobs = read_blobs(ctx.repo, {b for fs in parsed.values() for f in fs
                                  for b in (f.old_blob, f.new_blob) if b})
    for r in ready:
        r.rank = rank_commit(r.offer.subject, r.offer.body, r.offer.sha, parsed[id(r)], signals,
                             build, blobs)
    ready.sort(key=lambda r: r.rank.key(r.offer.order), reverse=True)
    for n, r in enumerate(ready):
        if n >= cap:
            tally.add(CAPPED, ForkCommit("", r.offer.sha, "", r.offer.subject, ""))
            continue
        out.candidates.append(_candidate(comp, r, n + 1, len(ready)))
    out.skipped += tally.records()
    out.report = _report(comp, ready, cap, len(commits), tally)
    return out


def _cid(comp: Competitor, sha: str) -> str:
    return f"fork:{comp.name}@{sha[:12]}"


def _offers(ctx: ProposerContext, comp: Competitor, commits: list[ForkCommit],
            in_scope: Callable[[str], bool], mapper: PathMapper | None, tally: SkipTally,
            skipped: list[tuple[str, str, str]]) -> list[Offer]:
    offers: list[Offer] = []
    for order, fc in enumerate(commits):
        cid, title = _cid(comp, fc.sha), fc.subject or fc.sha[:12]
        st = sort_commit(fc, in_scope)
        if st.counted:
            tally.add(st.counted, fc)
            continue
        if st.reason:
            skipped.append((cid, title, st.reason))
            continue
        try:
            if mapper is not None:
                diff = mapper.diff(fc.parent, fc.sha, st.paths)
            else:
                diff = commit_diff(ctx.repo, fc.parent, fc.sha, st.paths if st.dropped else None)
        except CannotPort as s:
            skipped.append((cid, title, str(s)))
            continue
        except gitcli.GitError as e:
            skipped.append((cid, title, gitcli.cannot_read(e)))
            continue
        except UnicodeDecodeError:
            skipped.append((cid, title, "the diff is not UTF-8 text (a candidate carries its "
                            "diff as text)"))
            continue
        if not diff.strip():
            tally.add(EMPTY, fc)
            continue
        starts = {f.path: f.starts for f in parse_diff(diff)}
        offers.append(Offer(order, fc.sha, fc.subject, fc.body, diff, list(starts), st.dropped,
                            starts))
    return offers


def _candidate(comp: Competitor, r: _Ready, place: int, total: int) -> Candidate:
    o = r.offer
    note = [f"ported from {comp.name} {o.sha[:12]}"]
    if r.deps:
        note.append("stacked on the earlier commit(s) it needs to apply: " + ", ".join(
            f"{d.sha[:12]} {d.subject[:60]}" for d in r.deps))
    if o.dropped:
        note.append("restricted to its in-scope part; left out (docs, CI, tests): "
                    + ", ".join(o.dropped[:5]) + (" ..." if len(o.dropped) > 5 else ""))
    note.append(f"ranked {place} of {total}: {_why(r.rank)}")
    body = o.body.strip()
    title = o.subject or o.sha[:12]
    if r.deps:
        title += f" (+{len(r.deps)} earlier)"
    return Candidate(
        id=_cid(comp, o.sha), title=title,
        rationale=(f"{body}\n\n" if body else "") + "\n".join(note),
        diff=r.diff, source="forks",
        provenance=tuple(f"{comp.name}@{c.sha}" for c in [*r.deps, o]),
    )


def _why(rank: Rank) -> str:
    if rank.elsewhere:
        return "ranked last, cannot run on this machine: " + rank.elsewhere
    return "; ".join(rank.reasons) or "no profile, hypothesis or performance cue: fork order"


def _report(comp: Competitor, ready: list[_Ready], cap: int, total: int,
            tally: SkipTally) -> str:
    lines = [f"### {comp.name}: {total} commits, {len(ready)} offered, ranked", "",
             "| # | commit | title | why |", "|---:|---|---|---|"]
    for n, r in enumerate(ready, 1):
        mark = " (beyond the cap)" if n > cap else ""
        title = (r.offer.subject or "").replace("|", "/")[:70]
        lines.append(f"| {n} | {r.offer.sha[:12]} | {title}{mark} | {_why(r.rank)} |")
    lines.append("")
    for reason, commits in tally.by_reason.items():
        lines.append(f"- skipped, {reason}: {len(commits)}")
    return "\n".join(lines) + "\n"


def replace_section(brief: str, ranking: str) -> str:
    """The brief with its fork-ranking section replaced (or appended)."""
    section = f"{BRIEF_START}\n## Fork commits, ranked for `readfirst run --proposer forks`\n\n" \
        f"{ranking}{BRIEF_END}\n"
    if BRIEF_START in brief and BRIEF_END in brief:
        head, _, rest = brief.partition(BRIEF_START)
        _, _, tail = rest.partition(BRIEF_END)
        return head + section + tail.lstrip("\n")
    return brief.rstrip("\n") + "\n\n" + section
