"""Backend conventions: shipped as data (research/conventions/*.toml), learned from the tree,
steered by `[research.siblings]`.

A *family* is a set of parallel implementations: directories under one parent (named like
backends or ISAs, or sharing many file names once the member's own name is taken out of
them), or files `<stem>_<variant>` in one directory (a variant is a known ISA, or a suffix
the directory uses on three or more stems). The profiles say what names mean (backends,
ISAs, fallbacks), how an op is handled (enum `case` labels, registration macros) and what a
dead case looks like.

`[research.siblings]` keys: `target` (the member to improve), `variants` (more ISA or backend
names), `families` (globs of directories whose children are members), `registration` and
`op_constant` (regexes), `profiles` (which shipped profiles to use; default all).
"""

from __future__ import annotations

import platform
import re
import tomllib
from collections import defaultdict
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import PurePosixPath
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from readfirst.core.errors import ConfigError
from readfirst.core.globs import matches
from readfirst.research import treesit as T

MIN_SHARED = 3  # file stems two directories must share to be learned as siblings
MIN_SHARED_SHARE = 0.3  # ... as a share of the smaller one's stems
MIN_SUFFIX_STEMS = 3  # a suffix on this many stems in one directory is a variant
# directory names that are a project's parts, never parallel implementations
_NOT_MEMBERS_TEXT = """include src lib libs test tests testing examples example tools docs doc
common utils util bench benchmarks scripts third_party thirdparty vendor external build cmake ci
app apps python bindings"""
NOT_MEMBERS = frozenset(_NOT_MEMBERS_TEXT.split())
# this machine's architecture as member names: the ISA family a benchmark here would run
HOST_NAMES = {"x86_64": ("x86_64", "x86", "amd64", "intel64"),
              "aarch64": ("arm64", "aarch64", "arm", "armv8a"),
              "arm64": ("arm64", "aarch64", "arm", "armv8a")}
_HEADER = re.compile(r"\.(h|hh|hpp|hxx|cuh|inc)$")


class SiblingsConfig(BaseModel):
    """`[research.siblings]`."""

    model_config = ConfigDict(extra="forbid")
    target: str | None = None
    variants: list[str] = []
    families: list[str] = []
    registration: list[str] = []
    op_constant: str | None = None
    profiles: list[str] | None = None


def literal_of(pattern: str) -> str:
    """The longest plain text every match of `pattern` contains (a cheap pre-filter: Python's
    `re` scans a large file slowly for a pattern that starts with `\\b`)."""
    if "|" in pattern:
        return ""  # a literal of one branch is not in the others' matches
    p = re.sub(r"\[[^\]]*\]|\\[bBsSwWdD]", "\x00", pattern)
    p = re.sub(r"\\(.)", r"\1", p)
    pieces = re.split(r"[\x00()?*+|^${}\"]|\.(?<!\\\.)", p)
    return max(pieces, key=len) if pieces else ""


@dataclass
class Conventions:
    backends: set[str] = field(default_factory=set)  # directory-member names
    variants: set[str] = field(default_factory=set)  # ISA / variant names (dirs and files)
    fallbacks: list[str] = field(default_factory=list)
    op_constant: re.Pattern[str] | None = None
    op_literals: list[str] = field(default_factory=list)  # text every op constant holds
    registration: list[re.Pattern[str]] = field(default_factory=list)
    unsupported: list[re.Pattern[str]] = field(default_factory=list)
    dispatch: list[str] = field(default_factory=list)
    fusion: re.Pattern[str] = re.compile(r"fuse|fusion", re.I)
    families: list[str] = field(default_factory=list)
    target: str | None = None
    names: list[str] = field(default_factory=list)  # profiles in use

    @property
    def members(self) -> set[str]:
        return self.backends | self.variants


@cache
def shipped() -> dict[str, dict[str, Any]]:
    """The convention profiles shipped with readfirst, by file stem."""
    out = {}
    folder = resources.files("readfirst.research").joinpath("conventions")
    for entry in sorted(folder.iterdir(),
                        key=lambda e: e.name):
        if entry.name.endswith(".toml"):
            out[entry.name[:-5]] = tomllib.loads(entry.read_text(encoding="utf-8"))
    return out


def _regex(value: str, key: str) -> re.Pattern[str]:
    try:
        return re.compile(value)
    except re.error as e:
        raise ConfigError(f"[research.siblings] {key}: expected a regular expression, "
                          f"got {value!r} ({e})") from None


def load(research: dict[str, Any]) -> Conventions:
    """The shipped profiles (or those `[research.siblings] profiles` names) plus the table's
    own keys; ConfigError naming the key on bad input."""
    raw = research.get("siblings", {})
    if not isinstance(raw, dict):
        raise ConfigError("[research.siblings]: expected a table")
    try:
        cfg = SiblingsConfig.model_validate(raw)
    except ValidationError as e:
        err = e.errors()[0]
        key = ".".join(str(p) for p in err["loc"])
        raise ConfigError(f"[research.siblings] {key}: {err['msg']}") from None
    profiles = shipped()
    names = cfg.profiles if cfg.profiles is not None else list(profiles)
    unknown = [n for n in names if n not in profiles]
    if unknown:
        raise ConfigError(f"[research.siblings] profiles: unknown {', '.join(unknown)}; "
                          f"expected some of {', '.join(profiles)}")
    conv = Conventions(names=names)
    ops: list[str] = []
    for n in names:
        p = profiles[n]
        conv.backends |= {b.lower() for b in p.get("backends", [])}
        conv.variants |= {v.lower() for v in p.get("variants", [])}
        conv.fallbacks += [f for f in p.get("fallbacks", []) if f not in conv.fallbacks]
        ops += [p["op_constant"]] if p.get("op_constant") else []
        conv.op_literals += [p.get("op_literal") or literal_of(p["op_constant"])
                             ] if p.get("op_constant") else []
        conv.registration += [re.compile(r) for r in p.get("registration", [])]
        conv.unsupported += [re.compile(r) for r in p.get("unsupported", [])]
        conv.dispatch += [d for d in p.get("dispatch_functions", []) if d not in conv.dispatch]
    if cfg.op_constant:
        ops.insert(0, _regex(cfg.op_constant, "op_constant").pattern)
        conv.op_literals.append(literal_of(cfg.op_constant))
    conv.op_constant = re.compile("|".join(f"(?:{o})" for o in ops)) if ops else None
    conv.registration += [_regex(r, "registration") for r in cfg.registration]
    conv.variants |= {v.lower() for v in cfg.variants}
    conv.families, conv.target = list(cfg.families), cfg.target or research.get("backend")
    return conv


# ---- learning the families ---------------------------------------------------------------


@dataclass
class Family:
    kind: str  # dir | files
    where: str  # the parent directory (dir families) or dir/stem (file families)
    members: dict[str, list[str]] = field(default_factory=dict)  # member -> files
    roots: dict[str, str] = field(default_factory=dict)  # member -> its directory


def _tokens(name: str) -> list[str]:
    return [t for t in re.split(r"[-_.]+", name.lower()) if t]


def normalized_stem(rel: str, member: str, conv: Conventions) -> str:
    """A file's stem without the member's name or any variant token: BLIS's
    bli_gemm_haswell_asm_d6x8 in haswell/ -> bli_gemm_asm_d6x8."""
    toks = [t for t in _tokens(PurePosixPath(rel).stem) if t != member and t not in conv.variants]
    return "_".join(toks)


def _member_name(d: str, conv: Conventions) -> str | None:
    """The backend or ISA a directory name says (`ggml-cuda` -> cuda, `haswell` -> haswell)."""
    low = d.lower()
    if low in NOT_MEMBERS:
        return None
    if low in conv.members:
        return low
    last = _tokens(low)[-1] if _tokens(low) else ""
    return last if last in conv.backends and low != last else None


def families(files: list[str], conv: Conventions | None = None) -> list[Family]:
    """Sibling families among the tracked files (paths relative to the root)."""
    conv = conv or load({})
    code = [f for f in files if T.language_of(f) in ("c", "cpp")]
    children: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for rel in code:
        parts = PurePosixPath(rel).parts
        for i in range(len(parts) - 1):
            parent = "/".join(parts[:i]) or "."
            children[parent][parts[i]].append(rel)
    out: list[Family] = []
    for parent in sorted(children):
        kids = children[parent]
        if len(kids) < 2:
            continue
        forced = any(matches(parent, [g]) for g in conv.families)
        named = {k: _member_name(k, conv) for k in kids}
        members = {named[k] or k.lower(): k for k in kids
                   if forced or named[k] or parent.endswith("backends")}
        members.update({n: k for n, k in _learned(parent, kids, conv).items()
                        if k not in members.values()})
        if len(members) >= 2:
            fam = Family("dir", parent)
            for name, k in sorted(members.items()):
                root = k if parent == "." else f"{parent}/{k}"
                fam.members[name], fam.roots[name] = sorted(kids[k]), root
            out.append(fam)
    return out + _file_families(code, conv)


def _learned(parent: str, kids: dict[str, list[str]], conv: Conventions) -> dict[str, str]:
    """Child directories that share many source-file stems (once their own name is taken
    out of them; headers do not count: include/ and src/ share those)."""
    stems = {k: {normalized_stem(f, k.lower(), conv) for f in fs if not _HEADER.search(f)}
             for k, fs in kids.items() if k.lower() not in NOT_MEMBERS}
    out: dict[str, str] = {}
    names = sorted(stems)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            shared = len(stems[a] & stems[b])
            small = min(len(stems[a]), len(stems[b])) or 1
            if shared >= MIN_SHARED and shared / small >= MIN_SHARED_SHARE:
                out[a.lower()], out[b.lower()] = a, b
    return out


def _file_families(code: list[str], conv: Conventions) -> list[Family]:
    """Per directory, files `<stem>_<variant>.<ext>` whose variant is a known ISA or a suffix
    that directory uses on MIN_SUFFIX_STEMS stems: one family, the variants its members,
    when at least one stem comes in two variants."""
    by_dir: dict[str, list[str]] = defaultdict(list)
    for rel in code:
        by_dir[str(PurePosixPath(rel).parent)].append(rel)
    out: list[Family] = []
    for d, rels in sorted(by_dir.items()):
        suffix_stems: dict[str, set[str]] = defaultdict(set)
        for rel in rels:
            toks = _tokens(PurePosixPath(rel).stem)
            if len(toks) >= 2:
                suffix_stems[toks[-1]].add("_".join(toks[:-1]))
        learned = {s for s, st in suffix_stems.items() if len(st) >= MIN_SUFFIX_STEMS
                   and not s.isdigit() and len(s) > 2}
        fam = Family("files", d.removeprefix("./") if d != "." else ".")
        stems: dict[str, set[str]] = defaultdict(set)
        for rel in rels:
            toks = _tokens(PurePosixPath(rel).stem)
            if len(toks) >= 2 and (toks[-1] in conv.variants or toks[-1] in learned):
                fam.members.setdefault(toks[-1], []).append(rel)
                stems["_".join(toks[:-1])].add(toks[-1])
        if len(fam.members) >= 2 and any(len(v) >= 2 for v in stems.values()):
            out.append(fam)
    return out


def pick_target(members: list[str], wanted: object, in_scope: list[str] | None = None,
                fallbacks: tuple[str, ...] | list[str] = ("generic", "scalar", "ref")
                ) -> str | None:
    """The member to improve: `target` when it names one; else the only member in scope;
    else cpu, else a fallback (generic, scalar, ref, ...) among those in scope."""
    pool = in_scope if in_scope is not None else members
    if isinstance(wanted, str) and wanted.lower() in pool:
        return wanted.lower()
    if in_scope is not None and len(in_scope) == 1:
        return in_scope[0]
    if "cpu" in pool:
        return "cpu"
    host = HOST_NAMES.get(platform.machine().lower(), ())
    return next((m for m in pool if m in fallbacks), None) or next(
        (m for m in pool if m in host), None)
