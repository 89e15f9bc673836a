"""Which changed code can run on this machine, read from the build itself.

Two sources, no list of architecture names:
- the build's compile commands (`compile_commands.json` of a build directory, else the
  compiler lines of `make -n` in a base worktree): a source file the build does not compile
  (another architecture's kernels, another backend) cannot be measured here;
- preprocessor conditions: a changed line inside `#if defined(__ARM_NEON)` is dead when the
  build's compiler, with the build's flags, does not define that macro (`cc -dM -E`).
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from readfirst.core import constants as C

SOURCE_EXTS = {".c", ".cc", ".cpp", ".cxx", ".c++", ".m", ".mm", ".s", ".S", ".cu", ".hip",
               ".cl", ".metal", ".comp", ".glsl", ".wgsl"}
C_FAMILY = {".c", ".cc", ".cpp", ".cxx", ".c++", ".h", ".hh", ".hpp", ".hxx", ".inc", ".m",
            ".mm", ".cu", ".cuh"}
_COMPILERS = re.compile(r"(^|/)(cc|c\+\+|gcc|g\+\+|clang|clang\+\+|icx|icpx|nvcc)(-[\d.]+)?$")


@dataclass
class BuildInfo:
    compiled: set[str] | None = None  # repo-relative files the build compiles; None: unknown
    origin: str = ""  # where that came from, for rationales
    defined: set[str] = field(default_factory=set)  # macros defined for the build
    macros_known: bool = False  # `defined` holds the compiler's predefined macros

    def not_compiled(self, path: str) -> bool:
        return (self.compiled is not None and Path(path).suffix in SOURCE_EXTS
                and path not in self.compiled)

    def known_undefined(self, name: str) -> bool:
        """A reserved name (`__x`, `_X`: the compiler's and the system's) the build's
        compiler does not define. Project macros may come from headers: unknown."""
        reserved = name.startswith("__") or (name[:1] == "_" and name[1:2].isupper())
        return self.macros_known and reserved and name not in self.defined


def read_build(repo: Path, rel: str, state_dir: Path, build_cmd: str | None,
               configured: str | None = None) -> BuildInfo:
    """What the build compiles and defines, from the newest compile_commands.json found (the
    configured one, the target's build directories, readfirst's base worktrees), else from
    `make -n` in a base worktree. Unknown (no marks) when neither exists."""
    found = _compile_commands(repo, rel, state_dir, configured)
    entries: list[tuple[str, list[str]]] = []
    origin = ""
    if found:
        tree, path = found
        entries = _entries_from_json(tree, path)
        origin = str(path.relative_to(tree)) if path.is_relative_to(tree) else str(path)
    elif build_cmd and "make" in build_cmd:
        for tree in _slots(state_dir):
            entries = _entries_from_make(tree / rel if rel else tree, tree)
            if entries:
                origin = "make -n in " + tree.name
                break
    if not entries:
        return BuildInfo()
    info = BuildInfo(compiled={f for f, _ in entries}, origin=origin)
    for _f, args in entries:
        info.defined |= {a[2:].split("=")[0] for a in args if a.startswith("-D") and len(a) > 2}
    predefined = _predefined(entries[0][1])
    if predefined is not None:
        info.defined |= predefined
        info.macros_known = True
    return info


def _slots(state_dir: Path) -> list[Path]:
    """readfirst's worktrees, base slots first (they hold the baseline's build)."""
    slots = [p for p in (state_dir / "worktrees").glob("*") if p.is_dir()]
    return sorted(slots, key=lambda p: (not p.name.endswith("base"), p.name))


def _compile_commands(repo: Path, rel: str, state_dir: Path,
                      configured: str | None) -> tuple[Path, Path] | None:
    root = repo / rel if rel else repo
    places: list[tuple[Path, Path]] = []
    if configured:
        places.append((repo, root / configured))
    trees = [repo, *_slots(state_dir)]
    for tree in trees:
        top = tree / rel if rel else tree
        places += [(tree, top / "compile_commands.json")]
        places += [(tree, p) for p in sorted(top.glob("*/compile_commands.json"))]
    existing = [(t, p) for t, p in places if p.is_file()]
    if configured and existing and existing[0][1] == root / configured:
        return existing[0]
    return max(existing, key=lambda tp: tp[1].stat().st_mtime, default=None)


def _entries_from_json(tree: Path, path: Path) -> list[tuple[str, list[str]]]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    out = []
    for e in data if isinstance(data, list) else []:
        if not isinstance(e, dict) or "file" not in e:
            continue
        args = e.get("arguments") or shlex.split(str(e.get("command", "")))
        f = Path(str(e.get("directory", tree))) / str(e["file"])
        rel = _relative(f, tree)
        if rel:
            out.append((rel, [str(a) for a in args]))
    return out


def _relative(f: Path, tree: Path) -> str | None:
    try:
        return Path(*_norm(f).parts).relative_to(_norm(tree)).as_posix()
    except ValueError:
        return None


def _norm(p: Path) -> Path:
    import os.path

    return Path(os.path.normpath(p))


def _entries_from_make(workdir: Path, tree: Path) -> list[tuple[str, list[str]]]:
    """Compiler lines of `make -n -B` (prints, runs nothing but $(shell) and recursive makes)."""
    try:
        proc = subprocess.run(["make", "-n", "-B"], cwd=workdir, capture_output=True, text=True,
                              timeout=C.FORK_BUILD_PROBE_TIMEOUT, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return []
    out = []
    for line in proc.stdout.splitlines():
        try:
            args = shlex.split(line)
        except ValueError:
            continue
        if not args or not _COMPILERS.search(args[0]) and "$(CC)" not in args[0]:
            continue
        for a in args[1:]:
            if Path(a).suffix in SOURCE_EXTS and not a.startswith("-"):
                rel = _relative(workdir / a, tree)
                if rel:
                    out.append((rel, args))
    return out


def _predefined(args: list[str]) -> set[str] | None:
    """The macros the build's compiler predefines with the build's target flags."""
    compiler = args[0] if args and _COMPILERS.search(args[0]) else "cc"
    flags = [a for a in args[1:] if a.startswith(("-m", "-march", "-mcpu", "-mtune", "-std="))]
    lang = "c++" if "++" in compiler else "c"
    try:
        proc = subprocess.run([compiler, *flags, "-dM", "-E", "-x", lang, "-"], input="",
                              capture_output=True, text=True,
                              timeout=C.FORK_BUILD_PROBE_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    return {m[1] for m in re.finditer(r"^#define (\w+)", proc.stdout, re.M)}


# --- preprocessor conditions ----------------------------------------------------------------

_DIRECTIVE = re.compile(r"^\s*#\s*(if|ifdef|ifndef|elif|else|endif)\b(.*)$")


def live_lines(text: str, info: BuildInfo) -> list[bool | None]:
    """For each line (index 0 = line 1): True when the build compiles it, False when an
    enclosing #if is false for this build, None when that cannot be told."""
    out: list[bool | None] = []
    # frames: (value of the current branch, any earlier branch true-or-unknown?)
    stack: list[tuple[bool | None, bool | None]] = []
    for line in text.splitlines():
        m = _DIRECTIVE.match(line)
        if m:
            kind, rest = m[1], _strip_comment(m[2])
            if kind in ("if", "ifdef", "ifndef"):
                cond = evaluate(rest, info) if kind == "if" else _ifdef(rest, info, kind)
                stack.append((cond, cond))
            elif kind == "elif" and stack:
                _cur, taken = stack[-1]
                cond = _and(_not(taken), evaluate(rest, info))
                stack[-1] = (cond, _or(taken, evaluate(rest, info)))
            elif kind == "else" and stack:
                _cur, taken = stack[-1]
                stack[-1] = (_not(taken), True)
            elif kind == "endif" and stack:
                stack.pop()
        value: bool | None = True
        for cur, _taken in stack:
            value = _and(value, cur)
        out.append(value)
    return out


def _strip_comment(s: str) -> str:
    return re.sub(r"/\*.*?\*/|//.*$", "", s).strip()


def _ifdef(name: str, info: BuildInfo, kind: str) -> bool | None:
    v = _defined(name.split()[0] if name.split() else "", info)
    return v if kind == "ifdef" else _not(v)


def _defined(name: str, info: BuildInfo) -> bool | None:
    if name in info.defined:
        return True
    return False if info.known_undefined(name) else None


def _not(v: bool | None) -> bool | None:
    return None if v is None else not v


def _and(a: bool | None, b: bool | None) -> bool | None:
    if a is False or b is False:
        return False
    return True if a is True and b is True else None


def _or(a: bool | None, b: bool | None) -> bool | None:
    if a is True or b is True:
        return True
    return False if a is False and b is False else None


_TOKEN = re.compile(r"\s*(defined|\|\||&&|!=|==|>=|<=|[()!<>]|\w+|\S)")


def evaluate(expr: str, info: BuildInfo) -> bool | None:
    """Three-valued `#if`: defined(X), X, !, &&, ||, parentheses; anything else unknown."""
    tokens = _TOKEN.findall(expr)
    pos = 0

    def peek() -> str:
        return tokens[pos] if pos < len(tokens) else ""

    def take() -> str:
        nonlocal pos
        pos += 1
        return tokens[pos - 1] if pos - 1 < len(tokens) else ""

    def primary() -> bool | None:
        t = take()
        if t == "!":
            return _not(primary())
        if t == "(":
            v = disj()
            take()  # ")"
            return v
        if t == "defined":
            paren = peek() == "("
            if paren:
                take()
            name = take()
            if paren:
                take()
            return _defined(name, info)
        if t.isdigit():
            return t != "0"
        if re.fullmatch(r"[A-Za-z_]\w*", t or "-"):
            if peek() in ("==", "!=", ">=", "<=", "<", ">"):  # a comparison: values unknown
                take()
                take()
                return None
            return None if t in info.defined or not info.known_undefined(t) else False
        return None

    def chain(operand: Callable[[], bool | None], op: str,
              combine: Callable[[bool | None, bool | None], bool | None]) -> bool | None:
        """`operand (op operand)*`, folded left with the three-valued `combine`."""
        v = operand()
        while peek() == op:
            take()
            v = combine(v, operand())
        return v

    def conj() -> bool | None:
        return chain(primary, "&&", _and)

    def disj() -> bool | None:
        return chain(conj, "||", _or)

    try:
        value = disj()
    except IndexError:
        return None
    return value if pos == len(tokens) else None
