"""Integrity guards: the judge's inputs stay out of the candidate's reach.

Before anything runs, a candidate that changes a protected file or a file outside scope is
refused. While it runs, the protected files of each checkout are re-hashed after every step, so
code that rewrites them (a benchmark that edits the checks script) is caught as tampering.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from readfirst.gitcli import git


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


@dataclass(frozen=True)
class Refusal:
    protected: tuple[str, ...]  # protected files the candidate changes
    out_of_scope: tuple[str, ...]  # files outside [target] scope it changes

    def reason(self) -> str:
        parts = []
        if self.protected:
            parts.append("changes protected files: " + ", ".join(self.protected))
        if self.out_of_scope:
            parts.append("changes files outside scope: " + ", ".join(self.out_of_scope))
        return "; ".join(parts)


def check_changes(changed: list[str], protected: list[str], scope: list[str]) -> Refusal | None:
    """None when the change set is allowed; otherwise what it touches that it may not."""
    prot = tuple(p for p in changed if matches(p, protected))
    outside = tuple(p for p in changed if scope and not matches(p, scope) and p not in prot)
    if prot or outside:
        return Refusal(prot, outside)
    return None


def protected_blobs(repo: Path, commit: str, patterns: list[str]) -> dict[str, str]:
    """Git blob ids of the protected files tracked at `commit`."""
    out = git(repo, "ls-tree", "-r", "-z", "--full-tree", commit)
    blobs = {}
    for entry in out.split("\0"):
        if not entry:
            continue
        meta, path = entry.split("\t", 1)
        _mode, kind, sha = meta.split()
        if kind == "blob" and matches(path, patterns):
            blobs[path] = sha
    return blobs


def blob_id(path: Path) -> str | None:
    """The git blob id of a file on disk (what `git hash-object` prints); None if missing."""
    try:
        data = path.read_bytes()
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        return None
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def tampered(checkout: Path, expected: dict[str, str]) -> list[str]:
    """Protected files in `checkout` that no longer match their committed content."""
    return sorted(p for p, sha in expected.items() if blob_id(checkout / p) != sha)
