"""What the paper sources search for: the hot functions and the code analysis's best
hypotheses, in words an abstract would use, plus `[research] topics`.

Not the README's most frequent words nor the metric's name: "build", "autoresearch" or
"tok s" find nothing about the code's algorithm.
"""

from __future__ import annotations

from typing import Any

from readfirst.research import Finding, Hypothesis, ResearchContext
from readfirst.research.ranking import in_scope, plain
from readfirst.research.textrank import split_name

MAX_PHRASES = 6
# Words of names and titles that say nothing an abstract would: tooling, C noise, verbs.
_NOISE_TEXT = """
get set run main impl func inner helper internal compute process handle tmp init call ops op
loop apply exec kernel build make test tests bench benchmark benchmarks autoresearch readme
script scripts tok tokens src include file files data util utils misc common void static inline
const int float double char fix fixed add adds added use used using remove removed update
updated revisit recent work todo fixme the and for with from into via per not all new old more
less fast faster slow slower speed speedup perf performance optimize optimise optimized
optimised improve improved better port ported back forward fwd bwd ggml cpu gpu exists sibling
backends backend but than over pass passes fuse fused fusing fusion buffers buffer
"""
NOISE = frozenset(_NOISE_TEXT.split())
KIND_PHRASE = {"multi-pass": "kernel fusion", "fusion": "operator fusion",
               "backend-gap": "operator fusion"}


def _content(text: str, limit: int = 3) -> list[str]:
    words = [w for w in split_name(text) if len(w) > 2 and not w.isdigit() and w not in NOISE]
    return list(dict.fromkeys(words))[:limit]


def _phrase(h: Hypothesis) -> str:
    """Words for one hypothesis: its functions' (or ops') names, then what kind of idea."""
    names = [plain(s.function) for s in h.sites if s.function]
    ops = [str(o) for o in h.data.get("ops", [])]
    words = _content(" ".join(ops or names) or h.title)
    kind = KIND_PHRASE.get(h.kind, "")
    return " ".join(dict.fromkeys([*words, *kind.split()])) if words else ""


def query_keywords(ctx: ResearchContext, findings: list[Finding],
                   diagnosis: dict[str, Any] | None, scope: list[str]) -> list[str]:
    """Phrases from the hottest in-scope hypotheses (by the sources' own scores), then the
    hot functions' words; distinct, at most MAX_PHRASES + 2. (`[research] topics` are
    added by the query builder itself.)"""
    out: list[str] = []
    hyps = [h for f in findings for h in f.hypotheses if h.kind not in ("paper",)
            and (not h.sites or any(in_scope(s.path, scope) for s in h.sites))]
    hot = {plain(n) for n in (diagnosis or {}).get("hotspots", [])[:8]}
    hyps.sort(key=lambda h: (not any(plain(s.function or "") in hot for s in h.sites),
                             -h.score, h.title))
    for h in hyps:
        p = _phrase(h)
        if p and p not in out:
            out.append(p)
        if len(out) >= MAX_PHRASES:
            break
    for name in (diagnosis or {}).get("hotspots", [])[:5]:
        words = _content(name)
        if words and len(out) < MAX_PHRASES + 2:
            out.append(" ".join(words))
    return list(dict.fromkeys(out))[:MAX_PHRASES + 2]
