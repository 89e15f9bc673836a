"""Pass-pattern recognisers for MultiPassSource: which statements are passes.

Within one block of a C, C++ or Python function each statement is either a *pass* (a copy, an
elementwise loop or call writing `X[i]`, a reduction reading `X[i]`) or something else. This
module holds the statement classification (`classify`, the C/C++ loop and call recognisers;
Python statements in passes_python.py); which runs of passes chain is in chains.py, the
per-file scan (`scan_source`) in multipass.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

import tree_sitter as ts

from readfirst.research import treesit as T
from readfirst.research.pass_model import ASSIGN, LOOPS, Env, Pass
from readfirst.research.passes_python import defines, python_pass

_GGML = re.compile(r"^ggml_vec_([a-z0-9_]+?)_(?:f16|bf16|f32|f64|q\w+)$")
_LEN = re.compile(r"^(n|len|length|size|count|num|ne\d*|nc|nr|k|dim|cols|rows|n_\w+|\w+_(len|"
                  r"size|count)|\w+\.size\(\)|.*sizeof.*)$")
GGML_REDUCE = {"sum", "max", "min", "dot", "norm", "argmax", "sumsq"}
GGML_INPLACE = {"scale", "mad", "acc", "acc1", "mad1"}
REDUCE = {"sum", "dot", "max", "min", "mean", "accumulate", "reduce", "asum", "nrm2", "sumsq",
          "argmax", "argmin"}
MAP = {"scale", "scal", "mul", "add", "sub", "div", "exp", "axpy", "mad", "fma", "relu", "gelu",
       "silu", "tanh", "sigmoid", "neg", "sqr", "sqrt", "abs", "clamp", "softmax", "acc"}
DST_NAMES = {"out", "dst", "y", "output", "result"}
_SUB = {"subscript_expression": ("argument", "index"), "subscript": ("value", "subscript")}
_BUF = ("identifier", "field_expression", "attribute")


@dataclass
class _Loop:
    var: str
    alias: dict[str, tuple[str, bool]] = field(default_factory=dict)  # range-for element
    writes: set[str] = field(default_factory=set)
    reads: set[str] = field(default_factory=set)
    accs: set[str] = field(default_factory=set)
    temps: set[str] = field(default_factory=set)
    gathers: set[str] = field(default_factory=set)  # arrays read at other indices


# ---- loops ------------------------------------------------------------------------------


def _sub_base(node: ts.Node, var: str) -> str | None:
    a, i = _SUB[node.type]
    base, idx = node.child_by_field_name(a), node.child_by_field_name(i)
    indices = node.child_by_field_name("indices")  # C++: subscript_argument_list
    if indices is not None and indices.named_child_count == 1:
        idx = indices.named_children[0]
    if base is None or idx is None or base.type not in _BUF or T.text(idx) != var:
        return None
    return None if node.named_child_count != 2 else T.text(base)


def _reads(expr: ts.Node, lp: _Loop) -> bool:
    stack = [expr]
    while stack:
        n = stack.pop()
        if n.type in _SUB:
            b = _sub_base(n, lp.var)
            if b is not None:
                lp.reads.add(b)
                continue
            base = n.child_by_field_name(_SUB[n.type][0])
            if base is None or base.type not in _BUF or n.named_child_count != 2:
                return False
            lp.gathers.add(T.text(base))  # table[k], x[i - 1]: not a pass over that array
            stack.extend(c for c in n.named_children if c != base)
            continue
        if n.type in (*ASSIGN, "update_expression"):
            return False
        if n.type == "identifier" and T.text(n) in lp.alias:
            lp.reads.add(lp.alias[T.text(n)][0])
        stack.extend(n.named_children)
    return True


def _assign(e: ts.Node, lp: _Loop, in_if: bool) -> bool:
    left, right = e.child_by_field_name("left"), e.child_by_field_name("right")
    if left is None or right is None:
        return False
    op = T.text(e.child_by_field_name("operator")) or "="
    if left.type in _SUB:
        b = _sub_base(left, lp.var)
        if b is None:
            return False
        lp.writes.add(b)
        if op != "=":
            lp.reads.add(b)
    elif left.type == "identifier":
        name = T.text(left)
        if name in lp.alias:
            target, ref = lp.alias[name]
            if not ref:
                return False
            lp.writes.add(target)
            if op != "=":
                lp.reads.add(target)
        elif name in lp.temps:
            pass
        elif op != "=" or in_if or name in T.words(right):
            lp.accs.add(name)
        else:
            lp.temps.add(name)
    else:
        return False
    return _reads(right, lp)


def _local_call(call: ts.Node, lp: _Loop) -> bool:
    """A call inside a loop that can only touch scalars: `memcpy(&t, &s, sizeof t)`,
    `f(x[i], tmp)`; a bare non-temporary name could be a buffer, so it is refused."""
    args = call.child_by_field_name("arguments")
    for a in args.named_children if args is not None else []:
        inner = a.child_by_field_name("argument") if a.type == "pointer_expression" else None
        if inner is not None and T.text(a).startswith("&") and inner.type == "identifier":
            continue
        if a.type in ("identifier", "field_expression") and T.text(a) not in lp.temps:
            return False
        if not _reads(a, lp):
            return False
    return True


def _body(stmts: list[ts.Node], lp: _Loop, in_if: bool = False) -> bool:
    for s in stmts:
        if s.type == "expression_statement":
            kids = s.named_children
            if len(kids) == 1 and kids[0].type == "call_expression":
                if not _local_call(kids[0], lp):
                    return False
            elif len(kids) != 1 or kids[0].type not in ASSIGN or not _assign(kids[0], lp,
                                                                              in_if):
                return False
        elif s.type == "declaration":
            for d in s.children_by_field_name("declarator"):
                name = d.child_by_field_name("declarator") if d.type == "init_declarator" else d
                if name is None or name.type != "identifier":
                    return False
                lp.temps.add(T.text(name))
                value = d.child_by_field_name("value")
                if value is not None and not _reads(value, lp):
                    return False
        elif s.type == "if_statement" and not in_if:
            cond, branches = s.child_by_field_name("condition"), T.branches(s)
            if cond is None or branches is None or not _reads(cond, lp):
                return False
            if not all(_body(T.body(b), lp, True) for b in branches):
                return False
        elif s.type in ("compound_statement", "block"):
            if not _body(T.statements(s), lp, in_if):
                return False
        else:
            return False
    return True


def _loop_pass(st: ts.Node, lp: _Loop, body: ts.Node | None, bound: str | None,
               start: str | None) -> Pass | None:
    if body is None or not _body(T.body(body), lp) or lp.gathers & lp.writes:
        return None  # (a loop reading what it writes at other indices carries a dependency)
    idx = lp.var if lp.var != "\0" else "i"
    if lp.writes:
        kind, label = "map", "loop writing " + ", ".join(f"{w}[{idx}]" for w in sorted(lp.writes))
        if lp.accs:
            label += " and accumulating " + ", ".join(sorted(lp.accs))
    elif lp.accs and lp.reads:
        kind = "reduce"
        label = (f"loop accumulating {', '.join(f'{r}[{idx}]' for r in sorted(lp.reads))} "
                 f"into {', '.join(sorted(lp.accs))}")
    else:
        return None
    return Pass(kind, frozenset(lp.writes), frozenset(lp.reads), T.line(st), T.end_line(st),
                label, bound, start, frozenset(lp.accs))


def _for(st: ts.Node) -> Pass | None:
    body = st.child_by_field_name("body")
    if st.type == "for_range_loop":
        decl, rng = st.child_by_field_name("declarator"), st.child_by_field_name("right")
        m = re.search(r"[A-Za-z_]\w*", T.text(decl))
        if m is None or rng is None or rng.type not in _BUF:
            return None
        ref = decl is not None and decl.type == "reference_declarator"
        return _loop_pass(st, _Loop("\0", {m[0]: (T.text(rng), ref)}), body, None, None)
    if st.child_by_field_name("left") is not None:  # Python: for i in range(...)
        left, right = st.child_by_field_name("left"), st.child_by_field_name("right")
        if left.type != "identifier" or right is None or right.type != "call":
            return None
        args = right.child_by_field_name("arguments")
        pos = args.named_children if args is not None else []
        if T.text(right.child_by_field_name("function")) != "range" or not 1 <= len(pos) <= 2:
            return None
        if st.child_by_field_name("alternative") is not None:
            return None
        start = T.squash(T.text(pos[0])) if len(pos) == 2 else "0"
        return _loop_pass(st, _Loop(T.text(left)), body, T.squash(T.text(pos[-1])), start)
    init, cond, upd = (st.child_by_field_name(f) for f in ("initializer", "condition", "update"))
    var = start = None
    if init is not None and init.type == "declaration":
        d = init.child_by_field_name("declarator")
        if d is not None and d.type == "init_declarator":
            var, start = T.text(d.child_by_field_name("declarator")), T.text(
                d.child_by_field_name("value"))
    elif init is not None and init.type == "assignment_expression":
        var, start = T.text(init.child_by_field_name("left")), T.text(
            init.child_by_field_name("right"))
    if not var or cond is None or cond.type != "binary_expression" or upd is None:
        return None
    if T.text(cond.child_by_field_name("left")) != var or T.text(
            cond.child_by_field_name("operator")) not in ("<", "!="):
        return None
    if T.squash(T.text(upd)) not in (f"{var}++", f"++{var}", f"{var}+=1"):
        return None
    bound = T.squash(T.text(cond.child_by_field_name("right")))
    return _loop_pass(st, _Loop(var), body, bound, T.squash(start or ""))


def _if(st: ts.Node, env: Env) -> Pass | None:
    """`if (c) <one pass>` (and else branches doing the same pass) is a conditional pass."""
    branches = T.branches(st)
    if not branches:
        return None
    passes = []
    for b in branches:
        inner = T.body(b)
        p = classify(inner[0], env) if len(inner) == 1 else None
        if p is None:
            return None
        passes.append(p)
    p0 = passes[0]
    if any(p.kind != p0.kind or p.writes != p0.writes for p in passes):
        return None
    cond = st.child_by_field_name("condition")
    if cond is None or T.words(cond) & p0.writes:
        return None
    reads = frozenset().union(*(p.reads for p in passes))
    same = all(p.bound == p0.bound and p.start == p0.start for p in passes)
    return Pass(p0.kind, p0.writes, reads, T.line(st), T.end_line(st),
                f"if {T.compact(cond, 30)}: {p0.label}", p0.bound if same else None,
                p0.start if same else None)


# ---- calls and statements ---------------------------------------------------------------


def _c_base(arg: ts.Node) -> tuple[str | None, bool]:
    """(buffer name, is certainly a buffer) of a call argument: `x`, `x + k`, `&x[k]`,
    `(float *) x`, `x.data()`, `v.begin()`; None for scalars' addresses and elements."""
    t = arg.type
    if t in ("identifier", "field_expression"):
        return T.text(arg), False
    if t == "pointer_expression":
        inner = arg.child_by_field_name("argument")
        if T.text(arg).startswith("&") and inner is not None and inner.type in _SUB:
            return _c_base(inner.child_by_field_name("argument"))[0], True
        return None, False
    if t in ("parenthesized_expression", "cast_expression"):
        inner = arg.child_by_field_name("value") or (arg.named_children or [None])[-1]
        return _c_base(inner) if inner is not None else (None, False)
    if t == "binary_expression" and T.text(arg.child_by_field_name("operator")) in "+-":
        return _c_base(arg.child_by_field_name("left"))
    if t == "call_expression":
        fn, args = arg.child_by_field_name("function"), arg.child_by_field_name("arguments")
        if fn is not None and fn.type == "field_expression" and T.text(
                fn.child_by_field_name("field")) in ("begin", "end", "data", "cbegin", "cend"):
            return T.text(fn.child_by_field_name("argument")), True
        if T.text(fn) in ("std::begin", "std::end", "std::data") and args and args.named_children:
            return _c_base(args.named_children[0])[0], True
    return None, False


def _c_call(call: ts.Node, st: ts.Node, env: Env) -> Pass | None:
    fn = T.text(call.child_by_field_name("function"))
    last = re.split(r"::|\.|->", fn)[-1]
    arglist = call.child_by_field_name("arguments")
    args = [a for a in (arglist.named_children if arglist else []) if a.type != "comment"]
    based = [_c_base(a) for a in args]
    for name, sure in based:
        if sure and name:
            env.ptrs.add(name)
    bases = [b for b, _ in based]
    ptrs = [b for b in bases if b and b in env.ptrs]

    def mk(kind: str, writes: set[str], reads: set[str], bound: str | None = None) -> Pass:
        return Pass(kind, frozenset(writes), frozenset(reads), T.line(st), T.end_line(st),
                    T.compact(call), bound)

    w = env.wrappers.get(last)
    if w is not None and max((*w.writes, *w.reads, w.bound or 0), default=0) < len(args) \
            and all(bases[i] for i in (*w.writes, *w.reads)):  # through a simple wrapper
        n = T.squash(T.text(args[w.bound])) if w.bound is not None else None
        return mk(w.kind, {bases[i] for i in w.writes}, {bases[i] for i in w.reads}, n)
    m = _GGML.match(last)
    if last in ("memcpy", "memmove") and len(args) == 3 and bases[0] and bases[1]:
        return mk("copy", {bases[0]}, {bases[1]})
    if last in ("copy", "copy_n") and env.lang == "cpp" and len(args) == 3 and bases[2]:
        return mk("copy", {bases[2]}, {bases[0]} if bases[0] else set())
    if m and len(args) >= 3 and bases[1]:
        op, n, dst = m[1], T.squash(T.text(args[0])), bases[1]
        others = {b for b in bases[2:] if b and b in env.ptrs}
        if op == "cpy":
            return mk("copy", {dst}, others, n)
        if op in ("soft_max", "softmax"):
            return mk("map", {dst}, others, n)
        if set(op.split("_")) & GGML_REDUCE:
            return mk("reduce", set(), {b for b in bases[1:] if b and b in env.ptrs}, n)
        inplace = op in GGML_INPLACE or dst in others
        return mk("map", {dst}, others | ({dst} if inplace else set()), n)
    toks = {t.lower() for t in re.findall(r"[a-z]+|[A-Z][a-z]*", last)}
    lens = [T.squash(T.text(a)) for a in args if _LEN.match(T.squash(T.text(a)))]
    if not lens and not any(s for _, s in based):
        return None  # no element count: not a pass over a buffer
    bound = lens[0] if len(lens) == 1 else None
    if toks & REDUCE and not toks & MAP and ptrs:
        return mk("reduce", set(), set(ptrs), bound)
    if toks & MAP and not toks & REDUCE and ptrs:
        named = [b for b in ptrs if b.lower() in DST_NAMES]
        dst = named[0] if named else ptrs[0]
        others = set(ptrs) - {dst}
        unknown = any(a.type == "identifier" and b not in env.ptrs | env.scalars
                      for a, b in zip(args, bases, strict=True))
        inplace = bases.count(dst) > 1 or (not others and not unknown)
        return mk("map", {dst}, others | ({dst} if inplace else set()), bound)
    return None


def classify(st: ts.Node, env: Env) -> Pass | None:
    """The pass a statement makes, or None."""
    if st.type in LOOPS:
        p = _for(st)
    elif st.type == "if_statement":
        p = _if(st, env)
    elif env.lang == "python":
        p = python_pass(st, env)
    else:
        call = T.call_of(st)
        p = _c_call(call, st, env) if call is not None else None
    if p is None:
        return None
    return replace(p, accs=p.accs | (defines(st) - p.writes), uses=frozenset(T.words(st)))
