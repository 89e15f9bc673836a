"""Passes through calls: a function whose body is one pass over its parameters (a copy, an
elementwise loop, a reduction, or a call to another such function) is a *wrapper*; a call to
it is that pass over the caller's arguments. So `copy_f32(y, x, n); scale_f32(y, s, n);` is
a copy then an in-place scale of `y`, as if the loops were written out.

Wrappers are found per file (static helpers, the common case), two levels deep.
"""

from __future__ import annotations

from dataclasses import dataclass

import tree_sitter as ts

from readfirst.research import treesit as T
from readfirst.research.pass_model import environment
from readfirst.research.passes import classify

LEVELS = 2  # wrappers of wrappers
_SKIP = ("declaration", "comment", "return_statement")


@dataclass(frozen=True)
class Wrapper:
    kind: str  # copy | map | reduce
    writes: tuple[int, ...]  # parameter indices
    reads: tuple[int, ...]
    bound: int | None  # the parameter giving the element count, if any


def parameters(fn: ts.Node) -> list[str]:
    """Names of a C/C++ function's parameters, in order ("" for unnamed ones)."""
    decl = fn.child_by_field_name("declarator")
    while decl is not None and decl.type != "function_declarator":
        decl = decl.child_by_field_name("declarator")
    params = decl.child_by_field_name("parameters") if decl is not None else None
    names = []
    for p in params.named_children if params is not None else []:
        if p.type != "parameter_declaration":
            continue
        node = p.child_by_field_name("declarator")
        while node is not None and node.type != "identifier":
            node = node.child_by_field_name("declarator") or (
                node.named_children[0] if node.named_children else None)
        names.append(T.text(node) if node is not None else "")
    return names


def find_wrappers(root: ts.Node, lang: str) -> dict[str, Wrapper]:
    """Functions of one C/C++ file that are a single pass over their parameters."""
    out: dict[str, Wrapper] = {}
    if lang == "python":
        return out
    fns = T.functions(root, lang)
    for _ in range(LEVELS):
        for fn in fns:
            name, body = T.function_name(fn), fn.child_by_field_name("body")
            if not name or name in out or body is None:
                continue
            stmts = [s for s in T.statements(body) if s.type not in _SKIP]
            if len(stmts) != 1:
                continue
            env = environment(fn, lang)
            env.wrappers = out
            p = classify(stmts[0], env)
            params = parameters(fn)
            index = {n: i for i, n in enumerate(params) if n}
            if p is None or not (p.writes | p.reads) or not (p.writes | p.reads) <= set(index):
                continue
            bound = index.get(p.bound) if p.bound else None
            out[name.split("::")[-1]] = Wrapper(
                p.kind, tuple(sorted(index[b] for b in p.writes)),
                tuple(sorted(index[b] for b in p.reads)), bound)
    return out
