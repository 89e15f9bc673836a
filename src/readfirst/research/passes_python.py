"""Python statements as passes: numpy/torch elementwise calls and ufuncs writing a whole array,
reductions of one, copies; evidence that a name is a whole array comes from the function.
"""

from __future__ import annotations

import re

import tree_sitter as ts

from readfirst.research import treesit as T
from readfirst.research.pass_model import ASSIGN, NP_UFUNCS, Env, Pass

NP = ("np", "numpy", "torch")
PY_REDUCE = {"sum", "max", "min", "mean", "prod", "amax", "amin", "argmax", "argmin", "std",
             "var", "nansum", "nanmax", "nanmin", "nanmean", "logsumexp"}
_NOT_ELEMENTWISE = re.compile(r"@|\b(dot|vdot|matmul|tensordot|einsum|cross|outer|inner|kron|"
                              r"convolve|cumsum|cumprod|sort|argsort|concatenate|stack|hstack|"
                              r"vstack|reshape|transpose|list|dict|tuple|dtype)\b")


def _whole(sub: ts.Node) -> bool:
    """`x[:]` or `x[...]`: the whole array."""
    idx = sub.child_by_field_name("subscript")
    return sub.named_child_count == 2 and idx is not None and T.squash(T.text(idx)) in (":", "...")


def _bare(node: ts.Node | None, env: Env, line: int) -> set[str]:
    """Whole arrays a Python expression reads (not `x[0]`, `x[:, 1]`, `x.shape`)."""
    out: set[str] = set()
    stack = [node] if node is not None else []
    while stack:
        n = stack.pop()
        if n.type == "identifier":
            if env.array(T.text(n), line):
                out.add(T.text(n))
        elif n.type == "attribute":
            if T.text(n.child_by_field_name("attribute")) in ("T", "real", "imag", "flat"):
                stack.append(n.child_by_field_name("object"))
        elif n.type == "call":
            f = n.child_by_field_name("function")
            if f is not None and f.type == "attribute":
                stack.append(f.child_by_field_name("object"))
            stack.extend(x for x in [n.child_by_field_name("arguments")] if x is not None)
        elif n.type == "keyword_argument":
            stack.extend(x for x in [n.child_by_field_name("value")] if x is not None)
        elif n.type == "subscript":
            if _whole(n):
                stack.append(n.child_by_field_name("value"))
        else:
            stack.extend(n.named_children)
    return out


def _np_call(fn: ts.Node | None, names: set[str]) -> bool:
    """`np.<name>(...)` (or numpy., torch.) with name in `names`."""
    return fn is not None and fn.type == "attribute" and T.text(
        fn.child_by_field_name("object")) in NP and T.text(
        fn.child_by_field_name("attribute")) in names


def _py_reduction(node: ts.Node, env: Env, line: int) -> tuple[set[str], set[str]]:
    """(arrays reduced by `np.sum(x)` / `x.max()` calls, arrays read outside such calls)."""
    reads: set[str] = set()
    stack, rest = [node], []
    while stack:
        n = stack.pop()
        fn = n.child_by_field_name("function") if n.type == "call" else None
        if _np_call(fn, PY_REDUCE):
            reads |= _bare(n.child_by_field_name("arguments"), env, line)
        elif fn is not None and fn.type == "attribute" and T.text(
                fn.child_by_field_name("attribute")) in PY_REDUCE and T.text(
                fn.child_by_field_name("object")) not in NP:
            reads |= _bare(fn.child_by_field_name("object"), env, line)
        elif n.type == "identifier":
            rest.append(n)
        else:
            stack.extend(n.named_children)
    return reads, set().union(*(_bare(r, env, line) for r in rest)) if rest else set()


def python_pass(st: ts.Node, env: Env) -> Pass | None:
    if st.type != "expression_statement" or st.named_child_count != 1:
        return None
    e, ln = st.named_children[0], T.line(st)
    if _NOT_ELEMENTWISE.search(T.text(e)):
        return None

    def mk(kind: str, writes: set[str], reads: set[str]) -> Pass:
        for w in writes:
            env.ptrs.add(w)
            env.since[w] = min(env.since.get(w, ln), ln)
        return Pass(kind, frozenset(writes), frozenset(reads), ln, T.end_line(st), T.compact(e))

    left, right = e.child_by_field_name("left"), e.child_by_field_name("right")
    if e.type == "call":
        fn, args = e.child_by_field_name("function"), e.child_by_field_name("arguments")
        kids = args.named_children if args is not None else []
        pos = [a for a in kids if a.type != "keyword_argument"]
        outs = [k.child_by_field_name("value") for k in kids if k.type == "keyword_argument"
                and T.text(k.child_by_field_name("name")) == "out"]
        if _np_call(fn, {"copyto"}) and len(pos) >= 2 and pos[0].type == "identifier":
            return mk("copy", {T.text(pos[0])}, _bare(pos[1], env, ln))
        if outs and outs[0].type == "identifier" and _np_call(fn, NP_UFUNCS):
            reads = set().union(*(_bare(p, env, ln) for p in pos))
            return mk("map", {T.text(outs[0])}, reads)
        return None
    if left is None or right is None:
        return None
    whole = left.type == "subscript" and _whole(left) and left.child_by_field_name(
        "value").type == "identifier"
    target = T.text(left.child_by_field_name("value") if whole else left)
    if not whole and left.type != "identifier":
        return None
    reads = _bare(right, env, ln)
    if e.type == "augmented_assignment":
        ok = whole or env.array(target, ln)
        return mk("map", {target}, {target} | reads) if ok else None
    if e.type != "assignment":
        return None
    if whole:
        kind = "copy" if right.type in ("identifier", "attribute") else "map"
        return mk(kind, {target}, reads) if kind == "copy" or reads else None
    red, outside = _py_reduction(right, env, ln)
    if red and not outside:
        return mk("reduce", set(), red)
    fn = right.child_by_field_name("function") if right.type == "call" else None
    args, src = right.child_by_field_name("arguments"), None
    if fn is not None and fn.type == "attribute" and T.text(
            fn.child_by_field_name("attribute")) in ("copy", "clone"):
        src = fn.child_by_field_name("object")
    elif _np_call(fn, {"array", "copy"}) and args is not None:
        src = (args.named_children or [None])[0]
    if src is not None and src.type == "identifier":
        return mk("copy", {target}, {T.text(src)})
    if right.type in ("binary_operator", "unary_operator") and reads:
        return mk("map", {target}, reads)
    if _np_call(fn, NP_UFUNCS) and (reads or env.array(target, ln)):
        return mk("map", {target}, reads)
    return None


def defines(st: ts.Node) -> set[str]:
    """Names a statement assigns: declared variables, `x = ...`, `&x` out-arguments."""
    out: set[str] = set()
    if T.call_of(st) is not None:
        out.update(re.findall(r"&\s*([A-Za-z_]\w*)\b(?!\s*[\[.(]|->)", T.text(st)))
    if st.type == "declaration":
        for node in st.children_by_field_name("declarator"):
            while node is not None and node.type != "identifier":
                node = node.child_by_field_name("declarator")
            out.update([T.text(node)] if node is not None else [])
    elif st.type == "expression_statement" and st.named_child_count == 1:
        left = st.named_children[0].child_by_field_name("left")
        if st.named_children[0].type in ASSIGN and left is not None and left.type == "identifier":
            out.add(T.text(left))
    return out
