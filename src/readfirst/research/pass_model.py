"""What the multi-pass recognisers produce: a statement that is a pass (`Pass`) or not
(`Other`), and a function's environment (`Env`: its locals, parameters and wrappers).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import tree_sitter as ts

from readfirst.research import treesit as T

LOOPS = ("for_statement", "for_range_loop")
ASSIGN = ("assignment_expression", "assignment", "augmented_assignment")

NP_UFUNCS = {"exp", "exp2", "expm1", "log", "log2", "log10", "log1p", "sqrt", "square", "abs",
             "absolute", "fabs", "negative", "reciprocal", "sign", "tanh", "sinh", "cosh", "sin",
             "cos", "tan", "arctan", "maximum", "minimum", "fmax", "fmin", "clip", "where",
             "multiply", "add", "subtract", "divide", "true_divide", "power", "floor", "ceil",
             "rint", "round", "sigmoid", "relu", "erf"}
NP_ALLOC = {"zeros", "empty", "ones", "full", "array", "asarray", "copy", "zeros_like",
            "empty_like", "ones_like", "full_like"}
PY_ARR = [re.compile(p) for p in (  # strong evidence that a name is a whole array
    r"\bout\s*=\s*([A-Za-z_]\w*)", r"copyto\(\s*([A-Za-z_]\w*)\s*,\s*([A-Za-z_]\w*)",
    r"\b([A-Za-z_]\w*)\s*:\s*(?:np\.ndarray|ndarray|NDArray|torch\.Tensor|Tensor)\b",
    r"\b([A-Za-z_]\w*)\s*\[\s*(?::|\.\.\.)\s*\]\s*=[^=]",
    r"\b([A-Za-z_]\w*)\s*=\s*[\w.]+\.(?:copy|clone)\(\)")]
PY_CTOR = re.compile(r"\b([A-Za-z_]\w*)\s*=\s*(?:np|numpy|torch)\.(\w+)\(")


@dataclass(frozen=True)
class Pass:
    kind: str  # copy | map | reduce
    writes: frozenset[str]
    reads: frozenset[str]
    line: int
    end: int
    label: str
    bound: str | None = None  # element count / loop bound, compared when both passes know it
    start: str | None = None
    accs: frozenset[str] = frozenset()  # scalars it computes (sum, max, ...)
    uses: frozenset[str] = frozenset()  # every word of the statement


@dataclass(frozen=True)
class Other:
    """A statement that is not a pass: a gap when it names no chained buffer, else a break."""

    words: frozenset[str]
    breaks: bool
    defines: frozenset[str] = frozenset()


@dataclass
class Env:
    """What one function declares: pointer/array/container names and known scalars."""

    lang: str
    ptrs: set[str] = field(default_factory=set)
    scalars: set[str] = field(default_factory=set)
    since: dict[str, int] = field(default_factory=dict)  # Python: first line of the evidence
    wrappers: dict[str, Any] = field(default_factory=dict)  # name -> wrappers.Wrapper

    def array(self, name: str, line: int) -> bool:
        return name in self.ptrs and self.since.get(name, 0) <= line


def environment(fn: ts.Node, lang: str) -> Env:
    env = Env(lang)
    if lang == "python":
        src, first = T.text(fn), T.line(fn)
        found = [(m, gs) for rx in PY_ARR for m in rx.finditer(src) for gs in [m.groups()]]
        found += [(m, (m[1],)) for m in PY_CTOR.finditer(src) if m[2] in NP_UFUNCS | NP_ALLOC]
        for m, names in found:
            at = first + src.count("\n", 0, m.start())
            for name in filter(None, names):
                env.ptrs.add(name)
                env.since[name] = min(env.since.get(name, at), at)
        return env
    env.ptrs, env.scalars = T.declared_names(fn, lang)
    return env
