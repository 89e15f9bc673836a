"""Inclusive shares: the part of the samples spent in a function or anything it calls.

From call stacks when the profile has them (py-spy always; perf when the code keeps frame
pointers); otherwise from the self shares and a static call graph: every sampled function
passes its samples up to its callers, found with `git grep` for `name(` and the function
around each hit (tree-sitter), up to MAX_DEPTH levels. The static graph over-counts a helper
called from several places (each caller gets all of it): an upper bound, which is what a
ranking needs ("could this function matter?").
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from readfirst.research.ranking import functions_of, plain
from readfirst.research.roofline import pyspy_lines
from readfirst.vcs import gitcli

if TYPE_CHECKING:
    from readfirst.research.run import ResearchResult

MAX_DEPTH = 6  # caller levels followed in the static call graph
MAX_NAMES = 200  # sampled functions passed up (by self share)
MAX_HITS = 400  # call sites read per level (a name called everywhere says little)
MIN_SELF = 0.05  # percent: functions below it are not followed
DEEP_STACKS = 0.5  # share of samples with callers above which the stacks are trusted
KEEP = 40  # inclusive rows kept in the diagnosis
NATIVE_GLOBS = ("*.c", "*.h", "*.cc", "*.cpp", "*.cxx", "*.hpp", "*.hh", "*.cu", "*.cuh")
MAX_FRONTIER = 300  # callers followed per level
MAX_LINES = 20_000  # grep hits read per level
ENTRY_POINTS = frozenset({"main", "__init__", "__call__", "run", "start", "_start"})
_FRAME = re.compile(r"^\s+[0-9a-f]+\s+(.+?)(?:\s+\((.*)\))?\s*$")


def perf_stacks(lines: Iterable[str]) -> Iterable[list[str]]:
    """Stacks (leaf first) of `perf script -F ip,sym,dso`: indented `addr symbol (dso)`
    frames, one blank or unindented line between samples; kernel frames are "[kernel]"."""
    stack: list[str] = []
    for line in lines:
        m = _FRAME.match(line)
        if m:
            kernel = (m[2] or "").startswith("[kernel")
            stack.append("[kernel]" if kernel else re.sub(r"\+0x[0-9a-f]+$", "", m[1]))
        elif stack:
            yield stack
            stack = []
    if stack:
        yield stack


def pyspy_stacks(text: str) -> Iterable[tuple[list[str], int]]:
    """(stack leaf first, count) of py-spy's collapsed `--format raw` output."""
    for stack, n in pyspy_lines(text):
        frames = [re.sub(r" \(.*\)$", "", f) for f in stack.split(";") if f]
        frames = [f for f in frames if not f.startswith("process ")]
        yield frames[::-1], n


def from_stacks(stacks: Iterable[tuple[list[str], int]]) -> tuple[dict[str, float], float]:
    """(function -> inclusive percent, share of samples with a caller frame)."""
    counts: Counter[str] = Counter()
    total = deep = 0
    for frames, n in stacks:
        names = {plain(f) for f in frames if f and not f.startswith("[")}
        total += n
        deep += n if len(frames) > 1 else 0
        for name in names:
            counts[name] += n
    if not total:
        return {}, 0.0
    return {f: 100.0 * c / total for f, c in counts.items()}, deep / total


def static_inclusive(root: Path, self_shares: dict[str, float],
                     globs: tuple[str, ...] = NATIVE_GLOBS,
                     scope: list[str] | None = None) -> dict[str, float]:
    """Inclusive percent of each sampled function and its callers (see the module doc)."""
    sampled = sorted((n for n, s in self_shares.items() if s >= MIN_SELF and len(n) > 2
                      and re.fullmatch(r"[A-Za-z_]\w*", n)), key=lambda n: -self_shares[n])
    callers: dict[str, set[str]] = defaultdict(set)
    frontier, seen = set(sampled[:MAX_NAMES]), set(sampled[:MAX_NAMES])
    for _ in range(MAX_DEPTH):
        if not frontier:
            break
        found = _callers(root, frontier, globs, scope or [])
        frontier = set()
        for callee, cs in found.items():
            callers[callee] |= cs
            frontier |= cs - seen - ENTRY_POINTS  # nothing calls main back
        frontier = set(sorted(frontier)[:MAX_FRONTIER])
        seen |= frontier
    out: dict[str, float] = defaultdict(float)
    for name, share in self_shares.items():
        up, stack = {name}, [name]
        while stack:
            for c in callers.get(stack.pop(), ()):
                if c not in up:
                    up.add(c)
                    stack.append(c)
        for f in up:
            out[f] += share
    return {f: min(100.0, s) for f, s in out.items()}


def _callers(root: Path, names: set[str], globs: tuple[str, ...],
             scope: list[str]) -> dict[str, set[str]]:
    """callee -> the functions whose bodies call it (`name(` inside their span), searched
    in the scope when there is one: only in-scope functions are ever ranked."""
    # fixed strings (one pass over the files for all names), `name(` checked below
    pats = [x for n in sorted(names) for x in ("-e", n)]
    where = [f":(glob){p.strip('/')}" for p in scope] if scope else list(globs)
    exts = tuple(g.removeprefix("*") for g in globs)
    out = gitcli.git(root, "grep", "-n", "-I", "-F", *pats, "--", *where, check=False)
    alt = re.compile(r"\b(" + "|".join(map(re.escape, sorted(names, key=len, reverse=True)))
                     + r")\s*\(")
    per_name: Counter[str] = Counter()
    found: dict[str, set[str]] = defaultdict(set)
    for hit in out.splitlines()[:MAX_LINES]:
        path, lineno, text = (hit.split(":", 2) + ["", ""])[:3]
        if not lineno.isdigit() or not path.endswith(exts):
            continue
        line = int(lineno)
        spans = [s for s in functions_of(str(root), path) if s[0] <= line <= s[1]]
        if not spans:
            continue
        caller = plain(min(spans, key=lambda s: s[1] - s[0])[2])
        for callee in set(alt.findall(text)):
            per_name[callee] += 1
            if callee != caller and per_name[callee] <= MAX_HITS:
                found[callee].add(caller)
    return found


def inclusive_rows(diag: dict[str, Any], workdir: Path, all_self: list[dict[str, Any]],
                   stacks: dict[str, float] | None, deep: float,
                   scope: list[str] | None = None) -> None:
    """Fill diag["inclusive"], ["inclusive_method"] and ["profiled"] (every function seen)."""
    self_shares: dict[str, float] = defaultdict(float)
    for r in all_self:
        name = plain(str(r["function"]))
        if name and not name.startswith(("[", "<")):
            self_shares[name] += float(r["share"])
    if stacks and deep >= DEEP_STACKS:
        incl, method = stacks, "call stacks"
    else:
        globs = ("*.py",) if diag.get("profiler") == "py-spy" else NATIVE_GLOBS
        incl = static_inclusive(workdir, dict(self_shares), globs, scope)
        method = "static call graph"
        for name, share in self_shares.items():
            incl[name] = max(incl.get(name, 0.0), share)
    rows = sorted(incl.items(), key=lambda kv: (-kv[1], kv[0]))
    diag["inclusive"] = [{"function": f, "share": round(s, 2)} for f, s in rows[:KEEP]]
    diag["inclusive_method"] = method
    diag["profiled"] = [f for f, s in rows if s > 0][:5000]


def hot_functions(result: ResearchResult | dict[str, Any], n: int = 15,
                  ) -> list[tuple[str, float]]:
    """The profile's hottest functions with their inclusive share of samples (percent, through
    callees; self shares when the profile has no call stacks), hottest first. Takes a
    ResearchResult or its `to_dict()`."""
    diag = result.get("diagnosis") if isinstance(result, dict) else result.diagnosis
    rows = (diag or {}).get("inclusive") or (diag or {}).get("top_functions") or []
    out = [(str(r["function"]), float(r["share"])) for r in rows
           if not str(r["function"]).startswith(("[", "<"))]
    return out[:n]
