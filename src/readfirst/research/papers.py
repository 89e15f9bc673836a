"""Papers: arXiv, Semantic Scholar and a local papers directory, ranked by BM25 (textrank.py)
against the target's hotspots, keywords and topics. The best few become `paper` hypotheses,
scored at most 0.5 so papers alone never outrank concrete code evidence.

Network answers go through `Cache`; offline, rate-limited or failing requests become notes.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from readfirst.research import Finding, Reference, ResearchContext
from readfirst.research.cache import Cache, Response, Unavailable, make_client
from readfirst.research.textrank import (
    build_plain_queries,
    build_queries,
    rank_references,
)

ARXIV_URL = "http://export.arxiv.org/api/query"
S2_URL = "https://api.semanticscholar.org/graph/v1/paper/search"
S2_FIELDS = "paperId,externalIds,title,abstract,year,venue,citationCount,openAccessPdf"
NS = {"atom": "http://www.w3.org/2005/Atom", "arxiv": "http://arxiv.org/schemas/atom",
      "opensearch": "http://a9.com/-/spec/opensearch/1.1/"}
DETAIL_CHARS = 300
_ARXIV_ABS = re.compile(r"arxiv\.org/abs/(.+?)(?:v\d+)?$")
_LAST_REQUEST: dict[str, float] = {}  # host -> monotonic time of the last live request


@dataclasses.dataclass(frozen=True)
class PaperReference(Reference):
    """A paper `Reference` that keeps its other ids (for de-duplication) and full abstract
    (for ranking). `to_dict` gives the plain Reference fields only."""

    aliases: tuple[str, ...] = ()
    abstract: str = ""
    year: int | None = None
    pdf_url: str | None = None
    authors: tuple[str, ...] = ()
    published: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(Reference)}


def _squash(text: str | None) -> str:
    return " ".join((text or "").split())


def _paper(id: str, title: str, url: str | None, abstract: str, aliases: list[str],
           year: int | None = None, pdf_url: str | None = None) -> PaperReference:
    return PaperReference(id=id, kind="paper", title=title, url=url,
                          detail=abstract[:DETAIL_CHARS], aliases=tuple(dict.fromkeys(aliases)),
                          abstract=abstract, year=year, pdf_url=pdf_url)


# ---- de-duplication -----------------------------------------------------------------------

def _keys(ref: Reference) -> list[str]:
    keys = [ref.id, *getattr(ref, "aliases", ())]
    keys = [re.sub(r"v\d+$", "", k.lower()) if k.lower().startswith("arxiv:") else k.lower()
            for k in keys]
    title = re.sub(r"[^a-z0-9]", "", ref.title.lower())
    return keys + (["title:" + title] if len(title) >= 12 else [])


def _merge(a: Reference, b: Reference) -> Reference:
    """`a` with the gaps filled from its duplicate `b`."""
    changes: dict[str, Any] = {"detail": a.detail or b.detail, "url": a.url or b.url}
    if isinstance(a, PaperReference):
        changes.update(aliases=tuple(dict.fromkeys([*a.aliases, b.id, *getattr(b, "aliases", ())])),
                       abstract=a.abstract or getattr(b, "abstract", ""),
                       year=a.year or getattr(b, "year", None),
                       pdf_url=a.pdf_url or getattr(b, "pdf_url", None))
    return dataclasses.replace(a, **changes)


def merge_papers(refs: list[Reference]) -> tuple[list[Reference], dict[str, str]]:
    """Deduplicated papers (first occurrence kept, gaps filled from duplicates) and a map from
    each dropped id to the id that replaced it, for re-pointing `Hypothesis.sources`."""
    out: list[Reference] = []
    where: dict[str, int] = {}
    renamed: dict[str, str] = {}
    for ref in refs:
        keys = _keys(ref)
        hit = next((where[k] for k in keys if k in where), None)
        if hit is None:
            hit = len(out)
            out.append(ref)
        else:
            if ref.id != out[hit].id:
                renamed[ref.id] = out[hit].id
            out[hit] = _merge(out[hit], ref)
        for k in keys:
            where.setdefault(k, hit)
    return out, renamed


def dedupe_papers(refs: list[Reference]) -> list[Reference]:
    """Papers deduplicated by arXiv id, DOI and normalised title (lowercase, alphanumerics)."""
    return merge_papers(refs)[0]


# ---- parsing ------------------------------------------------------------------------------

def parse_arxiv_feed(text: str) -> tuple[list[PaperReference], int | None]:
    """Papers of an arXiv API Atom feed and its opensearch:totalResults.
    Raises ValueError for the API's error feed, ET.ParseError for non-XML."""
    root = ET.fromstring(text)
    total = _squash(root.findtext("opensearch:totalResults", "", NS))
    papers = []
    for e in root.findall("atom:entry", NS):
        raw_id = _squash(e.findtext("atom:id", "", NS))
        if "/api/errors" in raw_id:
            raise ValueError(f"arXiv API error: {_squash(e.findtext('atom:summary', '', NS))}")
        m = _ARXIV_ABS.search(raw_id)
        if not m:
            continue
        aid = m.group(1)
        pdf = None
        for link in e.findall("atom:link", NS):
            if link.get("title") == "pdf" or link.get("type") == "application/pdf":
                pdf = pdf or link.get("href")
        doi = _squash(e.findtext("arxiv:doi", "", NS))
        published = _squash(e.findtext("atom:published", "", NS))
        authors = [_squash(a.findtext("atom:name", "", NS)) for a in e.findall("atom:author", NS)]
        abstract = _squash(e.findtext("atom:summary", "", NS))
        ref = _paper(f"arXiv:{aid}", _squash(e.findtext("atom:title", "", NS)),
                     f"https://arxiv.org/abs/{aid}", abstract,
                     [f"arXiv:{aid}"] + ([f"doi:{doi}"] if doi else []),
                     int(published[:4]) if published[:4].isdigit() else None, pdf)
        papers.append(dataclasses.replace(ref, authors=tuple(authors), published=published))
    return papers, int(total) if total.isdigit() else None


def parse_s2_search(data: Any) -> list[PaperReference]:
    """Papers of a Semantic Scholar `/paper/search` answer `{total, offset, next, data[]}`."""
    papers = []
    for item in (data or {}).get("data") or []:
        title = _squash(item.get("title"))
        pid = item.get("paperId")
        if not title or not pid:
            continue
        ext = item.get("externalIds") or {}
        arxiv, doi = ext.get("ArXiv"), ext.get("DOI")
        aliases = ([f"arXiv:{arxiv}"] if arxiv else []) + ([f"doi:{doi}"] if doi else [])
        if arxiv:
            url = f"https://arxiv.org/abs/{arxiv}"
        elif doi:
            url = f"https://doi.org/{doi}"
        else:
            url = f"https://www.semanticscholar.org/paper/{pid}"
        pdf = (item.get("openAccessPdf") or {}).get("url") or None
        papers.append(_paper((aliases or [f"s2:{pid}"])[0], title, url,
                             _squash(item.get("abstract")), [*aliases, f"s2:{pid}"],
                             item.get("year"), pdf))
    return papers


def papers_finding(source: str, papers: list[PaperReference], ctx: ResearchContext,
                   notes: list[str], started: float) -> Finding:
    """Dedupe, then rank by BM25 against `ranking_terms`; the best few become hypotheses."""
    refs = dedupe_papers(list(papers))
    docs = [f"{r.title}\n{getattr(r, 'abstract', '') or r.detail}" for r in refs]
    ordered, hyps = rank_references(source, refs, docs, ctx)
    by_id = {r.id: r for r in ordered}
    for h in hyps:
        ref = by_id[h.sources[0]]
        h.data.update(year=getattr(ref, "year", None), pdf=getattr(ref, "pdf_url", None))
    return Finding(source=source, hypotheses=hyps, references=ordered, notes=notes,
                   seconds=round(time.monotonic() - started, 3))


# ---- network sources ----------------------------------------------------------------------

class _Throttled:
    """Keeps live requests to one host `delay` seconds apart. Only `Cache.fetch` calls it, and
    only when it goes to the network, so cached answers never wait."""

    def __init__(self, client: httpx.Client, delay: float, sleep: Callable[[float], None]):
        self.client, self.delay, self.sleep = client, delay, sleep

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        host = httpx.URL(url).host
        wait = _LAST_REQUEST.get(host, float("-inf")) + self.delay - time.monotonic()
        if wait > 0:
            self.sleep(wait)
        try:
            return self.client.get(url, **kwargs)
        finally:
            _LAST_REQUEST[host] = time.monotonic()


class _NetworkSource:
    name = ""
    label = ""  # how notes name the service
    needs_network = True
    url = ""

    def __init__(self, client: httpx.Client | None = None, delay: float = 3.0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.client, self.delay, self.sleep = client, delay, sleep

    def queries(self, ctx: ResearchContext) -> list[str]:
        raise NotImplementedError

    def request(self, ctx: ResearchContext, query: str) -> tuple[dict[str, Any], dict[str, str]]:
        """(params, headers) of one search request."""
        raise NotImplementedError

    def parse(self, resp: Response) -> list[PaperReference]:
        raise NotImplementedError

    def rate_limit_hint(self, ctx: ResearchContext) -> str:
        return "retry later"

    def run(self, ctx: ResearchContext) -> Finding:
        started = time.monotonic()
        queries = self.queries(ctx)
        if not queries:
            return Finding(self.name, notes=[f"{self.label}: nothing to search for (no hotspots, "
                                             "keywords or [research] topics)"])
        own = self.client is None and not ctx.offline
        client = self.client if self.client is not None or ctx.offline else make_client(False)
        live: Any = _Throttled(client, self.delay, self.sleep) if client else None
        cache, papers, notes, cached_ages = Cache(ctx.cache_dir), [], [], []
        try:
            for q in queries:
                params, headers = self.request(ctx, q)
                try:
                    resp = cache.fetch(live, self.url, params=params, headers=headers,
                                       offline=ctx.offline)
                except Unavailable as e:
                    notes.append(self._unavailable(ctx, q, str(e), live is None))
                    if "HTTP 429" in str(e) or "network error" in str(e):
                        live = None  # don't hammer: the remaining queries use the cache only
                    continue
                if resp.note:  # a stale answer stands in for a failed request
                    why = "rate limited (HTTP 429); " if "HTTP 429" in resp.note else ""
                    notes.append(f"{self.label}: {why}{resp.note}")
                    live = None if ctx.offline or why or "network error" in resp.note else live
                elif ctx.offline and resp.from_cache:
                    cached_ages.append(resp.age)
                try:
                    papers += self.parse(resp)
                except (ValueError, ET.ParseError, AttributeError, TypeError) as e:
                    notes.append(f"{self.label}: unreadable answer for {q!r}: {e}")
        finally:
            if own and client is not None:
                client.close()
        if cached_ages:
            notes.insert(0, f"{self.label}: offline; {len(cached_ages)} of {len(queries)} "
                         f"queries answered from the cache (oldest "
                         f"{max(cached_ages) / 3600:.1f} h)")
        return papers_finding(self.name, papers, ctx, notes, started)

    def _unavailable(self, ctx: ResearchContext, q: str, why: str, skipped: bool) -> str:
        if ctx.offline:
            return (f"{self.label}: offline and nothing cached for {q!r}; run `readfirst "
                    "research` online once to fill the cache")
        if "HTTP 429" in why:
            return (f"{self.label}: rate limited (HTTP 429) for {q!r} and nothing cached; "
                    f"{self.rate_limit_hint(ctx)}")
        if skipped:
            return f"{self.label}: skipped {q!r} after the error above, and nothing cached"
        return f"{self.label}: no answer for {q!r}: {why.split(': ', 1)[-1]}"


class ArxivSource(_NetworkSource):
    """Papers from the arXiv API (one request per 3 s; cached for a day)."""

    name, label, url = "arxiv", "arxiv", ARXIV_URL

    def __init__(self, client: httpx.Client | None = None, delay: float = 3.0,
                 sleep: Callable[[float], None] = time.sleep, max_results: int = 25) -> None:
        super().__init__(client, delay, sleep)
        self.max_results = max_results

    def queries(self, ctx: ResearchContext) -> list[str]:
        return build_queries(ctx)

    def request(self, ctx: ResearchContext, query: str) -> tuple[dict[str, Any], dict[str, str]]:
        return {"search_query": query, "start": 0, "max_results": self.max_results,
                "sortBy": "relevance"}, {}

    def parse(self, resp: Response) -> list[PaperReference]:
        return parse_arxiv_feed(resp.text)[0]


class SemanticScholarSource(_NetworkSource):
    """Papers from the Semantic Scholar Graph API; key from `[research] semantic_scholar_key_env`
    (default S2_API_KEY), sent as `x-api-key` and never cached or logged."""

    name, label, url = "semantic_scholar", "semantic scholar", S2_URL

    def __init__(self, client: httpx.Client | None = None, delay: float = 1.0,
                 sleep: Callable[[float], None] = time.sleep, limit: int = 25) -> None:
        super().__init__(client, delay, sleep)
        self.limit = limit

    def key_env(self, ctx: ResearchContext) -> str:
        return str(ctx.research.get("semantic_scholar_key_env") or "S2_API_KEY")

    def queries(self, ctx: ResearchContext) -> list[str]:
        return build_plain_queries(ctx)

    def request(self, ctx: ResearchContext, query: str) -> tuple[dict[str, Any], dict[str, str]]:
        key = os.environ.get(self.key_env(ctx), "").strip()
        return ({"query": query, "limit": self.limit, "fields": S2_FIELDS},
                {"x-api-key": key} if key else {})

    def parse(self, resp: Response) -> list[PaperReference]:
        return parse_s2_search(json.loads(resp.text))

    def rate_limit_hint(self, ctx: ResearchContext) -> str:
        env = self.key_env(ctx)
        if os.environ.get(env, "").strip():
            return "retry later"
        return f"set {env} to a Semantic Scholar API key for a higher limit, or retry later"


# ---- local papers -------------------------------------------------------------------------

_LOCAL = (".pdf", ".md", ".markdown", ".txt")


def _read_local(path: Path) -> tuple[str, str]:
    """(title, text) of a local paper."""
    if path.suffix.lower() == ".pdf":
        from pypdf import PdfReader

        reader = PdfReader(path)
        text = "\n".join(page.extract_text() or "" for page in reader.pages[:3])
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        meta = _squash(reader.metadata.title) if reader.metadata and reader.metadata.title else ""
        title = meta or (lines[0] if lines else path.stem)
        return title, "\n".join(lines[1:] if lines and lines[0] == title else lines)
    text = path.read_text(encoding="utf-8", errors="replace")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if path.suffix.lower() in (".md", ".markdown"):
        heading = next((ln[2:].strip() for ln in lines if ln.startswith("# ")), "")
        if heading:
            return heading, "\n".join(ln for ln in lines if ln != f"# {heading}")
    return (lines[0], "\n".join(lines[1:])) if lines else (path.stem, "")


class LocalPapersSource:
    """Papers the user keeps under `[research] papers_dir` (.pdf, .md, .txt)."""

    name = "papers_dir"
    needs_network = False

    def run(self, ctx: ResearchContext) -> Finding:
        started = time.monotonic()
        conf = ctx.research.get("papers_dir")
        if not conf:
            return Finding(self.name)
        base = Path(str(conf))
        base = base if base.is_absolute() else ctx.root / base
        if not base.is_dir():
            return Finding(self.name, notes=[f"papers_dir: {base} is not a directory "
                                             f"([research] papers_dir is relative to {ctx.root})"])
        papers, notes = [], []
        for path in sorted(p for p in base.rglob("*")
                           if p.is_file() and p.suffix.lower() in _LOCAL):
            top = ctx.root if path.is_relative_to(ctx.root) else base
            rel = path.relative_to(top).as_posix()
            try:
                title, text = _read_local(path)
            except Exception as e:  # pypdf raises many kinds on broken files; skip, say so
                notes.append(f"papers_dir: skipped {rel}: {type(e).__name__}: {e}")
                continue
            papers.append(_paper(f"file:{rel}", _squash(title), None, _squash(text), []))
        return papers_finding(self.name, papers, ctx, notes, started)
