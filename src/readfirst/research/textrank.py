"""What to search for, and how relevant a text is to the target.

`build_queries` turns the target (hotspots, keywords, `[research] topics`, the metric, the
languages under its root) into at most 4 search queries. `rank` scores with rank_bm25's
BM25Okapi, using the always-positive Lucene IDF so that tiny corpora (a handful of search
results) still score: the textbook Okapi IDF is zero or negative for a term found in half the
documents or more. Everything here is deterministic.
"""

from __future__ import annotations

import math
import os
import re
from collections import Counter
from pathlib import Path

from rank_bm25 import BM25Okapi

from readfirst.core.config import Spec
from readfirst.research import Hypothesis, Reference, ResearchContext

STOPWORDS = frozenset([
    "a", "an", "and", "are", "as", "at", "be", "by", "can", "for", "from", "has", "have", "in",
    "into", "is", "it", "its", "of", "on", "or", "our", "than", "that", "the", "their", "this",
    "to", "was", "we", "were", "which", "with", "via", "using", "use", "based", "new", "also",
    "these", "those", "such", "not", "but", "do", "does", "how", "what", "when", "where", "who",
    "will", "may", "more", "most", "other",
])
MAX_QUERIES = 4
MAX_HYPOTHESES = 5
RELATIVE_THRESHOLD = 0.4  # a paper becomes a hypothesis at >= 40% of the best BM25 score
PAPER_WEIGHT = 0.5  # hypothesis score = relevance relative to the best x 0.5
_GENERIC = frozenset([  # words of function names that say nothing about the algorithm
    "get", "set", "run", "main", "impl", "func", "inner", "helper", "internal", "compute",
    "process", "handle", "tmp", "init", "call", "ops", "loop", "apply", "exec", "kernel",
])
_LANGS = {".cu": "cuda", ".cuh": "cuda", ".cl": "opencl", ".metal": "metal", ".wgsl": "webgpu",
          ".rs": "rust", ".jl": "julia", ".f90": "fortran", ".go": "golang", ".py": "python",
          ".java": "java", ".zig": "zig"}  # C/C++/JS make poor search terms: no hint
_SKIP_DIRS = frozenset({"node_modules", "build", "target", "dist", "venv", "__pycache__"})
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_NON_ALNUM = re.compile(r"[^A-Za-z0-9]+")


def split_name(name: str) -> list[str]:
    """Words of an identifier or phrase: `rms_norm` -> [rms, norm], `softmaxFwd` -> [softmax, fwd].

    Keeps case-folded words, in order, including short ones and digits.
    """
    words: list[str] = []
    for part in _NON_ALNUM.split(name):
        words.extend(w.lower() for w in _CAMEL.split(part) if w)
    return words


def _stem(word: str) -> str:
    """A crude plural folding (kernels -> kernel), applied to documents and queries alike."""
    if len(word) > 4 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def tokenize(text: str) -> list[str]:
    """Lowercase tokens: split on non-alphanumerics and snake/camel case, drop stopwords and
    one-letter or purely numeric tokens."""
    return [
        _stem(w) for w in split_name(text)
        if len(w) > 1 and not w.isdigit() and w not in STOPWORDS
    ]


class _LuceneBM25(BM25Okapi):
    """BM25Okapi with IDF = ln(1 + (N - n + 0.5) / (n + 0.5)), never negative."""

    def _calc_idf(self, nd: dict[str, int]) -> None:
        for word, freq in nd.items():
            self.idf[word] = math.log(1 + (self.corpus_size - freq + 0.5) / (freq + 0.5))
        self.average_idf = sum(self.idf.values()) / len(self.idf) if self.idf else 0.0


def query_tokens(query_terms: list[str]) -> list[str]:
    """The distinct tokens of the query terms, in first-seen order."""
    return list(dict.fromkeys(t for term in query_terms for t in tokenize(term)))


def rank(documents: list[str], query_terms: list[str]) -> list[float]:
    """BM25 score of each document against the query terms (0.0 when nothing matches)."""
    if not documents:
        return []
    corpus = [tokenize(d) for d in documents]
    query = query_tokens(query_terms)
    if not query or not any(corpus):
        return [0.0] * len(documents)
    bm25 = _LuceneBM25(corpus)
    return [round(float(s), 9) for s in bm25.get_scores(query)]


def matched_terms(document: str, query_terms: list[str]) -> list[str]:
    """The query tokens that occur in the document, in query order."""
    words = set(tokenize(document))
    return [t for t in query_tokens(query_terms) if t in words]


# ---- queries ------------------------------------------------------------------------------

def perf_word(spec: Spec) -> str:
    """What the metric measures, as a search term: throughput, latency, memory or performance."""
    text = f"{spec.metric.name or ''} {spec.metric.unit}".lower()
    if re.search(r"/s\b|per_?s(ec)?\b|throughput|tok|flops|ops\b|qps|rps|bandwidth", text):
        return "throughput"
    if re.search(r"\b(ms|us|ns|s|sec|seconds|µs)\b|time|latency|duration", text):
        return "latency"
    if re.search(r"mem|rss|bytes|\b[kmg]i?b\b", text):
        return "memory"
    return "performance"


def language_hints(root: Path, limit: int = 20_000) -> list[str]:
    """Searchable language names of the code under `root`, most files first."""
    counts: Counter[str] = Counter()
    seen = 0
    for _dir, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in _SKIP_DIRS)
        for f in files:
            lang = _LANGS.get(os.path.splitext(f)[1].lower())
            if lang:
                counts[lang] += 1
        seen += len(files)
        if seen > limit:
            break
    return [lang for lang, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]


def _topics(ctx: ResearchContext) -> list[str]:
    topics = ctx.research.get("topics") or []
    return [topics] if isinstance(topics, str) else [str(t) for t in topics]


def _hot_words(name: str) -> list[str]:
    """Up to 3 telling words of a function name (`ggml_vec_dot_q4_0` -> ggml, vec, dot)."""
    return [w for w in split_name(name)
            if len(w) > 2 and not w.isdigit() and w not in _GENERIC and w not in STOPWORDS][:3]


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def _query_plan(ctx: ResearchContext) -> list[tuple[str, str]]:
    """(arXiv search_query, plain-text query) pairs, most specific first, at most 4."""
    perf = perf_word(ctx.spec)
    perfs = list(dict.fromkeys([perf, "efficient", "performance"]))
    perf_q = "(" + " OR ".join(f"all:{p}" for p in perfs) + ")"

    def term(words: list[str], phrase: bool) -> str:
        if len(words) == 1:
            return f"all:{words[0]}"
        return f'all:"{" ".join(words)}"' if phrase else \
            "(" + " AND ".join(f"all:{w}" for w in words) + ")"

    def any_of(terms: list[str]) -> str:
        return terms[0] if len(terms) == 1 else "(" + " OR ".join(terms) + ")"

    hot = list(dict.fromkeys(tuple(w) for w in map(_hot_words, ctx.hotspots) if w))[:3]
    topics = list(dict.fromkeys(tuple(w) for w in map(_words, _topics(ctx)) if w))[:2]
    kws = list(dict.fromkeys(tuple(w) for w in map(_words, ctx.keywords) if w))[:3]
    plan: list[tuple[str, str]] = []
    if hot:
        plan.append((any_of([term(list(h), False) for h in hot]) + " AND " + perf_q,
                     " ".join(dict.fromkeys([w for h in hot for w in h] + [perf]))))
    plan += [(term(list(t), True), " ".join(t)) for t in topics]
    if kws:
        plan.append((any_of([term(list(k), True) for k in kws]) + " AND " + perf_q,
                     " ".join(dict.fromkeys([w for k in kws for w in k] + [perf]))))
    langs = language_hints(ctx.root)
    subject = hot[0] if hot else kws[0] if kws else topics[0] if topics else None
    if langs and subject:
        plan.append((f"{term(list(subject), not hot)} AND all:{langs[0]}",
                     " ".join([*subject, langs[0]])))
    return list(dict.fromkeys(plan))[:MAX_QUERIES]


def build_queries(ctx: ResearchContext) -> list[str]:
    """arXiv `search_query` strings for the target (deterministic, at most 4)."""
    return [q for q, _ in _query_plan(ctx)]


def build_plain_queries(ctx: ResearchContext) -> list[str]:
    """The same queries as plain keywords, for Semantic Scholar."""
    return [p for _, p in _query_plan(ctx)]


def ranking_terms(ctx: ResearchContext) -> list[str]:
    """What a relevant paper talks about: hotspot names, keywords, topics. (Not the metric:
    words like "time" match almost any abstract.)"""
    return [*ctx.hotspots[:8], *ctx.keywords, *_topics(ctx)]


def rank_references(source: str, refs: list[Reference], docs: list[str],
                    ctx: ResearchContext) -> tuple[list[Reference], list[Hypothesis]]:
    """`refs` ordered by the BM25 relevance of `docs` (one text per ref) to `ranking_terms`,
    and `paper` hypotheses for the best few: at most 5, each at >= 40% of the best score,
    scored relevance / best x 0.5 so papers alone never outrank concrete code evidence."""
    terms = ranking_terms(ctx)
    scores = rank(docs, terms)
    order = sorted(range(len(refs)), key=lambda i: (-scores[i], i))
    best = scores[order[0]] if order else 0.0
    hyps = []
    for i in order[:MAX_HYPOTHESES] if best > 0 else []:
        rel = scores[i] / best
        if rel < RELATIVE_THRESHOLD:
            break
        matched = matched_terms(docs[i], terms)
        hot = [h for h in ctx.hotspots[:8] if set(tokenize(h)) & set(matched)]
        why = (f"Title/abstract match the target's terms {', '.join(matched)} "
               f"(BM25 {scores[i]:.2f}, {rel:.0%} of the best {source} result). ")
        why += (f"Matches hotspot functions: {', '.join(hot)}." if hot else
                f"No hotspot function name matched (hotspots: {', '.join(ctx.hotspots[:3])})."
                if ctx.hotspots else "No hotspot functions known.")
        hyps.append(Hypothesis(
            title=f"Apply idea from: {refs[i].title}", kind="paper", rationale=why,
            sources=[refs[i].id], score=round(PAPER_WEIGHT * rel, 4), expected_effect="",
            data={"relevance": scores[i], "matched": matched}))
    return [refs[i] for i in order], hyps
