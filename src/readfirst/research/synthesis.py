"""The synthesis pass: with an LLM API configured (`[agent] kind = "openai" | "anthropic"`),
the model reads the profile, the top papers' abstracts, the ranked fork commits and the
code analysis's gaps, and writes hypotheses that cite them by reference id. A hypothesis
without a valid citation is dropped, and so is any site outside `[target] scope`.

Without an LLM (or offline, or on any API failure) research works as before, with a note.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from readfirst.core.errors import ConfigError
from readfirst.research import Hypothesis, Reference, ResearchContext, Site
from readfirst.research.profile import hot_functions
from readfirst.research.ranking import in_scope

SCORE = 0.6  # below concrete code evidence with a profile share, above papers alone
MAX_REFS = {"paper": 6, "commit": 8, "code": 10, "profile": 5}
ABSTRACT_CHARS = 700
SYSTEM = ("You are a senior performance engineer reading the homework before changing "
          "someone else's code: a profile, papers, competing forks' commits and gaps found by "
          "static analysis. You propose concrete, testable speed-ups and cite your evidence.")


class SynthesisHypothesis(BaseModel):
    model_config = ConfigDict(extra="ignore")
    title: str = Field(min_length=1)
    rationale: str
    sites: list[str] = []  # "path:line" or "path", relative to the target's directory
    cites: list[str]  # reference ids from the prompt
    expected_effect: str = ""


class SynthesisOut(BaseModel):
    hypotheses: list[SynthesisHypothesis]


def _evidence(refs: list[Reference], hyps: list[Hypothesis]) -> list[Reference]:
    """The references the prompt offers: cited by the ranked hypotheses first, per kind."""
    order = list(dict.fromkeys(s for h in hyps for s in h.sources))
    by_id = {r.id: r for r in refs}
    ranked = [by_id[i] for i in order if i in by_id] + [r for r in refs if r.id not in order]
    out, per_kind = [], dict.fromkeys(MAX_REFS, 0)
    for r in ranked:
        if r.kind in per_kind and per_kind[r.kind] < MAX_REFS[r.kind]:
            per_kind[r.kind] += 1
            out.append(r)
    return out


def prompt(ctx: ResearchContext, diagnosis: dict[str, Any] | None, hyps: list[Hypothesis],
           offered: list[Reference], n: int) -> str:

    lines = ["# The target", f"Scope (the only files you may name as sites): "
             f"{', '.join(ctx.spec.target.scope) or 'the whole project'}.",
             f"Metric: {ctx.spec.metric.name or 'the benchmark'} "
             f"({ctx.spec.metric.direction} is better).", ""]
    d = diagnosis or {}
    if d.get("conclusion"):
        lines.append(f"Diagnosis: {d['conclusion']}")
    hot = hot_functions({"diagnosis": d}, 10)
    if hot:
        lines.append("Profile (inclusive share of samples): "
                     + ", ".join(f"{f} {s:.1f} %" for f, s in hot))
    lines += ["", "# Hypotheses found so far (ranked)"]
    for i, h in enumerate(hyps[:12]):
        where = ", ".join(f"{s.path}:{s.line}" for s in h.sites[:3])
        lines.append(f"{i + 1}. [{h.kind}] {h.title} ({where}; cites {', '.join(h.sources[:3])})")
    lines += ["", "# Evidence, by reference id"]
    for r in offered:
        text = (getattr(r, "abstract", "") or r.detail or "").strip().replace("\n", " ")
        lines.append(f"- `{r.id}` ({r.kind}) {r.title}: {text[:ABSTRACT_CHARS]}")
    lines += ["", f"Write at most {n} new hypotheses that combine this evidence into concrete "
              "changes of the code in scope. Every hypothesis must cite one or more of the "
              "reference ids above in `cites` (hypotheses without a valid citation are "
              "dropped) and name its sites as `path:line` inside the scope. Answer with JSON "
              'only: {"hypotheses": [{"title": "...", "rationale": "...", "sites": '
              '["path:line"], "cites": ["<reference id>"], "expected_effect": "..."}]}']
    return "\n".join(lines)


def _site(text: str) -> Site | None:
    m = re.fullmatch(r"\s*`?([^`:\s]+)(?::(\d+))?`?\s*", text)
    return Site(m[1], int(m[2] or 1)) if m else None


def synthesize(ctx: ResearchContext, diagnosis: dict[str, Any] | None, hyps: list[Hypothesis],
               refs: list[Reference]) -> tuple[list[Hypothesis], list[str]]:
    """(cited hypotheses from the model, notes)."""
    from readfirst.core.config import load_agent
    from readfirst.core.config_tables import API_KINDS
    from readfirst.llm.clients import LLMError, extract_json, make_client

    if not ctx.spec.agent or ctx.spec.agent.get("kind") not in API_KINDS:
        return [], []
    if ctx.offline:
        return [], ["synthesis: skipped offline (the [agent] model is a network service)"]
    offered = _evidence(refs, hyps)
    if not offered:
        return [], ["synthesis: no evidence to synthesise from"]
    try:
        cfg = load_agent(ctx.spec)
        client = make_client(cfg)
        done = client.complete(SYSTEM, prompt(ctx, diagnosis, hyps, offered,
                                              cfg.max_hypotheses), purpose="research synthesis")
    except (ConfigError, LLMError) as e:
        return [], [f"synthesis: skipped ({e})"]
    notes = [f"synthesis: {done.model}, {done.input_tokens} + {done.output_tokens} tokens, "
             f"${done.cost_usd:.4f}"]
    if done.refusal:
        return [], [*notes, f"synthesis: the model declined: {done.refusal[:200]}"]
    try:
        out = SynthesisOut.model_validate(extract_json(done.text))
    except (ValueError, ValidationError) as e:
        return [], [*notes, f"synthesis: unreadable answer ({str(e).splitlines()[0][:200]})"]
    valid, scope = {r.id for r in offered}, list(ctx.spec.target.scope)
    kept, dropped = [], 0
    for s in out.hypotheses:
        cites = [c.strip().strip("`") for c in s.cites if c.strip().strip("`") in valid]
        sites = [x for x in map(_site, s.sites) if x and in_scope(x.path, scope)
                 and (ctx.root / x.path).is_file()]
        if not cites or (s.sites and not sites):
            dropped += 1
            continue
        kept.append(Hypothesis(s.title, "synthesis", s.rationale, sites, cites,
                               s.expected_effect, SCORE, {"model": done.model}))
    if dropped:
        notes.append(f"synthesis: dropped {dropped} hypothesis(es) without a valid citation "
                     "or site in scope")
    return kept, notes
