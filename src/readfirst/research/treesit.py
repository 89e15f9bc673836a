"""Shared tree-sitter helpers for the static research sources (siblings, multipass).

Grammars come from the wheels (tree-sitter-c, -cpp, -python): nothing is downloaded. Files are
listed with `git ls-files`, so ignored build output is never read.
"""

from __future__ import annotations

import gc
import os
import re
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from functools import cache
from multiprocessing import get_all_start_methods, get_context
from multiprocessing.context import BaseContext
from pathlib import Path
from typing import TypeVar

import tree_sitter as ts

from readfirst.vcs.gitcli import git

MAX_BYTES = 2 * 1024 * 1024  # larger files are generated or vendored: skipped
EXTENSIONS: dict[str, str] = {
    ".c": "c", ".h": "c",
    ".cc": "cpp", ".cpp": "cpp", ".cxx": "cpp", ".hpp": "cpp", ".hh": "cpp",
    ".cu": "cpp", ".cuh": "cpp",  # CUDA parses acceptably with the C++ grammar
    ".py": "python",
}
FUNCTION_TYPES = ("function_definition",)
_WORD = re.compile(rb"[A-Za-z_]\w*")
_CONTAINER = re.compile(r"vector|array|span|valarray|Tensor")

T = TypeVar("T")
R = TypeVar("R")


def language_of(path: str) -> str | None:
    """"c", "cpp" or "python" from the file name; None for anything else."""
    return EXTENSIONS.get(os.path.splitext(path)[1].lower())


@cache
def language(name: str) -> ts.Language:
    if name == "c":
        import tree_sitter_c as mod
    elif name == "cpp":
        import tree_sitter_cpp as mod
    elif name == "python":
        import tree_sitter_python as mod
    else:
        raise ValueError(f"no grammar for {name!r}")
    return ts.Language(mod.language())


@cache
def parser(name: str) -> ts.Parser:
    return ts.Parser(language(name))


@cache
def query(name: str, source: str) -> ts.Query:
    return ts.Query(language(name), source)


def captures(lang: str, source: str, node: ts.Node) -> dict[str, list[ts.Node]]:
    """Captures of a (cached) query under `node`, by capture name."""
    return ts.QueryCursor(query(lang, source)).captures(node)


def tracked_files(root: Path, languages: Iterable[str] | None = None) -> list[str]:
    """Files tracked by git under `root`, relative to it, in a supported language."""
    wanted = set(languages) if languages is not None else None
    out = git(root, "ls-files", "-z", "--cached", "--", ".")
    files = []
    for rel in out.split("\0"):
        lang = language_of(rel) if rel else None
        if lang and (wanted is None or lang in wanted):
            files.append(rel)
    return sorted(files)


def read_source(root: Path, rel: str) -> bytes | None:
    """The file's bytes; None when missing, unreadable or larger than MAX_BYTES."""
    path = root / rel
    try:
        if path.stat().st_size > MAX_BYTES:
            return None
        return path.read_bytes()
    except OSError:
        return None


def parse(source: bytes, lang: str) -> ts.Tree:
    return parser(lang).parse(source)


def text(node: ts.Node | None) -> str:
    if node is None or node.text is None:
        return ""
    return node.text.decode("utf-8", "replace")


def line(node: ts.Node) -> int:
    """1-based first line of a node."""
    return node.start_point[0] + 1


def end_line(node: ts.Node) -> int:
    return node.end_point[0] + 1


def words(node: ts.Node) -> set[str]:
    """Every identifier-like word in the node's text (cheap and conservative)."""
    return {w.decode() for w in _WORD.findall(node.text or b"")}


def statements(block: ts.Node) -> list[ts.Node]:
    """The statements of a block, without comments and preprocessor conditions."""
    out = []
    for i, child in enumerate(block.children):
        if not child.is_named or child.type == "comment":
            continue
        if block.field_name_for_child(i) in ("name", "condition", "alternative", "value"):
            continue
        out.append(child)
    return out


def squash(s: str) -> str:
    """Text without whitespace, to compare expressions."""
    return re.sub(r"\s+", "", s)


def compact(node: ts.Node, n: int = 70) -> str:
    """The node's text on one line, at most `n` characters."""
    s = re.sub(r"\s+", " ", text(node)).strip().rstrip(";")
    return s if len(s) <= n else s[: n - 3] + "..."


def body(node: ts.Node | None) -> list[ts.Node]:
    """The statements of a loop or if body: a block's statements, or the single statement."""
    if node is None:
        return []
    return statements(node) if node.type in ("compound_statement", "block") else [node]


def branches(if_node: ts.Node) -> list[ts.Node] | None:
    """Bodies of an if statement's branches (then, elif..., else), C/C++ or Python."""
    out = [if_node.child_by_field_name("consequence")]
    for alt in if_node.children_by_field_name("alternative"):
        if alt.type == "else_clause":
            out.append(alt.child_by_field_name("body") or (
                alt.named_children[-1] if alt.named_children else None))
        elif alt.type == "elif_clause":
            out.append(alt.child_by_field_name("consequence"))
        else:
            return None
    return None if any(b is None for b in out) else out  # type: ignore[return-value]


def call_of(st: ts.Node) -> ts.Node | None:
    """The call a statement makes: `f(..);`, `x = f(..);`, `T x = f(..);`."""
    if st.type == "expression_statement" and st.named_child_count == 1:
        e = st.named_children[0]
        if e.type in ("call_expression", "call"):
            return e
        right = e.child_by_field_name("right") if e.type == "assignment_expression" else None
        return right if right is not None and right.type == "call_expression" else None
    if st.type == "declaration":
        ds = st.children_by_field_name("declarator")
        if len(ds) == 1 and ds[0].type == "init_declarator":
            v = ds[0].child_by_field_name("value")
            return v if v is not None and v.type == "call_expression" else None
    return None


def declared_names(fn: ts.Node, lang: str) -> tuple[set[str], set[str]]:
    """(pointer, array, reference and container names; other names) a C/C++ function declares
    in its parameters and body."""
    ptrs: set[str] = set()
    scalars: set[str] = set()
    for d in captures(lang, "(parameter_declaration) @d (declaration) @d", fn).get("d", []):
        container = bool(_CONTAINER.search(text(d.child_by_field_name("type"))))
        for node in d.children_by_field_name("declarator"):
            ptr = container
            while node is not None and node.type != "identifier":
                ptr |= node.type in ("pointer_declarator", "array_declarator",
                                     "reference_declarator")
                node = node.child_by_field_name("declarator") or (
                    node.named_children[0] if node.named_children else None)
            if node is not None:
                (ptrs if ptr else scalars).add(text(node))
    return ptrs, scalars - ptrs


def function_name(node: ts.Node) -> str | None:
    """Name of a C/C++/Python function definition (`Class::method` kept qualified)."""
    name = node.child_by_field_name("name")
    if name is not None:  # Python
        return text(name)
    decl = node.child_by_field_name("declarator")
    while decl is not None and decl.type != "function_declarator":
        decl = decl.child_by_field_name("declarator")
    if decl is None:
        return None
    inner = decl.child_by_field_name("declarator")
    return text(inner) or None


def enclosing_function(node: ts.Node) -> ts.Node | None:
    cur = node.parent
    while cur is not None and cur.type not in FUNCTION_TYPES:
        cur = cur.parent
    return cur


def functions(root: ts.Node, lang: str) -> list[ts.Node]:
    return captures(lang, "(function_definition) @f", root).get("f", [])


def workers_for(requested: object = None) -> int:
    """Worker processes: `[research] jobs` when set, else at most 2."""
    if isinstance(requested, int) and requested > 0:
        return requested
    return max(1, min(2, os.cpu_count() or 1))


def _fork_context() -> BaseContext | None:
    """`fork` where it is safe: a POSIX system other than macOS and no other thread running.
    (`spawn` would re-run the caller's `__main__`, e.g. `python -m readfirst`, in each worker.)"""
    if sys.platform in ("darwin", "win32") or threading.active_count() > 1:
        return None
    return get_context("fork") if "fork" in get_all_start_methods() else None


def parallel_map(fn: Callable[[T], R], items: Sequence[T], workers: int,
                 min_items: int = 400) -> Iterator[R]:
    """`map(fn, items)`, over `workers` forked processes when there are enough items to pay
    for them (else, or where forking is unsafe, in this process). `fn` must be a module-level
    function; results keep the order of `items`."""
    ctx = _fork_context() if workers > 1 and len(items) >= min_items else None
    if ctx is None:
        yield from map(fn, items)
        return
    chunk = max(1, len(items) // (workers * 8))
    gc.freeze()  # children do not walk (and copy) the parent's heap on every collection
    try:
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            yield from pool.map(fn, items, chunksize=chunk)
    finally:
        gc.unfreeze()
