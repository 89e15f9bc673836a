"""Glob patterns over repo-relative POSIX paths: `[target] scope`, `protected`, research scopes.

Gitignore-style (pathspec), anchored at the repository's root: `*` and `?` stay within one
path segment, `**` crosses segments, a pattern also covers everything below a directory it
matches, and a later `!pattern` takes paths back out (e.g. `tests/**` then
`!tests/scratch/**`). Unlike a .gitignore line, a pattern without a slash names a path at the
top, not a name at any depth (`bench.sh` is the top-level one; write `**/bench.sh` for all).
"""

from __future__ import annotations

import re
from functools import lru_cache

import pathspec

# `**` glued to a name (`**.c`, `src/**.c`) crosses directories here; gitignore reads it as `*`
_GLUED = re.compile(r"(^|/)\*\*(?=[^/])")


def _anchored(pattern: str) -> str:
    text = pattern.strip()
    negate = text.startswith("!")
    text = text.removeprefix("!").strip().lstrip("/").removeprefix("./").rstrip("/")
    return ("!" if negate else "") + "/" + _GLUED.sub(r"\1**/*", text)


@lru_cache(maxsize=256)
def _spec(patterns: tuple[str, ...]) -> pathspec.GitIgnoreSpec:
    return pathspec.GitIgnoreSpec.from_lines([_anchored(p) for p in patterns])


def matches(path: str, patterns: list[str] | tuple[str, ...]) -> bool:
    """Whether the patterns (the last one that matches decides) select `path`."""
    kept = tuple(p for p in patterns if p.strip())
    return bool(kept) and _spec(kept).match_file(path)


def under(rel: str, patterns: list[str]) -> list[str]:
    """Patterns relative to the directory `rel` (a target's root) as repo-relative ones; a
    `!` stays in front."""
    if not rel:
        return list(patterns)
    out = []
    for p in patterns:
        text = p.strip()
        bang = "!" if text.startswith("!") else ""
        out.append(f"{bang}{rel.rstrip('/')}/{text.removeprefix('!').strip().lstrip('/')}")
    return out
