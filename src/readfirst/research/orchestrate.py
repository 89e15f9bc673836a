"""Research for a target: run it, store it, write the brief; and refresh it from the loop's
results (failed hypotheses are demoted with the reason, kept ones marked)."""

from __future__ import annotations

from typing import Any

from readfirst import gitcli
from readfirst.compare import Target
from readfirst.config import Spec
from readfirst.journal import Journal
from readfirst.research import ResearchContext
from readfirst.research.brief import (
    ResearchStore,
    hypothesis_from_dict,
    render_brief,
    write_brief,
)
from readfirst.research.run import ResearchResult, run_research
from readfirst.workspace import Workspace

DEMOTION = 0.5  # a failed hypothesis keeps half its score: still listed, no longer on top


def research_target(target: Target, spec: Spec, *, offline: bool = False,
                    only: list[str] | None = None, profile: bool = True) -> ResearchResult:
    ws = Workspace(target.root)
    baseline = gitcli.resolve_commit(target.repo, "HEAD")
    ctx = ResearchContext(repo=target.repo, root=target.root, rel=target.rel, spec=spec,
                          state_dir=ws.state, offline=offline, baseline=baseline)
    from readfirst.research.run import source_names

    source_names(ctx, only, profile)  # bad names: ConfigError before anything is written
    ws.ensure()
    result = run_research(ctx, only=only, profile=profile)
    brief = ws.state / "research" / "brief.md"
    result.brief = str(brief)
    write_brief(brief, render_brief(result, str(target.root)))
    journal = Journal(ws.journal_path)
    try:
        result.research_id = ResearchStore(journal).save(result, offline, baseline)
    finally:
        journal.close()
    return result


def refresh_from_experiments(ws: Workspace, journal: Journal, target: str,
                             experiments: list[dict[str, Any]]) -> int:
    """Demote hypotheses whose candidates failed, mark the kept ones, rewrite the brief.

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
                why = f"tried in experiment #{e['seq']}: {e['verdict'] or e['status']}"
                if e["reason"]:
                    why += f" ({e['reason'][:160]})"
                store.set_status(h["id"], "failed", why, round(h["score"] * DEMOTION, 4))
                changed += 1
    if changed:
        _rewrite_brief(ws, journal, store, rid, target)
    return changed


def _rewrite_brief(ws: Workspace, journal: Journal, store: ResearchStore, rid: int,
                   target: str) -> None:
    import json

    row = journal.db.execute("SELECT * FROM research_runs WHERE id = ?", (rid,)).fetchone()
    hyps = sorted(store.hypotheses(rid), key=lambda h: (-h["score"], h["kind"], h["title"]))
    from readfirst.research import Reference

    refs = [Reference(**json.loads(r["ref_json"])) for r in journal.db.execute(
        "SELECT ref_json FROM research_refs WHERE research_id = ?", (rid,)).fetchall()]
    result = ResearchResult(
        diagnosis=json.loads(row["diagnosis_json"]) if row["diagnosis_json"] else None,
        hypotheses=[hypothesis_from_dict(h) for h in hyps],
        references=refs,
        notes=json.loads(row["notes_json"]),
        sources=json.loads(row["sources_json"]),
    )
    status = {i: f"{h['status']}: {h['status_reason']}" for i, h in enumerate(hyps)
              if h["status"] != "open"}
    write_brief(ws.state / "research" / "brief.md", render_brief(result, target, status))
