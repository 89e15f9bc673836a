"""MultiPassSource: consecutive passes over the same buffer that could be one pass.

This module holds the research source itself: `MultiPassSource` walks the tracked non-test
files in parallel, `scan_file` is the per-file worker (a cheap text pre-filter, then
`scan_source`), and `hypothesis_for` turns each chain found into a scored Hypothesis with its
code Reference. What counts as a pass and how passes chain (`classify`, `chains`,
`buffers_of`, `scan_source`) lives in readfirst.research.passes and is re-exported here.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from readfirst.research import Finding, Hypothesis, Reference, ResearchContext, Site
from readfirst.research import treesit as T
from readfirst.research.passes import (
    Env,
    Other,
    Pass,
    buffers_of,
    chains,
    classify,
    environment,
    scan_source,
)
from readfirst.research.ranking import in_scope

__all__ = ["EFFECT", "MAX_HYPOTHESES", "Env", "MultiPassSource", "Other", "Pass", "buffers_of",
           "chains", "classify", "environment", "hypothesis_for", "scan_file", "scan_source"]

EFFECT = "one pass over memory instead of N; helps when memory-bound"
MAX_HYPOTHESES = 200
_FILE_HINT = re.compile(rb"\bfor\b|memcpy|memmove|copy|cpy|ggml_vec_|\[:\]|out=")
_TESTS = re.compile(r"(^|/)(tests?|testing)/|(^|/)test_[^/]*$|_test\.\w+$")


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
