"""`readfirst research`: orchestration, ranking, brief, journal, and the loop's refresh."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from conftest import make_target, run_cli

from readfirst.core.config import Spec
from readfirst.research import Finding, Hypothesis, Reference, ResearchContext, Site
from readfirst.research.run import _run_guarded, rank_hypotheses


def _h(title: str, kind: str, score: float, sources: list[str],
       function: str | None = None, line: int | None = 3) -> Hypothesis:
    sites = [Site("src/a.c", line, function)] if line else []
    return Hypothesis(title, kind, "because", sites, sources, "", score)


def test_ranking_merges_corroborated_and_boosts_hot_and_memory_levers() -> None:
    findings = [
        Finding("a", [_h("Fuse passes in softmax", "multi-pass", 0.55, ["src/a.c:3"], "softmax"),
                      _h("Port fastfork commit", "port-commit", 0.6, ["fork@1"], line=9)]),
        Finding("b", [_h("Fuse passes in softmax", "multi-pass", 0.5, ["fork@1"], "softmax"),
                      _h("Read a paper", "paper", 0.5, ["arXiv:1"], line=None)]),
    ]
    ranked = rank_hypotheses(findings, {"conclusion": "memory-bound: ..."}, ["softmax"])
    assert [h.title for h in ranked] == [
        "Fuse passes in softmax", "Port fastfork commit", "Read a paper"]
    top = ranked[0]
    assert top.sources == ["src/a.c:3", "fork@1"]  # merged, in order
    assert top.score == round(0.55 + 0.05 + 0.1 + 0.1, 4)  # corroborated, hot, memory lever
    assert ranked[2].score == 0.5  # papers are not memory levers
    # deterministic: same input, same order
    assert [h.title for h in rank_hypotheses(findings, None, [])] == [
        h.title for h in rank_hypotheses(findings, None, [])]


class _BrokenSource:
    name = "broken"
    needs_network = False

    def run(self, ctx: ResearchContext) -> Finding:
        raise RuntimeError("parser blew up")


def test_a_failing_source_is_a_note_not_a_crash(tmp_path: Path) -> None:
    ctx = ResearchContext(tmp_path, tmp_path, "", Spec.model_validate({"target": {"bench": "x"}}),
                          tmp_path / ".readfirst")
    finding = _run_guarded(_BrokenSource(), ctx)
    assert finding.hypotheses == []
    assert finding.notes == ["broken: failed (RuntimeError: parser blew up)"]


def test_unknown_source_is_a_usage_error(tmp_path: Path) -> None:
    target = make_target(tmp_path / "t")
    code, _, proc = run_cli("research", "--source", "astrology", cwd=target)
    assert code == 2 and "unknown research source 'astrology'" in proc.stderr
    assert not (target / ".readfirst").exists()


def test_research_offline_writes_brief_json_and_journal(tmp_path: Path) -> None:
    from readfirst.frontends.demo import make_demo

    target, _fork = make_demo(tmp_path / "demo")
    code, r, proc = run_cli("research", "--offline", "--no-profile", "--json", cwd=target)
    assert code == 0, proc.stderr
    assert r["hypotheses"], r["notes"]
    for h in r["hypotheses"]:
        assert {"title", "kind", "sites", "sources", "score", "rationale"} <= h.keys()
        for s in h["sites"]:
            assert {"path", "line", "function"} <= s.keys()
    kinds = {h["kind"] for h in r["hypotheses"]}
    assert "port-commit" in kinds  # the configured competitor works offline: it is local
    assert "multi-pass" in kinds  # the naive kernels pass over memory several times
    ids = {ref["id"] for ref in r["references"]}
    for h in r["hypotheses"]:
        assert set(h["sources"]) <= ids  # every citation resolves
    brief = Path(r["brief"]).read_text()
    assert brief.index("## Diagnosis") < brief.index("## Hypotheses") < brief.index(
        "## References")
    db = sqlite3.connect(target / ".readfirst/journal.db")
    n = db.execute("SELECT count(*) FROM hypotheses WHERE research_id = ?",
                   (r["research_id"],)).fetchone()[0]
    assert n == len(r["hypotheses"])
    # network sources said they were offline instead of failing
    assert any("offline" in note for note in r["notes"])
    json.dumps(r)  # plain data


def test_references_are_unique_and_cited_first() -> None:
    from readfirst.research.run import _references

    refs = [Reference("b", "code", "B"), Reference("a", "code", "A"), Reference("c", "paper", "C")]
    findings = [Finding("x", [], refs), Finding("y", [], [Reference("a", "code", "A again")])]
    hyps = [_h("t", "multi-pass", 0.5, ["c", "b"])]
    assert [r.id for r in _references(findings, hyps)] == ["c", "b", "a"]


def test_one_row_per_site_and_advice_that_fits_the_diagnosis() -> None:
    a = _h("Fuse 3 passes over `y` in scale()", "multi-pass", 0.6, ["src/a.c:3"], "scale")
    a.expected_effect = "one pass over memory instead of N; helps when memory-bound"
    a.sites.append(Site("src/a.c", 3, None))  # the same line twice in one hypothesis
    b = _h("Revisit src/a.c: recent performance work", "history", 0.15, ["self@1"], "scale")
    c = _h("Port a fork commit", "port-commit", 0.7, ["fork@2"], "scale", line=20)
    ranked = rank_hypotheses([Finding("x", [a, b, c])], {"conclusion": "compute-bound: ..."},
                             [])
    assert [h.title for h in ranked] == ["Port a fork commit", a.title]
    row = ranked[1]
    assert row.sites == [Site("src/a.c", 3, "scale")]
    assert set(row.sources) == {"src/a.c:3", "self@1"}
    assert "Also at this site: Revisit src/a.c" in row.rationale
    assert "helps when memory-bound" not in row.expected_effect
    assert "compute-bound" in row.expected_effect
