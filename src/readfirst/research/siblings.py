"""SiblingBackendsSource: what parallel implementations have that the target backend lacks.

Families of siblings: directories `<prefix>-cpu|cuda|metal|...` (or `_`) under one parent,
`backends/<name>/`, and files `<stem>_avx2.c|_neon.c|_scalar.c|...`. The target is
`[research] backend`, else `cpu`, else the generic/scalar/ref member. Two kinds of gap:
(a) an op sequence that two or more siblings fuse (`can_fuse(..., {GGML_OP_RMS_NORM,
GGML_OP_MUL})`) and the target never checks; (b) an op (a `case` label of the op enum) or a
kernel (a function of a file family) that two or more siblings implement and the target lacks.
"""

from __future__ import annotations

import re
import time
from collections import defaultdict
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any

from readfirst.research import Finding, Hypothesis, Reference, ResearchContext, Site, conventions
from readfirst.research import treesit as T
from readfirst.research.conventions import Conventions, Family, families, pick_target
from readfirst.research.ranking import in_scope

__all__ = ["Family", "SiblingBackendsSource", "families", "pick_target", "scan_file", "short"]

_FUSE = re.compile(r"fuse|fusion", re.I)
_ARRAY_SET = re.compile(r"\[\s*\w*\s*\]\s*=[^=]|=\s*\{")
FUSION_SCORE, MISSING_SCORE, MAX_MISSING = 0.8, 0.5, 30
WINDOW = 8  # lines above a fuse call searched for `ops[k] = GGML_OP_X` when its args name none
CALLS = "(call_expression function: (_) @f) @c"
SWITCHES = "(switch_statement) @s"
CONDITIONS = "(if_statement condition: (_) @c) (return_statement) @c (initializer_list) @c"
VARIANTS = tuple(sorted(conventions.load({}).variants))
_CONV: Conventions = conventions.load({})  # set by the source before the (forked) scan


@cache
def _literal(pattern: str) -> str:
    return conventions.literal_of(pattern)


def _op() -> re.Pattern[str]:
    return _CONV.op_constant or re.compile(r"(?!x)x")


def short(const: str) -> str:
    """GGML_OP_RMS_NORM -> RMS_NORM."""
    return const.split("_OP_", 1)[1] if "_OP_" in const else const.removeprefix("OP_")


# ---- per-file scan (runs in worker processes) -------------------------------------------


def _fn_name(node: Any) -> str | None:
    fn = T.enclosing_function(node)
    return T.function_name(fn) if fn is not None else None


def _ops_of_args(args: str) -> list[str]:
    """Op constants of the first `{...}` list naming any (the op list of a can_fuse call);
    the whole argument text when there are no braces."""
    for group in re.findall(r"\{[^{}]*\}", args):
        ops = _op().findall(group)
        if ops:
            return ops
    return [] if "{" in args else _op().findall(args)


def _fusions(tree: Any, lang: str, lines: list[str]) -> list[tuple[Any, ...]]:
    found: dict[tuple[tuple[str, ...], int], tuple[Any, ...]] = {}
    caps = T.captures(lang, CALLS, tree.root_node)
    for call in caps.get("c", []):
        name = T.text(call.child_by_field_name("function"))
        if not _CONV.fusion.search(name):
            continue
        ops, ln = _ops_of_args(T.text(call.child_by_field_name("arguments"))), T.line(call)
        fn = T.enclosing_function(call)
        if len(ops) < 2 and fn is not None:  # ops[0] = GGML_OP_X; ... can_fuse(g, i, ops, 2)
            lo = max(T.line(fn), ln - WINDOW)
            ops = [o for s in lines[lo - 1:ln - 1] if _ARRAY_SET.search(s)
                   for o in _op().findall(s)]
        if len(ops) >= 2:
            found[(tuple(ops), ln)] = (tuple(ops), ln, _fn_name(call), lines[ln - 1].strip())
    for fn in T.functions(tree.root_node, lang):
        name = T.function_name(fn) or ""
        body = fn.child_by_field_name("body")
        if not _CONV.fusion.search(name) or body is None:
            continue
        for node in T.captures(lang, CONDITIONS, body).get("c", []):
            s = T.text(node)
            ops = _op().findall(s)
            if len(ops) >= 2 and "||" not in s:
                ln = T.line(node)
                found.setdefault((tuple(ops), ln),
                                 (tuple(ops), ln, name, lines[ln - 1].strip()))
    return sorted(found.values(), key=lambda f: f[1])


def _cases(tree: Any, lang: str) -> list[tuple[Any, ...]]:
    """(const, line, function, switch line, op labels in the switch, handled) per op label."""
    out: list[tuple[Any, ...]] = []
    caps = T.captures(lang, SWITCHES, tree.root_node)
    for sw in caps.get("s", []):
        body = sw.child_by_field_name("body")
        if body is None:
            continue
        labels: list[tuple[str, int, bool]] = []
        pending: list[tuple[str, int]] = []
        for case in body.named_children:
            if case.type != "case_statement":
                continue
            value = case.child_by_field_name("value")
            if value is not None and _op().fullmatch(T.text(value)):
                pending.append((T.text(value), T.line(case)))
            stmts = [c for c in case.named_children if c != value and c.type != "comment"]
            if stmts:
                dead = len(stmts) == 1 and any(u.match(T.text(stmts[0]))
                                               for u in _CONV.unsupported)
                labels += [(c, ln, not dead) for c, ln in pending]
                pending = []
        labels += [(c, ln, True) for c, ln in pending]
        fn = _fn_name(sw)
        out += [(c, ln, fn, T.line(sw), len(labels), ok) for c, ln, ok in labels]
    return out


def _functions(tree: Any, lang: str) -> list[tuple[str, int, bool]]:
    out = []
    for fn in T.functions(tree.root_node, lang):
        name = T.function_name(fn)
        static = any(c.type == "storage_class_specifier" and T.text(c) == "static"
                     for c in fn.children)
        if name:
            out.append((name, T.line(fn), static))
    return out


def scan_file(item: tuple[str, str, bool]) -> tuple[str, dict[str, list[Any]]]:
    """Worker entry point: fusion checks, op case labels and (for file families) functions."""
    root, rel, want_functions = item
    out: dict[str, list[Any]] = {"fusions": [], "cases": [], "functions": [],
                                 "registered": []}
    src, lang = T.read_source(Path(root), rel), T.language_of(rel)
    if src is None or lang is None:
        return rel, out
    if _CONV.registration:
        text = src.decode("utf-8", "replace")
        for rx in _CONV.registration:
            if _literal(rx.pattern) not in text:
                continue
            for m in rx.finditer(text):
                out["registered"].append((m[1], text.count("\n", 0, m.start()) + 1))
    fus = re.search(rb"fus", src, re.I) is not None and _op().search(
        src.decode("utf-8", "replace")) is not None
    lits = _CONV.op_literals
    case = b"case" in src and (not all(lits) or any(x.encode() in src for x in lits))
    if not (fus or case or want_functions):
        return rel, out
    tree = T.parse(src, lang)
    if fus:
        out["fusions"] = _fusions(tree, lang, src.decode("utf-8", "replace").splitlines())
    if case:
        out["cases"] = _cases(tree, lang)
    if want_functions:
        out["functions"] = _functions(tree, lang)
    return rel, out


# ---- comparison -------------------------------------------------------------------------


def _contains(seq: tuple[str, ...], part: tuple[str, ...]) -> bool:
    n = len(part)
    return any(seq[i:i + n] == part for i in range(len(seq) - n + 1))


def _normalize(name: str) -> str:
    """Kernel name without its variant: dot_q4_avx2 / avx2_dot_q4 -> dot_q4."""
    parts = [p for p in re.split(r"_+", name.split("::")[-1]) if p.lower() not in VARIANTS]
    return "_".join(parts) or name


def _dispatch_rank(fn: str | None) -> int:
    low, hints = (fn or "").lower(), _CONV.dispatch
    return next((i for i, k in enumerate(hints) if k in low), len(hints))


@dataclass
class _Member:
    fusions: dict[tuple[str, ...], list[tuple[str, int, str | None, str]]] = field(
        default_factory=lambda: defaultdict(list))
    handled: dict[str, list[tuple[str, int]]] = field(default_factory=lambda: defaultdict(list))
    cases: list[tuple[str, str, int, str | None, int, int]] = field(default_factory=list)
    kernels: dict[str, list[tuple[str, int]]] = field(default_factory=lambda: defaultdict(list))
    registered: dict[str, list[tuple[str, int]]] = field(
        default_factory=lambda: defaultdict(list))
    stems: dict[str, list[tuple[str, int]]] = field(default_factory=lambda: defaultdict(list))


def _member(name: str, files: list[str], scans: dict[str, dict[str, list[Any]]]) -> _Member:
    m = _Member()
    for rel in files:
        m.stems[conventions.normalized_stem(rel, name, _CONV)].append((rel, 1))
        scan = scans.get(rel, {})
        for key, ln in scan.get("registered", []):
            m.registered[key].append((rel, ln))
        for ops, ln, fn, line in scan.get("fusions", []):
            m.fusions[tuple(ops)].append((rel, ln, fn, line))
        for const, ln, fn, sw_line, size, ok in scan.get("cases", []):
            m.cases.append((const, rel, ln, fn, sw_line, size))
            if ok:
                m.handled[const].append((rel, ln))
        for name, ln, static in scan.get("functions", []):
            if not static:
                m.kernels[_normalize(name)].append((rel, ln))
    return m


def _target_site(fam: Family, target: str, m: _Member, const: str | None) -> Site:
    """Where the target would need the change: its dispatch switch (at `case const` when it
    has one), else its main file."""
    cands = [c for c in m.cases if const is None or c[0] == const] or m.cases
    if cands:
        c = min(cands, key=lambda c: (_dispatch_rank(c[3]), -c[5], c[1], c[2]))
        return Site(c[1], c[2] if c[0] == const else c[4], c[3])
    files = fam.members[target]
    home = PurePosixPath(fam.roots.get(target, files[0]))
    main = next((f for f in files if PurePosixPath(f).stem == home.name), files[0])
    return Site(main, 1, None)


def _fusion_gaps(fam: Family, target: str, ms: dict[str, _Member],
                 finding: Finding) -> None:
    seqs = sorted({s for name, m in ms.items() if name != target for s in m.fusions})
    for seq in seqs:
        sibs = sorted(n for n, m in ms.items() if n != target and seq in m.fusions)
        if len(sibs) < 2 or any(_contains(t, seq) for t in ms[target].fusions):
            continue
        names = [short(c) for c in seq]
        site = _target_site(fam, target, ms[target], seq[0])
        where: dict[str, list[str]] = {}
        sites, refs = [], []
        for sib in sibs:
            for rel, ln, fn, line in ms[sib].fusions[seq][:3]:
                where.setdefault(sib, []).append(f"{rel}:{ln}")
                sites.append(Site(rel, ln, fn))
                refs.append(Reference(f"{rel}:{ln}", "code",
                                      f"{sib}: fusion check {' + '.join(names)}", None, line))
        listed = "; ".join(f"{s} at {', '.join(where[s])}" for s in sibs)
        finding.hypotheses.append(Hypothesis(
            title=f"Fuse {' + '.join(names)} in the {target} backend (as {', '.join(sibs)} do)",
            kind="backend-gap",
            rationale=(f"{len(sibs)} sibling backends of {fam.where} check whether "
                       f"{' -> '.join(names)} can run as one fused kernel ({listed}); the "
                       f"{target} backend has no such check and runs them as separate ops, "
                       f"writing and re-reading the intermediate. The {target} dispatch at "
                       f"{site.path}:{site.line} is where a fused path would go; fuse only when "
                       "the intermediate has no other consumer (what the shared can_fuse "
                       "helper checks)."),
            sites=[*sites, site],
            sources=[r.id for r in refs],
            expected_effect="one pass over the activations instead of "
                            f"{len(seq)}; helps when memory-bound",
            score=FUSION_SCORE,
            data={"ops": names, "constants": list(seq), "siblings": where, "target": target,
                  "family": fam.where, "target_site": f"{site.path}:{site.line}"},
        ))
        finding.references.extend(refs)


def _key_sets(fam: Family, target: str, ms: dict[str, _Member]
              ) -> tuple[dict[str, dict[str, list[tuple[str, int]]]], list[str], str]:
    """What each member has, as comparable keys, and which keys to compare: handled op-enum
    cases (only enums the target switches over, not e.g. VK_..._OP_...), registered stubs
    or kernel ids (when the target registers any), else kernel files (directories) or
    kernel functions (file families). Also the verb for the rationale."""
    if fam.kind != "dir":
        sets = {n: {**m.stems, **m.kernels} for n, m in ms.items()}
        return sets, sorted({k for n, s in sets.items() if n != target for k in s}), "defines"
    prefixes = {c.rsplit("OP_", 1)[0] for c, *_ in ms[target].cases}
    sets = {n: {**m.handled, **m.registered} for n, m in ms.items()}
    keys = {k for n, m in ms.items() if n != target for k in m.handled
            if k.rsplit("OP_", 1)[0] in prefixes}
    if ms[target].registered:
        keys |= {k for n, m in ms.items() if n != target for k in m.registered}
    if keys:
        return sets, sorted(keys), "handles"
    if any(m.handled or m.registered for m in ms.values()):
        return sets, [], "handles"
    sets = {n: m.stems for n, m in ms.items()}
    return sets, sorted({k for n, s in sets.items() if n != target for k in s if k}), "has"


def _missing(fam: Family, target: str, ms: dict[str, _Member], finding: Finding) -> None:
    sets, names, what = _key_sets(fam, target, ms)
    gaps = []
    for k in names:
        sibs = sorted(n for n, s in sets.items() if n != target and k in s)
        if len(sibs) >= 2 and k not in sets[target]:
            gaps.append((k, sibs))
    if len(gaps) > MAX_MISSING:
        finding.notes.append(f"siblings: {fam.where}: {len(gaps)} ops/kernels missing in "
                             f"{target}; kept the first {MAX_MISSING}")
    for k, sibs in gaps[:MAX_MISSING]:
        label = short(k) if what == "handles" else k
        locs = {s: [f"{rel}:{ln}" for rel, ln in sets[s][k][:2]] for s in sibs}
        site = _target_site(fam, target, ms[target], None)
        refs = [Reference(i, "code", f"{s}: {label}") for s in sibs for i in locs[s]]
        what = "handles" if fam.kind == "dir" else "defines"
        finding.hypotheses.append(Hypothesis(
            title=f"{label} exists in {len(sibs)} sibling backends but not in {target}",
            kind="backend-gap",
            rationale=(f"In {fam.where}, " + "; ".join(f"{s} {what} {label} at "
                                                      f"{', '.join(locs[s])}" for s in sibs)
                       + f"; the {target} backend has no counterpart (see {site.path}:"
                       f"{site.line}). Port the sibling version or check why it is absent."),
            sites=[Site(rel, ln) for s in sibs for rel, ln in sets[s][k][:2]] + [site],
            sources=[r.id for r in refs],
            score=MISSING_SCORE,
            data={"op": k, "siblings": locs, "target": target, "family": fam.where},
        ))
        finding.references.extend(refs)


class SiblingBackendsSource:
    """Fusions and ops that sibling backends (or SIMD variants) have and the target lacks."""

    name = "siblings"
    needs_network = False

    def run(self, ctx: ResearchContext) -> Finding:
        started = time.perf_counter()
        finding = Finding(self.name)
        global _CONV
        _CONV = conventions.load(ctx.research)  # inherited by the forked scanners
        scope = list(ctx.spec.target.scope)
        fams = families(T.tracked_files(ctx.root, ("c", "cpp")), _CONV)
        wanted: dict[str, bool] = {}
        for fam in fams:
            for files in fam.members.values():
                for rel in files:
                    wanted[rel] = wanted.get(rel, False) or fam.kind == "files"
        items = [(str(ctx.root), rel, fn) for rel, fn in sorted(wanted.items())]
        workers = T.workers_for(ctx.research.get("jobs"))
        scans = dict(T.parallel_map(scan_file, items, workers, min_items=200))
        for fam in fams:
            inside = [n for n, fs in fam.members.items() if any(in_scope(f, scope) for f in fs)]
            if not inside:
                continue  # nothing of this family may change: its gaps are not sites
            target = pick_target(list(fam.members), _CONV.target,
                                 inside if scope else None, _CONV.fallbacks)
            if target is None:
                finding.notes.append(f"siblings: {fam.where}: no target among "
                                     f"{', '.join(fam.members)} (set [research.siblings] "
                                     "target)")
                continue
            ms = {n: _member(n, files, scans) for n, files in fam.members.items()}
            _fusion_gaps(fam, target, ms, finding)
            _missing(fam, target, ms, finding)
        if not fams:
            finding.notes.append("siblings: no sibling backends or SIMD variant families")
        finding.seconds = time.perf_counter() - started
        return finding
