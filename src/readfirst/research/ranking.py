"""How hypotheses become a ranked list: scope, one row per site, the profile's weight, and
advice that agrees with the diagnosis.

- `apply_scope`: a site outside `[target] scope` is never offered as a place to change; it
  stays as a cited source (a sibling backend's kernel), and a hypothesis left with no site
  in scope is dropped.
- `Profile`: inclusive shares (through callees) of the profiled run; a hypothesis's score
  grows with the share of its functions, and one whose sites the benchmark never runs is
  ranked last and says so.
- `merge_by_site`: one row per site (the same place found by two sources is one hypothesis).
- `reconcile`: no "helps when memory-bound" under a diagnosis that says compute-bound.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from readfirst.core import constants as C
from readfirst.core.globs import matches
from readfirst.research import Finding, Hypothesis, Reference, Site
from readfirst.research import treesit as T

NOT_PROFILED = "not in the profile"
_ARGS = re.compile(r"\(.*$")
_SUFFIX = re.compile(r"(\.(isra|constprop|part|cold|lto_priv|localalias)(\.\d+)?)+$|@.*$")
_MEMORY_ONLY = re.compile(r";?\s*helps when memory-bound")


def plain(name: str) -> str:
    """A function name as profiles and parsers both can say it: no arguments, no compiler
    suffix, no namespace (`ns::A::f(int) .isra.0` -> `f`)."""
    name = _SUFFIX.sub("", _ARGS.sub("", name.strip())).strip()
    return name.rsplit("::", 1)[-1].rsplit(".", 1)[-1] if name else name


# ---- scope ----------------------------------------------------------------------------------


def in_scope(path: str, scope: list[str]) -> bool:
    """`path` (relative to the target's root) is somewhere a candidate may change."""
    return not scope or matches(path, scope)


def apply_scope(findings: list[Finding], scope: list[str]) -> list[str]:
    """Keep only in-scope sites; out-of-scope ones become cited `code` references. Hypotheses
    that had sites and have none left are dropped. Returns notes."""
    if not scope:
        return []
    dropped = 0
    for f in findings:
        kept = []
        for h in f.hypotheses:
            inside = [s for s in h.sites if in_scope(s.path, scope)]
            outside = [s for s in h.sites if not in_scope(s.path, scope)]
            if h.sites and not inside:
                dropped += 1
                continue
            known = {r.id for r in f.references}
            for s in outside:
                ref = f"{s.path}:{s.line}"
                if ref not in known:
                    known.add(ref)
                    f.references.append(Reference(ref, "code", (
                        f"{s.function or s.path} (evidence outside the scope)")))
                if ref not in h.sources:
                    h.sources.append(ref)
            h.sites = inside
            kept.append(h)
        f.hypotheses = kept
    return [f"scope: {dropped} hypothesis(es) had no site in [target] scope and were dropped"
            ] if dropped else []


# ---- the profile ----------------------------------------------------------------------------


class Profile:
    """Inclusive shares (percent of samples whose stack holds the function) of a diagnosis."""

    def __init__(self, diagnosis: dict[str, Any] | None) -> None:
        d = diagnosis or {}
        rows = d.get("inclusive") or d.get("top_functions") or []
        self.inclusive = bool(d.get("inclusive"))
        self.shares: dict[str, float] = {}
        for r in rows:
            key = plain(str(r["function"]))
            if key and not key.startswith("["):
                self.shares[key] = max(self.shares.get(key, 0.0), float(r["share"]))
        self.seen = {plain(n) for n in d.get("profiled") or []} | set(self.shares)
        # only a full list of sampled functions can say "never run" (the top 15 cannot)
        self.available = bool(d.get("profiled"))

    def share(self, function: str | None) -> float | None:
        """Inclusive percent of `function`; 0.0 when sampled but below the listed ones; None
        when the benchmark never ran it (or it is unknown)."""
        if not function:
            return None
        key = plain(function)
        if key in self.shares:
            return self.shares[key]
        return 0.0 if key in self.seen else None


def functions_of(root: str, rel: str) -> tuple[tuple[int, int, str], ...]:
    """(first line, last line, name) of each function a file defines."""
    try:
        st = (Path(root) / rel).stat()
    except OSError:
        return ()
    return _functions_of(root, rel, st.st_mtime_ns, st.st_size)


@lru_cache(maxsize=4096)
def _functions_of(root: str, rel: str, _mtime: int, _size: int,
                  ) -> tuple[tuple[int, int, str], ...]:
    lang, src = T.language_of(rel), T.read_source(Path(root), rel)
    if lang is None or src is None:
        return ()
    tree = T.parse(src, lang)
    out = []
    for fn in T.functions(tree.root_node, lang):
        name = T.function_name(fn)
        if name:
            out.append((T.line(fn), T.end_line(fn), name))
    return tuple(out)


def function_at(root: Path, site: Site) -> str | None:
    """The function a site is in: its own, else the innermost definition around its line."""
    if site.function:
        return site.function
    spans = [s for s in functions_of(str(root), site.path) if s[0] <= site.line <= s[1]]
    return min(spans, key=lambda s: s[1] - s[0])[2] if spans else None


def weigh_by_profile(hyps: list[Hypothesis], profile: Profile, root: Path) -> None:
    """score += PROFILE_WEIGHT x the largest inclusive share among a hypothesis's functions;
    sites the benchmark never runs: marked, and ranked last by `sort_key`."""
    for h in hyps:
        if not h.sites:
            continue
        shares = [profile.share(function_at(root, s)) for s in h.sites]
        known = [s for s in shares if s is not None]
        if not known:
            h.data["in_profile"] = False
            h.rationale += f" ({NOT_PROFILED}: the benchmark never runs these sites)"
            continue
        best = max(known)
        h.data.update(in_profile=True, profile_share=round(best, 2))
        h.score += C.PROFILE_WEIGHT * best / 100.0
        if best > 0:
            h.rationale += f" (its code has {best:.1f} % of the profile's samples)"


def sort_key(h: Hypothesis) -> tuple[bool, float, str, str]:
    return (h.data.get("in_profile") is False, -h.score, h.kind, h.title)


# ---- one row per site, advice that fits the diagnosis ---------------------------------------


def dedupe_sites(h: Hypothesis) -> None:
    """Each `path:line` once, keeping the entry that names its function."""
    seen: dict[tuple[str, int], int] = {}
    out: list[Site] = []
    for s in h.sites:
        key = (s.path, s.line)
        if key not in seen:
            seen[key] = len(out)
            out.append(s)
        elif out[seen[key]].function is None and s.function:
            out[seen[key]] = s
    h.sites = out


def merge_by_site(hyps: list[Hypothesis]) -> list[Hypothesis]:
    """Hypotheses (best first) whose first site is the same place become one row: the best
    keeps its title, the others are named in its rationale and their sources join."""
    rows: dict[tuple[str, int], Hypothesis] = {}
    out: list[Hypothesis] = []
    for h in hyps:
        dedupe_sites(h)
        if not h.sites:
            out.append(h)
            continue
        key = (h.sites[0].path, h.sites[0].line)
        row = rows.get(key)
        if row is None:
            rows[key] = h
            out.append(h)
            continue
        also = row.data.setdefault("also", [])
        also.append({"title": h.title, "kind": h.kind})
        row.sources = list(dict.fromkeys([*row.sources, *h.sources]))
        row.sites = [*row.sites, *(s for s in h.sites if s not in row.sites)]
        row.score = round(row.score + C.CORROBORATION_BOOST * (len(also) == 1), 4)
    for h in out:
        also = h.data.get("also")
        if also:
            h.rationale += " Also at this site: " + "; ".join(
                f"{a['title']} ({a['kind']})" for a in also[:5]) + (
                f" and {len(also) - 5} more" if len(also) > 5 else "") + "."
    return out


def reconcile(h: Hypothesis, diagnosis: dict[str, Any] | None) -> None:
    """Advice that does not contradict the diagnosis."""
    conclusion = str((diagnosis or {}).get("conclusion", ""))
    if conclusion.startswith("compute"):
        if _MEMORY_ONLY.search(h.expected_effect):
            h.expected_effect = _MEMORY_ONLY.sub("", h.expected_effect) + (
                "; the diagnosis says compute-bound, so the gain is the work saved per "
                "element (loop overhead, re-reads from cache), not bandwidth")
    elif conclusion.startswith("memory"):
        h.expected_effect = _MEMORY_ONLY.sub("; the diagnosis says memory-bound: this is the "
                                             "lever", h.expected_effect)
