"""MultiPassSource: consecutive passes over the same buffer that could be one pass.

This module holds the research source itself: `MultiPassSource` walks the tracked non-test
files in parallel, `scan_file` is the per-file worker (a cheap text pre-filter, then
`scan_source`), and `hypothesis_for` turns each chain found into a scored Hypothesis with its
code Reference; `scan_source` scans one file's blocks. What counts as a pass (`classify`,
passes.py; Python statements in passes_python.py; what they produce in pass_model.py) and how
passes chain (`chains`, `buffers_of`, chains.py) is re-exported here.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import tree_sitter as ts

from readfirst.research import Finding, Hypothesis, Reference, ResearchContext, Site
from readfirst.research import treesit as T
from readfirst.research.chains import buffers_of, chains
from readfirst.research.pass_model import LOOPS, Env, Other, Pass, environment
from readfirst.research.passes import classify
from readfirst.research.passes_python import defines
from readfirst.research.ranking import in_scope
from readfirst.research.wrappers import find_wrappers

__all__ = ["EFFECT", "MAX_HYPOTHESES", "Env", "MultiPassSource", "Other", "Pass", "buffers_of",
           "chains", "classify", "environment", "hypothesis_for", "scan_file", "scan_source"]

EFFECT = "one pass over memory instead of N; helps when memory-bound"
MAX_HYPOTHESES = 200
_FILE_HINT = re.compile(rb"\bfor\b|memcpy|memmove|copy|cpy|ggml_vec_|\[:\]|out=")
_TESTS = re.compile(r"(^|/)(tests?|testing)/|(^|/)test_[^/]*$|_test\.\w+$")

CANDIDATES = {
    "c": "(for_statement) @s (expression_statement) @s (declaration) @s",
    "cpp": "(for_statement) @s (for_range_loop) @s (expression_statement) @s (declaration) @s",
    "python": "(for_statement) @s (expression_statement) @s",
}
BLOCKS = ("compound_statement", "block", "case_statement")
IFS = ("if_statement", "else_clause", "elif_clause")
GAP_TYPES = ("declaration", "expression_statement", "if_statement", "preproc_call",
             "preproc_def", "preproc_function_def", "type_definition", "pass_statement")
_BREAK = re.compile(rb"\b(for|while|do|goto|break|continue|return|raise|throw|yield)\b")
_C_HINT = re.compile(rb"memcpy|memmove|copy|cpy|ggml_vec_|scal|mul|add|sub|div|exp|axpy|mad|"
                     rb"fma|relu|gelu|silu|tanh|sigm|neg|sqr|abs|clamp|soft|acc|sum|max|min|dot"
                     rb"|mean|reduce|nrm2")


def _other(st: ts.Node) -> Other:
    breaks = st.type not in GAP_TYPES or bool(_BREAK.search(st.text or b""))
    return Other(frozenset(T.words(st)), breaks, frozenset(defines(st)))


def _is_debug(st: ts.Node) -> bool:
    """`#ifndef NDEBUG` / `#ifdef DEBUG` blocks: checks, not passes."""
    return st.type in ("preproc_ifdef", "preproc_if") and "DEBUG" in T.text(
        st.child_by_field_name("name") or st.child_by_field_name("condition"))


def _units(stmt: ts.Node) -> list[tuple[ts.Node, ts.Node]]:
    """(block, statement of that block) pairs a candidate counts for: its own block, and the
    block around an `if` whose only statement it is (a conditional pass)."""
    out, node = [], stmt
    while node.parent is not None:
        parent = node.parent
        if parent.type in BLOCKS:
            out.append((parent, node))
            if parent.parent is None or parent.parent.type not in IFS or len(
                    T.statements(parent)) != 1:
                return out
            node = parent.parent
        elif parent.type in IFS:
            node = parent
        else:
            return out
    return out


def _candidate(st: ts.Node, lang: str) -> bool:
    if st.type in LOOPS or lang == "python":
        return True
    return bool(_C_HINT.search(st.text or b"")) and "(" in T.text(st)


def scan_source(src: bytes, lang: str) -> list[dict[str, Any]]:
    """Multi-pass chains of one file, as plain dicts (picklable across processes)."""
    tree = T.parse(src, lang)
    blocks: dict[int, tuple[ts.Node, set[int]]] = {}
    for st in T.captures(lang, CANDIDATES[lang], tree.root_node).get("s", []):
        if _candidate(st, lang):
            for block, unit in _units(st):
                blocks.setdefault(block.id, (block, set()))[1].add(unit.id)
    found: list[dict[str, Any]] = []
    envs: dict[int, Env] = {}
    wrappers = find_wrappers(tree.root_node, lang) if blocks else {}
    lines = src.decode("utf-8", "replace").splitlines()
    for block, units in blocks.values():
        fn = T.enclosing_function(block) if len(units) >= 2 else None
        if fn is None:
            continue
        env = envs.get(fn.id) or envs.setdefault(fn.id, environment(fn, lang))
        env.wrappers = wrappers
        items: list[Pass | Other] = []
        for st in T.statements(block):
            if not _is_debug(st):
                p = classify(st, env)
                items.append(p if p is not None else _other(st))
        for chain in chains(items):
            first, last = chain[0].line, max(p.end for p in chain)
            found.append({
                "function": T.function_name(fn) or "?",
                "bufs": buffers_of(chain),
                "passes": [(p.line, p.kind, p.label) for p in chain],
                "first": first,
                "excerpt": "\n".join(lines[first - 1:min(last, first + 24)]),
            })
    return sorted(found, key=lambda f: f["first"])


def scan_file(item: tuple[str, str]) -> tuple[str, list[dict[str, Any]]]:
    """Worker entry point: (root, rel) -> (rel, chains)."""
    root, rel = item
    src = T.read_source(Path(root), rel)
    lang = T.language_of(rel)
    if src is None or lang is None or not _FILE_HINT.search(src):
        return rel, []
    return rel, scan_source(src, lang)


# ---- the source -------------------------------------------------------------------------


def hypothesis_for(rel: str, f: dict[str, Any],
                   hotspots: list[str]) -> tuple[Hypothesis, Reference]:
    n, fn = len(f["passes"]), f["function"]
    bufs = ", ".join(f"`{b}`" for b in f["bufs"])
    steps = "; ".join(f"{i + 1}) line {ln}: {label}"
                      for i, (ln, _k, label) in enumerate(f["passes"]))
    hot = fn in hotspots or fn.split("::")[-1] in hotspots
    ref_id = f"{rel}:{f['first']}"
    rationale = (f"{fn}() in {rel} makes {n} consecutive passes over {bufs}: {steps}. Nothing "
                 "else touches the buffer in between, so fewer loops can do the same work "
                 "(compute from the source while copying, accumulate while writing).")
    if hot:
        rationale += f" {fn}() is a profiled hotspot."
    hyp = Hypothesis(
        title=f"Fuse {n} passes over {bufs} in {fn}()",
        kind="multi-pass",
        rationale=rationale,
        sites=[Site(rel, f["first"], fn)] + [Site(rel, ln, fn) for ln, _k, _l in f["passes"]],
        sources=[ref_id],
        expected_effect=EFFECT,
        # the hot-function boost is the ranker's (research/run.py), applied once for all kinds
        score=round(min(0.7, 0.55 + 0.05 * (n - 2)), 4),
        data={"function": fn, "buffers": f["bufs"], "hot": hot,
              "passes": [{"line": ln, "kind": k, "what": lb} for ln, k, lb in f["passes"]]},
    )
    return hyp, Reference(ref_id, "code", f"{n} passes over {bufs} in {fn}()", None,
                          f["excerpt"])


class MultiPassSource:
    """Consecutive copy / elementwise / reduction passes over one buffer in one function."""

    name = "multipass"
    needs_network = False

    def run(self, ctx: ResearchContext) -> Finding:
        started = time.perf_counter()
        scope = list(ctx.spec.target.scope)  # only sites a candidate may change
        items = [(str(ctx.root), rel) for rel in T.tracked_files(ctx.root)
                 if not _TESTS.search(rel) and in_scope(rel, scope)]  # not tests: no time there
        workers = T.workers_for(ctx.research.get("jobs"))
        results = [hypothesis_for(rel, f, ctx.hotspots)
                   for rel, found in T.parallel_map(scan_file, items, workers) for f in found]
        results.sort(key=lambda hr: (-hr[0].score, hr[1].id))
        finding = Finding(self.name)
        if len(results) > MAX_HYPOTHESES:
            finding.notes.append(
                f"multipass: {len(results)} chains found, kept the {MAX_HYPOTHESES} best")
            results = results[:MAX_HYPOTHESES]
        finding.hypotheses = [h for h, _ in results]
        finding.references = [r for _, r in results]
        finding.seconds = time.perf_counter() - started
        return finding
