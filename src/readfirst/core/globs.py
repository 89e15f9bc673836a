"""Glob patterns over repo-relative POSIX paths: `[target] scope`, `protected`, research scopes."""

from __future__ import annotations

import re
from functools import lru_cache


@lru_cache(maxsize=256)
def _glob_regex(pattern: str) -> re.Pattern[str]:
    """Glob over repo-relative POSIX paths: `*` and `?` stay within one path segment, `**`
    crosses segments. A pattern also covers everything below a directory it matches."""
    pat = pattern.strip().lstrip("/").removeprefix("./").rstrip("/")
    out, i = [], 0
    while i < len(pat):
        if pat.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pat.startswith("**", i):
            out.append(".*")
            i += 2
        elif pat[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pat[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pat[i]))
            i += 1
    return re.compile("".join(out) + "(?:/.*)?")


def matches(path: str, patterns: list[str] | tuple[str, ...]) -> bool:
    return any(_glob_regex(p).fullmatch(path) for p in patterns if p.strip())
