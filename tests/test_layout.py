"""The package layout: stage packages that import each other without cycles, and modules
that fit on a few screens.

Every module's imports are read with `ast` (function-local imports count: a cycle hidden in a
function is still a cycle; imports under `if TYPE_CHECKING:` do not, they never run).
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import readfirst

PACKAGE = Path(readfirst.__file__).parent
STAGES = ("core", "vcs", "llm", "store", "measure", "research", "proposers", "loop", "report",
          "frontends")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_checking_only(tree: ast.Module) -> set[int]:
    """ids of the import nodes inside `if TYPE_CHECKING:` blocks."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return skip


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The readfirst modules `path` imports (a `from pkg import name` of a submodule counts as
    that submodule)."""
    tree = ast.parse(path.read_text(), str(path))
    skip = _type_checking_only(tree)
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name in modules}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            subs = {f"{node.module}.{a.name}" for a in node.names} & modules
            if node.module in modules and len(subs) < len(node.names):
                found.add(node.module)
            found |= subs
    return found


def module_graph() -> dict[str, set[str]]:
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {m: imports_of(p, set(paths)) for m, p in paths.items()}


def stage_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in STAGES) else None


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    component.append(top)
                    if top == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_top_of_the_package_is_the_stage_packages() -> None:
    loose = sorted(p.name for p in PACKAGE.glob("*.py") if p.name not in ("__init__.py",
                                                                         "__main__.py"))
    assert loose == [], f"modules outside the stage packages: {loose}"
    packages = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file())
    assert packages == sorted(STAGES)


def test_no_import_cycle_between_stage_packages() -> None:
    edges: dict[str, set[str]] = defaultdict(set)
    why: dict[tuple[str, str], list[str]] = defaultdict(list)
    for module, targets in module_graph().items():
        for target in targets:
            a, b = stage_of(module), stage_of(target)
            if a and b and a != b:
                edges[a].add(b)
                why[a, b].append(f"{module} -> {target}")
    problems = []
    for component in cycles(edges):
        lines = [f"  {e}" for a in component for b in component if (a, b) in why
                 for e in sorted(why[a, b])[:3]]
        problems.append(f"cycle between {', '.join(component)}:\n" + "\n".join(lines))
    assert not problems, "\n".join(problems)


def test_no_import_cycle_between_modules() -> None:
    """Within a package too: a plugin registry loads its built-ins lazily, but the built-ins
    import the interfaces from a module of their own, never the registry back."""
    found = cycles(module_graph())
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_the_cycle_finder_finds_cycles() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e2"}, "e2": set()}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"x": {"y"}, "y": set()}) == []


MAX_MODULE_LINES = 450


def test_no_module_is_longer_than_a_few_screens() -> None:
    long = sorted(f"{p.relative_to(PACKAGE.parent)}: {n} lines"
                  for p in PACKAGE.rglob("*.py")
                  if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES)
    assert not long, f"modules over {MAX_MODULE_LINES} lines (split them by what the pieces " \
                     f"are): {long}"
