"""The research brief (`.readfirst/research/brief.md`) and its journal tables.

Diagnosis first, then the ranked hypotheses (title, rationale, sites file:line, expected
effect, sources [n]), then the references under stable ids.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from readfirst.core.fsutil import atomic_write
from readfirst.research import Hypothesis, Site
from readfirst.research.profile import hot_functions
from readfirst.research.run import ResearchResult
from readfirst.store.journal import Journal

SCHEMA = """
CREATE TABLE IF NOT EXISTS research_runs (
    id INTEGER PRIMARY KEY,
    started REAL NOT NULL,
    offline INTEGER NOT NULL,
    baseline TEXT,
    brief TEXT,
    diagnosis_json TEXT,
    notes_json TEXT NOT NULL,
    sources_json TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS hypotheses (
    id INTEGER PRIMARY KEY,
    research_id INTEGER NOT NULL REFERENCES research_runs(id),
    rank INTEGER NOT NULL,
    kind TEXT NOT NULL,
    title TEXT NOT NULL,
    score REAL NOT NULL,
    hypothesis_json TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'open',   -- open | kept | the loop's verdict (inconclusive, ...)
    status_reason TEXT
);
CREATE TABLE IF NOT EXISTS research_refs (
    research_id INTEGER NOT NULL REFERENCES research_runs(id),
    ref_id TEXT NOT NULL,
    ref_json TEXT NOT NULL,
    PRIMARY KEY (research_id, ref_id)
);
"""


def _site(s: Site) -> str:
    return f"`{s.path}:{s.line}`" + (f" ({s.function})" if s.function else "")


def render_brief(result: ResearchResult, target: str, status: dict[int, str] | None = None) -> str:
    """Markdown; `status` maps hypothesis index -> a demotion note from the loop."""
    numbers = {r.id: i + 1 for i, r in enumerate(result.references)}
    out = [f"# Research brief: {target}", "",
           f"Written {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by readfirst.", ""]
    out += ["## Diagnosis", ""]
    d = result.diagnosis
    if not d:
        out += ["Not run (no profile: `readfirst research` without `--no-profile` runs the "
                "benchmark under a profiler).", ""]
    else:
        out.append(f"- profiler: {d.get('profiler') or 'none available'}; hardware counters: "
                   f"{'yes' if d.get('hardware_counters') else 'no (software sampling)'}")
        metric = d.get("metric") or {}
        if metric.get("value") is not None:
            out.append(f"- metric while profiled: {metric.get('name')} = {metric['value']:.4g} "
                       f"{metric.get('unit') or ''}".rstrip())
        if d.get("bandwidth_gbs"):
            out.append(f"- memory bandwidth (STREAM triad probe): {d['bandwidth_gbs']:.1f} GB/s")
        if d.get("achieved_gbs") is not None and d.get("share") is not None:
            out.append(f"- achieved: {d['achieved_gbs']:.1f} GB/s = {d['share']:.0%} of it")
        out.append(f"- **conclusion: {d.get('conclusion', 'none')}**")
        out += _profile_table(result)
        out.append("")
    if result.changes:
        out += ["## What changed since the previous research", ""]
        out += [f"- {c}" for c in result.changes] + [""]
    out += ["## Hypotheses, ranked", ""]
    if not result.hypotheses:
        out += ["None found.", ""]
    for i, h in enumerate(result.hypotheses):
        cites = ", ".join(f"[{numbers[s]}]" for s in h.sources if s in numbers)
        out.append(f"### {i + 1}. {h.title}")
        out.append("")
        unprofiled = " — not in the profile" if h.data.get("in_profile") is False else ""
        out.append(f"*{h.kind}, score {h.score:.2f}{unprofiled}*"
                   + (f" — **{status[i]}**" if status and i in status else ""))
        out.append("")
        out.append(h.rationale)
        if h.sites:
            out.append("")
            out.append("Sites: " + ", ".join(_site(s) for s in h.sites[:8])
                       + (f" and {len(h.sites) - 8} more" if len(h.sites) > 8 else ""))
        if h.expected_effect:
            out += ["", f"Expected effect: {h.expected_effect}"]
        if cites:
            out += ["", f"Sources: {cites}"]
        out.append("")
    out += ["## References", ""]
    for r in result.references:
        link = f" <{r.url}>" if r.url else ""
        out.append(f"[{numbers[r.id]}] `{r.id}` ({r.kind}) {r.title}{link}")
    if result.notes:
        out += ["", "## Notes", ""] + [f"- {n}" for n in result.notes]
    out += ["", "## Sources run", "", "| source | seconds | hypotheses | references |",
            "|---|---:|---:|---:|"]
    out += [f"| {s['name']} | {s['seconds']:.2f} | {s['hypotheses']} | {s['references']} |"
            for s in result.sources]
    return "\n".join(out) + "\n"


def _profile_table(result: ResearchResult) -> list[str]:
    """The profile's top functions: inclusive and self shares, and the hypotheses (by rank)
    whose sites are in each."""
    from readfirst.research.ranking import plain

    d = result.diagnosis or {}
    own = {plain(str(t["function"])): float(t["share"]) for t in d.get("top_functions") or []}
    top = hot_functions(result, 10)
    if not top:
        return []
    covered: dict[str, list[int]] = {}
    for i, h in enumerate(result.hypotheses):
        for fn in {plain(s.function) for s in h.sites if s.function}:
            covered.setdefault(fn, []).append(i + 1)
    inclusive = bool(d.get("inclusive"))
    head = "inclusive share (through callees)" if inclusive else "share of samples"
    out = ["", f"| function | {head} | self | hypotheses |", "|---|---:|---:|---|"]
    for fn, share in top:
        ranks = covered.get(plain(fn), [])
        cover = ", ".join(f"#{r}" for r in ranks[:6]) + (" ..." if len(ranks) > 6 else "")
        self_share = own.get(plain(fn))
        out.append(f"| `{fn}` | {share:.1f} % | "
                   f"{f'{self_share:.1f} %' if self_share is not None else '-'} | "
                   f"{cover or 'none'} |")
    return out


def write_brief(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, text)


class ResearchStore:
    """Research runs, hypotheses and references in the journal."""

    def __init__(self, journal: Journal) -> None:
        self.db = journal.db
        self.db.executescript(SCHEMA)
        cols = {r[1] for r in self.db.execute("PRAGMA table_info(research_runs)")}
        if "changes_json" not in cols:  # journals written before research was versioned
            self.db.execute("ALTER TABLE research_runs ADD COLUMN changes_json TEXT")

    def save(self, result: ResearchResult, offline: bool, baseline: str | None) -> int:
        with self.db:
            self.db.execute("BEGIN")
            cur = self.db.execute(
                "INSERT INTO research_runs (started, offline, baseline, brief, diagnosis_json,"
                " notes_json, sources_json, changes_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (time.time(), int(offline), baseline, result.brief,
                 json.dumps(result.diagnosis), json.dumps(result.notes),
                 json.dumps(result.sources), json.dumps(result.changes)))
            rid = int(cur.lastrowid or 0)
            for i, h in enumerate(result.hypotheses):
                self.db.execute(
                    "INSERT INTO hypotheses (research_id, rank, kind, title, score,"
                    " hypothesis_json, status, status_reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (rid, i + 1, h.kind, h.title, h.score, json.dumps(h.to_dict()),
                     h.data.get("status") or "open", h.data.get("status_reason")))
            for r in result.references:
                self.db.execute("INSERT OR REPLACE INTO research_refs VALUES (?, ?, ?)",
                                (rid, r.id, json.dumps(r.to_dict())))
        return rid

    def latest(self) -> int | None:
        row = self.db.execute("SELECT MAX(id) FROM research_runs").fetchone()
        return row[0] if row and row[0] is not None else None

    def hypotheses(self, research_id: int) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT id, rank, score, status, status_reason, hypothesis_json FROM hypotheses"
            " WHERE research_id = ? ORDER BY rank", (research_id,)).fetchall()
        return [{**json.loads(r["hypothesis_json"]), "id": r["id"], "rank": r["rank"],
                 "score": r["score"], "status": r["status"], "status_reason": r["status_reason"]}
                for r in rows]

    def set_status(self, hypothesis_id: int, status: str, reason: str, score: float) -> None:
        self.db.execute(
            "UPDATE hypotheses SET status = ?, status_reason = ?, score = ? WHERE id = ?",
            (status, reason, score, hypothesis_id))


def hypothesis_from_dict(d: dict[str, Any]) -> Hypothesis:
    return Hypothesis(d["title"], d["kind"], d["rationale"],
                      [Site(**s) for s in d.get("sites", [])], list(d.get("sources", [])),
                      d.get("expected_effect", ""), d.get("score", 0.0), d.get("data", {}))
