"""Research for a target: run it, store it (one version per baseline, the loop's verdicts
carried over), write the brief; refresh it from the loop's results; and re-run it on the new
baseline after a landing (the hot spots move once a change is kept)."""

from __future__ import annotations

import json
from typing import Any

from readfirst.core import constants as C
from readfirst.core.config import Spec
from readfirst.core.target import Target
from readfirst.research import Hypothesis, Reference, ResearchContext, conventions
from readfirst.research.brief import (
    ResearchStore,
    hypothesis_from_dict,
    render_brief,
    write_brief,
)
from readfirst.research.profile import hot_functions
from readfirst.research.run import ResearchResult, run_research
from readfirst.store.journal import Journal
from readfirst.vcs import gitcli
from readfirst.vcs.workspace import Workspace

DEMOTION = C.DEMOTION  # a failed hypothesis keeps half its score: still listed, not on top
NOT_FAILED = ("inconclusive", "no_change")  # verdicts that say "undecided", not "worse"
SOURCE_SLOT = "research-src"  # a checkout of the baseline the static sources read


def research_target(target: Target, spec: Spec, *, offline: bool = False,
                    only: list[str] | None = None, profile: bool = True,
                    baseline: str | None = None) -> ResearchResult:
    """Research HEAD in the user's tree, or `baseline` in a checkout of it (slot
    `research-src`: the loop's landed commits are not in the user's tree)."""
    ws = Workspace(target.root)
    baseline = gitcli.resolve_commit(target.repo, baseline or "HEAD")
    ctx = ResearchContext(repo=target.repo, root=target.root, rel=target.rel, spec=spec,
                          state_dir=ws.state, offline=offline, baseline=baseline)
    from readfirst.research.run import source_names

    source_names(ctx, only, profile)  # bad names: ConfigError before anything is written
    conventions.load(spec.research)  # so is a bad [research.siblings] table
    ws.ensure()
    if baseline != gitcli.resolve_commit(target.repo, "HEAD"):
        with ws.lock_slot(SOURCE_SLOT):
            checkout = ws.checkout(SOURCE_SLOT, baseline)
            ctx.repo, ctx.root, ctx.home = checkout, checkout / target.rel, target.root
            result = run_research(ctx, only=only, profile=profile)
    else:
        result = run_research(ctx, only=only, profile=profile)
    brief = ws.state / "research" / "brief.md"
    result.brief = str(brief)
    journal = Journal(ws.journal_path)
    try:
        store = ResearchStore(journal)
        previous = store.latest()
        if previous is not None:
            result.changes = carry_over(store, previous, result, baseline)
        status = {i: status_line(h.data["status"], h.data.get("status_reason"))
                  for i, h in enumerate(result.hypotheses) if h.data.get("status")}
        write_brief(brief, render_brief(result, str(target.root), status))
        result.research_id = store.save(result, offline, baseline)
    finally:
        journal.close()
    return result


def research_after_landing(target: Target, spec: Spec, baseline: str) -> ResearchResult | None:
    """Re-run the research (offline, profiled) when `baseline` moved past the one the latest
    research studied: the loop calls this after every wave, and it only works after a
    landing. None when there was no research to refresh or it studied this baseline already;
    `[research] refresh_on_landing = false` turns it off."""
    if spec.research.get("refresh_on_landing", True) is False:
        return None
    ws = Workspace(target.root)
    if not ws.journal_path.is_file():
        return None
    journal = Journal(ws.journal_path)
    try:
        store = ResearchStore(journal)
        rid = store.latest()
        row = journal.db.execute("SELECT baseline, sources_json FROM research_runs WHERE id = ?",
                                 (rid,)).fetchone() if rid is not None else None
    finally:
        journal.close()
    if row is None or row["baseline"] == baseline:
        return None
    ran = [s["name"] for s in json.loads(row["sources_json"])]
    profile = "diagnosis" in ran
    only = ran or None  # the same sources, offline: caches and local sources only
    try:
        return research_target(target, spec, offline=True, only=only, profile=profile,
                               baseline=baseline)
    except Exception:  # noqa: BLE001 - a failed refresh keeps the last brief; the loop goes on
        return None


def _same(h: Hypothesis, old: dict[str, Any]) -> bool:
    if h.kind != old["kind"]:
        return False
    return h.title == old["title"] or bool(set(h.sources) & set(old.get("sources", [])))


def carry_over(store: ResearchStore, previous: int, result: ResearchResult,
               baseline: str) -> list[str]:
    """Keep the loop's verdicts of the previous research run on the same hypotheses (demoted
    the same way), and say what changed since it."""
    olds = store.hypotheses(previous)
    row = store.db.execute("SELECT baseline, diagnosis_json FROM research_runs WHERE id = ?",
                           (previous,)).fetchone()
    matched: set[int] = set()
    for h in result.hypotheses:
        old = next((o for o in olds if o["id"] not in matched and _same(h, o)), None)
        if old is None:
            h.data["new"] = True
            continue
        matched.add(old["id"])
        if old["status"] != "open":
            h.data.update(status=old["status"], status_reason=old["status_reason"])
            h.score = round(h.score * demotion(old["status"]), 4)
    _keep_history(store, previous, olds, matched, result)
    result.hypotheses.sort(key=lambda h: (h.data.get("in_profile") is False, -h.score,
                                          h.kind, h.title))
    changes = []
    if row["baseline"] and row["baseline"] != baseline:
        changes.append(f"baseline {gitcli.short(row['baseline'])} -> {gitcli.short(baseline)}")
    new = [h.title for h in result.hypotheses if h.data.get("new")]
    gone = [o["title"] for o in olds if o["id"] not in matched and o["status"] == "open"]
    carried = [h for h in result.hypotheses if h.data.get("status")]
    changes.append(f"{len(new)} new hypothesis(es)" + (": " + "; ".join(new[:5]) if new else "")
                   + (f" and {len(new) - 5} more" if len(new) > 5 else ""))
    changes.append(f"{len(gone)} gone" + (": " + "; ".join(gone[:5]) if gone else ""))
    changes.append(f"{len(carried)} keep the loop's verdict from the previous research")
    before = hot_functions({"diagnosis": json.loads(row["diagnosis_json"] or "null")}, 5)
    after = hot_functions(result, 5)
    if before and after and [f for f, _ in before] != [f for f, _ in after]:
        changes.append("the profile moved: was " + ", ".join(f"{f} {s:.1f} %" for f, s in before)
                       + "; now " + ", ".join(f"{f} {s:.1f} %" for f, s in after))
    for h in result.hypotheses:
        h.data.pop("new", None)
    return changes


def _keep_history(store: ResearchStore, previous: int, olds: list[dict[str, Any]],
                  matched: set[int], result: ResearchResult) -> None:
    """Hypotheses the loop already tried stay listed with their verdict even when the new
    baseline no longer shows them (a kept fork commit is no longer divergent)."""
    refs = {r["ref_id"]: r["ref_json"] for r in store.db.execute(
        "SELECT ref_id, ref_json FROM research_refs WHERE research_id = ?", (previous,))}
    have = {r.id for r in result.references}
    for old in olds:
        if old["id"] in matched or old["status"] == "open":
            continue
        h = hypothesis_from_dict(old)
        h.data.update(status=old["status"], status_reason=old["status_reason"])
        result.hypotheses.append(h)
        for ref_id in h.sources:
            if ref_id not in have and ref_id in refs:
                result.references.append(Reference(**json.loads(refs[ref_id])))
                have.add(ref_id)


def demotion(status: str) -> float:
    if status in ("open", "kept"):
        return 1.0
    return C.DEMOTION_BY_VERDICT.get(status, C.DEMOTION)


def status_line(status: str, reason: str | None) -> str:
    if status in NOT_FAILED:
        return f"{status} (not failed): {reason}"
    return f"{status}: {reason}"


def refresh_from_experiments(ws: Workspace, journal: Journal, target: str,
                             experiments: list[dict[str, Any]]) -> int:
    """Mark hypotheses with the verdict of the experiments that tried them (kept, or the
    verdict: inconclusive, no_change, regressed, checks_failed, ...), demote the ones that
    did not win, rewrite the brief.

    A hypothesis matches an experiment when they share a source id (a fork commit, a patch
    file) or the same title. Returns how many hypotheses changed.
    """
    store = ResearchStore(journal)
    rid = store.latest()
    if rid is None:
        return 0
    hyps = store.hypotheses(rid)
    changed = 0
    for h in hyps:
        for e in experiments:
            if e["kind"] != "explore" or e["outcome"] is None:
                continue
            if not (set(h.get("sources", [])) & set(e["provenance"]) or h["title"] == e["title"]):
                continue
            if e["outcome"] == "kept" and h["status"] != "kept":
                store.set_status(h["id"], "kept", f"kept in experiment #{e['seq']}", h["score"])
                changed += 1
            elif e["outcome"] == "discarded" and h["status"] == "open":
                verdict = e["verdict"] or e["status"] or "failed"
                why = f"tried in experiment #{e['seq']}"
                if e["reason"]:
                    why += f" ({e['reason'][:160]})"
                store.set_status(h["id"], verdict, why, round(h["score"] * demotion(verdict), 4))
                changed += 1
    if changed:
        _rewrite_brief(ws, journal, store, rid, target)
    return changed


def _rewrite_brief(ws: Workspace, journal: Journal, store: ResearchStore, rid: int,
                   target: str) -> None:
    row = journal.db.execute("SELECT * FROM research_runs WHERE id = ?", (rid,)).fetchone()
    hyps = sorted(store.hypotheses(rid), key=lambda h: (
        h.get("data", {}).get("in_profile") is False, -h["score"], h["kind"], h["title"]))
    refs = [Reference(**json.loads(r["ref_json"])) for r in journal.db.execute(
        "SELECT ref_json FROM research_refs WHERE research_id = ?", (rid,)).fetchall()]
    result = ResearchResult(
        diagnosis=json.loads(row["diagnosis_json"]) if row["diagnosis_json"] else None,
        hypotheses=[hypothesis_from_dict(h) for h in hyps],
        references=refs,
        notes=json.loads(row["notes_json"]),
        sources=json.loads(row["sources_json"]),
        changes=json.loads(row["changes_json"] or "[]"),
    )
    status = {i: status_line(h["status"], h["status_reason"]) for i, h in enumerate(hyps)
              if h["status"] != "open"}
    write_brief(ws.state / "research" / "brief.md", render_brief(result, target, status))
