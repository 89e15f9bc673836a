"""Papers sources (arXiv, Semantic Scholar, a local papers dir) and BM25 ranking.

No live network: respx replays the recorded exchanges in tests/data/http/.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
import pytest
import respx
from hypothesis import given
from hypothesis import strategies as st

from readfirst.core.config import Spec
from readfirst.research import Reference, ResearchContext
from readfirst.research import papers as papers_mod
from readfirst.research.papers import (
    ARXIV_URL,
    S2_URL,
    ArxivSource,
    LocalPapersSource,
    PaperReference,
    SemanticScholarSource,
    dedupe_papers,
    merge_papers,
    parse_arxiv_feed,
    parse_s2_search,
)
from readfirst.research.textrank import (
    build_plain_queries,
    build_queries,
    matched_terms,
    perf_word,
    rank,
    tokenize,
)

DATA = Path(__file__).parent / "data"
ARXIV_XML = (DATA / "http" / "arxiv_softmax.xml").read_text()
ARXIV_ERROR_XML = (DATA / "http" / "arxiv_error.xml").read_text()
S2_JSON = (DATA / "http" / "s2_softmax.json").read_text()
ONLINE_SOFTMAX = "arXiv:1805.02867"
ASTRO = "arXiv:2101.00042"
SECRET = "s2-secret-key-DO-NOT-STORE"


def make_ctx(root: Path, *, offline: bool = False, research: dict | None = None,
             hotspots: tuple[str, ...] = ("softmax", "rms_norm"),
             keywords: tuple[str, ...] = ()) -> ResearchContext:
    spec = Spec.model_validate({"target": {"bench": "true"},
                                "metric": {"name": "time_ms", "unit": "ms"},
                                "research": research or {}})
    return ResearchContext(repo=root, root=root, rel="", spec=spec,
                           state_dir=root / ".readfirst", offline=offline,
                           hotspots=list(hotspots), keywords=list(keywords))


@pytest.fixture
def net():
    with respx.mock(assert_all_called=False) as router:
        yield router


@pytest.fixture(autouse=True)
def _no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("S2_API_KEY", raising=False)


def arxiv_route(net: respx.MockRouter, **kw):
    return net.get(ARXIV_URL).mock(**kw or {"return_value": httpx.Response(200, text=ARXIV_XML)})


def s2_route(net: respx.MockRouter, **kw):
    return net.get(S2_URL).mock(**kw or {"return_value": httpx.Response(200, text=S2_JSON)})


def hyps(finding) -> list[dict]:
    return [h.to_dict() for h in finding.hypotheses]


def age_cache(ctx: ResearchContext, seconds: float = 2 * 86_400) -> None:
    for f in ctx.cache_dir.glob("*.json"):
        entry = json.loads(f.read_text())
        entry["fetched"] -= seconds
        f.write_text(json.dumps(entry))


# ---- parsing ------------------------------------------------------------------------------

def test_parse_arxiv_feed() -> None:
    papers, total = parse_arxiv_feed(ARXIV_XML)
    assert total == 1843
    assert [p.id for p in papers] == [ONLINE_SOFTMAX, "arXiv:2205.14135", ASTRO]
    online, flash, astro = papers
    assert flash.title == ("FlashAttention: Fast and Memory-Efficient Exact Attention with "
                           "IO-Awareness")
    assert flash.authors[0] == "Tri Dao" and len(flash.authors) == 5
    assert online.url == "https://arxiv.org/abs/1805.02867"
    assert online.pdf_url == "http://arxiv.org/pdf/1805.02867v2"
    assert online.year == 2018 and online.published.startswith("2018-05-08")
    assert online.kind == "paper"
    assert online.detail.startswith("The Softmax function is ubiquitous")
    assert len(flash.detail) <= 300 and "\n" not in flash.detail
    assert astro.pdf_url is None
    assert "doi:10.5555/RF.2021.0042" in astro.aliases


def test_paper_reference_serialises_as_a_plain_reference() -> None:
    paper = parse_arxiv_feed(ARXIV_XML)[0][0]
    assert isinstance(paper, Reference)
    assert set(paper.to_dict()) == {"id", "kind", "title", "url", "detail"}


def test_parse_arxiv_error_feed() -> None:
    with pytest.raises(ValueError, match="incorrect id format"):
        parse_arxiv_feed(ARXIV_ERROR_XML)


def test_arxiv_error_feed_becomes_a_note(tmp_path: Path, net) -> None:
    arxiv_route(net, return_value=httpx.Response(200, text=ARXIV_ERROR_XML))
    finding = ArxivSource(delay=0).run(make_ctx(tmp_path))
    assert finding.hypotheses == []
    assert any("unreadable answer" in n and "incorrect id format" in n for n in finding.notes)


def test_parse_s2_search() -> None:
    papers = parse_s2_search(json.loads(S2_JSON))
    assert [p.id for p in papers] == [
        ONLINE_SOFTMAX, "doi:10.5555/rf.2021.0042", "arXiv:1910.07467",
        "s2:9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b",
    ]
    online, astro, rms, fusion = papers
    assert online.detail == "" and online.url == "https://arxiv.org/abs/1805.02867"
    assert astro.url == "https://doi.org/10.5555/rf.2021.0042" and astro.pdf_url is None
    assert rms.pdf_url == "https://arxiv.org/pdf/1910.07467" and rms.year == 2019
    assert fusion.url.startswith("https://www.semanticscholar.org/paper/")


# ---- de-duplication -----------------------------------------------------------------------

def test_dedupe_between_arxiv_and_semantic_scholar(tmp_path: Path, net) -> None:
    arxiv_route(net)
    s2_route(net)
    ctx = make_ctx(tmp_path)
    a = ArxivSource(delay=0).run(ctx)
    s = SemanticScholarSource(delay=0).run(ctx)
    assert len(a.references) == 3 and len(s.references) == 4
    kept, renamed = merge_papers([*a.references, *s.references])
    ids = [r.id for r in kept]
    assert len(kept) == 5 and ids.count(ONLINE_SOFTMAX) == 1  # via the arXiv id
    assert "doi:10.5555/rf.2021.0042" not in ids  # via the DOI (titles differ)
    assert renamed == {"doi:10.5555/rf.2021.0042": ASTRO}
    # Semantic Scholar first: its null abstract is filled from arXiv's entry.
    kept = dedupe_papers([*s.references, *a.references])
    online = next(r for r in kept if r.id == ONLINE_SOFTMAX)
    assert online.detail.startswith("The Softmax function")
    assert len(kept) == 5


def test_dedupe_by_title_and_version() -> None:
    refs = [Reference("doi:10.1/x", "paper", "Online Normalizer Calculation for Softmax"),
            Reference("s2:abc", "paper", "online normalizer calculation, for softmax!",
                      detail="filled"),
            Reference("arXiv:1805.02867v2", "paper", "Another title"),
            Reference("arXiv:1805.02867", "paper", "Yet another title"),
            Reference("s2:short1", "paper", "Intro"), Reference("s2:short2", "paper", "Intro")]
    kept = dedupe_papers(refs)
    assert [r.id for r in kept] == ["doi:10.1/x", "arXiv:1805.02867v2", "s2:short1", "s2:short2"]
    assert kept[0].detail == "filled"


# ---- queries and ranking ------------------------------------------------------------------

def test_tokenize_splits_names_and_drops_stopwords() -> None:
    assert tokenize("rms_norm softmaxForward HTTPServer of the a 42 kernels") == [
        "rms", "norm", "softmax", "forward", "http", "server", "kernel"]


def test_build_queries(tmp_path: Path) -> None:
    (tmp_path / "kern").mkdir()
    for name in ("a.cu", "b.cu", "c.py"):
        (tmp_path / "kern" / name).write_text("")
    ctx = make_ctx(tmp_path, hotspots=("softmax", "rms_norm", "compute"),
                   keywords=("operator fusion",), research={"topics": ["flash attention"]})
    queries = build_queries(ctx)
    assert queries == build_queries(ctx)  # deterministic
    assert len(queries) <= 4
    assert queries[0] == ("(all:softmax OR (all:rms AND all:norm)) AND "
                          "(all:latency OR all:efficient OR all:performance)")
    assert 'all:"flash attention"' in queries
    assert any('all:"operator fusion"' in q for q in queries)
    assert "all:softmax AND all:cuda" in queries
    assert not any("compute" in q for q in queries)  # generic function-name words are dropped
    assert build_plain_queries(ctx)[0] == "softmax rms norm latency"
    assert build_queries(make_ctx(tmp_path, hotspots=(), keywords=())) == []


def test_perf_word() -> None:
    def spec(name: str, unit: str = "") -> Spec:
        return Spec.model_validate({"target": {"bench": "x"},
                                    "metric": {"name": name, "unit": unit}})
    assert perf_word(spec("time_ms", "ms")) == "latency"
    assert perf_word(spec("tokens_per_s", "tok/s")) == "throughput"
    assert perf_word(spec("peak_rss", "MB")) == "memory"
    assert perf_word(spec("score")) == "performance"


def test_bm25_ranks_the_relevant_paper_first() -> None:
    relevant = ("Operator fusion for softmax: fewer passes over memory, less memory bandwidth "
                "for rms_norm and softmax layers")
    irrelevant = "A survey of citation practices for astronomy software"
    other = "Branch prediction in interpreters"
    scores = rank([irrelevant, relevant, other], ["softmax", "rms_norm"])
    assert scores == rank([irrelevant, relevant, other], ["softmax", "rms_norm"])
    assert scores[1] > scores[0] == 0.0 and scores[2] == 0.0
    assert matched_terms(relevant, ["softmax", "rms_norm"]) == ["softmax", "rms", "norm"]
    assert rank([], ["softmax"]) == [] and rank(["x"], []) == [0.0]


@given(st.lists(st.text(max_size=40), min_size=1, max_size=6),
       st.lists(st.text(max_size=12), max_size=4))
def test_rank_is_deterministic_and_non_negative(docs: list[str], terms: list[str]) -> None:
    scores = rank(docs, terms)
    assert scores == rank(docs, terms) and len(scores) == len(docs)
    assert all(s >= 0 for s in scores)


def test_arxiv_hypotheses(tmp_path: Path, net) -> None:
    arxiv_route(net)
    finding = ArxivSource(delay=0).run(make_ctx(tmp_path, keywords=("memory bandwidth",)))
    assert finding.source == "arxiv" and finding.notes == []
    top = finding.hypotheses[0]
    assert top.title == "Apply idea from: Online normalizer calculation for softmax"
    assert top.kind == "paper" and top.sources == [ONLINE_SOFTMAX] and top.score == 0.5
    assert "softmax" in top.rationale and "Matches hotspot functions: softmax" in top.rationale
    assert top.expected_effect == ""
    assert all(0 < h.score <= 0.5 for h in finding.hypotheses)
    assert ASTRO not in {s for h in finding.hypotheses for s in h.sources}
    assert finding.references[0].id == ONLINE_SOFTMAX and len(finding.references) == 3


# ---- cache, offline, failures -------------------------------------------------------------

def test_second_run_is_served_from_the_cache(tmp_path: Path, net) -> None:
    a_route, s_route = arxiv_route(net), s2_route(net)
    ctx = make_ctx(tmp_path)
    first = (ArxivSource(delay=0).run(ctx), SemanticScholarSource(delay=0).run(ctx))
    second = (ArxivSource(delay=0).run(ctx), SemanticScholarSource(delay=0).run(ctx))
    assert a_route.call_count == 1 and s_route.call_count == 1
    params = a_route.calls.last.request.url.params
    assert params["start"] == "0" and params["max_results"] == "25"
    assert params["sortBy"] == "relevance" and params["search_query"].startswith("(all:softmax")
    assert s_route.calls.last.request.url.params["fields"] == papers_mod.S2_FIELDS
    assert [hyps(f) for f in first] == [hyps(f) for f in second]


def test_expired_entry_is_revalidated_with_etag(tmp_path: Path, net) -> None:
    route = arxiv_route(net, side_effect=[
        httpx.Response(200, text=ARXIV_XML, headers={"ETag": '"feed-v1"'}),
        httpx.Response(304),
    ])
    ctx = make_ctx(tmp_path)
    first = ArxivSource(delay=0).run(ctx)
    age_cache(ctx)
    second = ArxivSource(delay=0).run(ctx)
    assert route.call_count == 2
    assert route.calls[1].request.headers["If-None-Match"] == '"feed-v1"'
    assert hyps(second) == hyps(first) and second.notes == []


def test_offline_with_cache(tmp_path: Path, net) -> None:
    route = arxiv_route(net)
    online = ArxivSource(delay=0).run(make_ctx(tmp_path))
    offline = ArxivSource(delay=0).run(make_ctx(tmp_path, offline=True))
    assert route.call_count == 1
    assert hyps(offline) == hyps(online) and hyps(online)
    assert offline.notes and "offline" in offline.notes[0] and "cache" in offline.notes[0]
    ctx = make_ctx(tmp_path, offline=True)
    age_cache(ctx)  # stale, still used offline
    stale = ArxivSource(delay=0).run(ctx)
    assert hyps(stale) == hyps(online) and "cached answer" in stale.notes[0]


def test_offline_without_cache(tmp_path: Path) -> None:
    for source in (ArxivSource(delay=0), SemanticScholarSource(delay=0)):
        finding = source.run(make_ctx(tmp_path, offline=True))
        assert finding.hypotheses == [] and finding.references == []
        assert len(finding.notes) == 1
        note = finding.notes[0]
        assert "offline and nothing cached for '" in note and "softmax" in note
        assert "run `readfirst research` online once to fill the cache" in note
    note = ArxivSource(delay=0).run(make_ctx(tmp_path, offline=True)).notes[0]
    assert note.startswith("arxiv: offline and nothing cached for")


def test_rate_limited(tmp_path: Path, net) -> None:
    route = s2_route(net, return_value=httpx.Response(429, json={"message": "Too Many Requests"}))
    ctx = make_ctx(tmp_path, keywords=("operator fusion",))
    finding = SemanticScholarSource(delay=0).run(ctx)
    assert finding.hypotheses == []
    assert finding.notes[0].startswith("semantic scholar: rate limited (HTTP 429)")
    assert "S2_API_KEY" in finding.notes[0]
    assert route.call_count == 1  # the remaining query is not sent after a 429


def test_rate_limited_with_a_stale_cache(tmp_path: Path, net) -> None:
    route = s2_route(net, side_effect=[httpx.Response(200, text=S2_JSON), httpx.Response(429)])
    ctx = make_ctx(tmp_path)
    first = SemanticScholarSource(delay=0).run(ctx)
    age_cache(ctx)
    second = SemanticScholarSource(delay=0).run(ctx)
    assert route.call_count == 2 and hyps(second) == hyps(first)
    assert second.notes[0].startswith("semantic scholar: rate limited (HTTP 429); ")
    assert "cached answer" in second.notes[0]


def test_network_error(tmp_path: Path, net) -> None:
    route = arxiv_route(net, side_effect=httpx.ConnectError("connection refused"))
    ctx = make_ctx(tmp_path, keywords=("operator fusion",))
    finding = ArxivSource(delay=0).run(ctx)
    assert finding.hypotheses == [] and route.call_count == 1
    assert "network error (ConnectError: connection refused)" in finding.notes[0]
    assert finding.notes[0].startswith("arxiv: no answer for")
    assert "skipped" in finding.notes[1]


@pytest.mark.parametrize("env", [None, "MY_S2_KEY"])
def test_api_key_is_sent_and_never_cached(tmp_path: Path, net, monkeypatch, env) -> None:
    monkeypatch.setenv(env or "S2_API_KEY", SECRET)
    route = s2_route(net)
    ctx = make_ctx(tmp_path, research={"semantic_scholar_key_env": env} if env else {})
    finding = SemanticScholarSource(delay=0).run(ctx)
    assert finding.hypotheses
    assert route.calls.last.request.headers["x-api-key"] == SECRET
    files = list(ctx.cache_dir.rglob("*"))
    assert files and all(SECRET not in f.read_text() for f in files if f.is_file())
    assert not any(SECRET in n for n in finding.notes)


def test_no_api_key_header_without_the_env_var(tmp_path: Path, net) -> None:
    route = s2_route(net)
    SemanticScholarSource(delay=0).run(make_ctx(tmp_path))
    assert "x-api-key" not in route.calls.last.request.headers


def test_live_requests_are_spaced_and_cached_answers_do_not_wait(tmp_path, net, monkeypatch):
    monkeypatch.setattr(papers_mod, "_LAST_REQUEST", {})
    arxiv_route(net)
    sleeps: list[float] = []
    ctx = make_ctx(tmp_path, keywords=("operator fusion",))  # two queries
    finding = ArxivSource(delay=3.0, sleep=sleeps.append).run(ctx)
    assert len(sleeps) == 1 and 0 < sleeps[0] <= 3.0
    assert len(finding.references) == 3  # both queries answered the same feed: deduplicated
    ArxivSource(delay=3.0, sleep=sleeps.append).run(ctx)
    assert len(sleeps) == 1


def test_injected_client_is_used_and_left_open(tmp_path: Path, net) -> None:
    route = arxiv_route(net)
    with httpx.Client() as client:
        finding = ArxivSource(client=client, delay=0).run(make_ctx(tmp_path))
        assert not client.is_closed
    assert route.call_count == 1 and finding.hypotheses


def test_nothing_to_search_for(tmp_path: Path) -> None:
    finding = ArxivSource(delay=0).run(make_ctx(tmp_path, hotspots=()))
    assert finding.hypotheses == [] and "nothing to search for" in finding.notes[0]


# ---- local papers -------------------------------------------------------------------------

def test_local_papers_dir(tmp_path: Path) -> None:
    shutil.copytree(DATA / "papers", tmp_path / "papers")
    source = LocalPapersSource()
    assert source.name == "papers_dir" and source.needs_network is False
    finding = source.run(make_ctx(tmp_path, research={"papers_dir": "papers"}))
    assert finding.notes == []
    by_id = {r.id: r for r in finding.references}
    assert by_id["file:papers/fused_rmsnorm.pdf"].title == "Fused RMS Normalization Kernels"
    assert "rms_norm" in by_id["file:papers/fused_rmsnorm.pdf"].detail
    assert by_id["file:papers/online_softmax.md"].title == (
        "Online normalizer calculation for softmax")
    assert by_id["file:papers/roofline.txt"].title.startswith("Roofline: an insightful")
    assert all(isinstance(r, PaperReference) and r.kind == "paper" for r in finding.references)
    cited = [h.sources[0] for h in finding.hypotheses]
    assert set(cited[:2]) == {"file:papers/online_softmax.md", "file:papers/fused_rmsnorm.pdf"}
    assert "file:papers/roofline.txt" not in cited


def test_local_papers_bad_pdf_is_skipped(tmp_path: Path) -> None:
    (tmp_path / "papers").mkdir()
    (tmp_path / "papers" / "broken.pdf").write_bytes(b"%PDF-1.4 not really")
    (tmp_path / "papers" / "softmax.txt").write_text("Softmax tricks\nfused softmax kernels\n")
    finding = LocalPapersSource().run(make_ctx(tmp_path, research={"papers_dir": "papers"}))
    assert [r.id for r in finding.references] == ["file:papers/softmax.txt"]
    assert finding.notes[0].startswith("papers_dir: skipped papers/broken.pdf")


def test_local_papers_missing_or_unconfigured(tmp_path: Path) -> None:
    missing = LocalPapersSource().run(make_ctx(tmp_path, research={"papers_dir": "nope"}))
    assert missing.references == [] and "is not a directory" in missing.notes[0]
    empty = LocalPapersSource().run(make_ctx(tmp_path))
    assert (empty.references, empty.hypotheses, empty.notes) == ([], [], [])
