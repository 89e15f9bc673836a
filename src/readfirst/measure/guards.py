"""Integrity guards: the judge's inputs stay out of the candidate's reach.

Before anything runs, a candidate that changes a protected file or a file outside scope is
refused. While it runs, the protected files of each checkout are re-hashed after every step, so
code that rewrites them (a benchmark that edits the checks script) is caught as tampering.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
from dataclasses import dataclass
from pathlib import Path

from readfirst.core.globs import matches
from readfirst.vcs.gitcli import git


@dataclass(frozen=True)
class Refusal:
    protected: tuple[str, ...]  # protected files the candidate changes
    out_of_scope: tuple[str, ...]  # files outside [target] scope it changes
    links: tuple[str, ...] = ()  # symbolic links it adds that point outside the repository

    def reason(self) -> str:
        parts = []
        if self.protected:
            parts.append("changes protected files: " + ", ".join(self.protected))
        if self.out_of_scope:
            parts.append("changes files outside scope: " + ", ".join(self.out_of_scope))
        if self.links:
            parts.append("adds links pointing outside the repository: " + ", ".join(self.links))
        return "; ".join(parts)

    @property
    def files(self) -> list[str]:
        return [*self.protected, *self.out_of_scope, *self.links]


def check_changes(changed: list[str], protected: list[str], scope: list[str]) -> Refusal | None:
    """None when the change set is allowed; otherwise what it touches that it may not."""
    prot = tuple(p for p in changed if matches(p, protected))
    outside = tuple(p for p in changed if scope and not matches(p, scope) and p not in prot)
    if prot or outside:
        return Refusal(prot, outside)
    return None


def escaping_links(repo: Path, commit: str, changed: list[str]) -> tuple[str, ...]:
    """Changed paths that are symbolic links (mode 120000) at `commit` whose target is
    absolute or climbs out of the repository (e.g. `../../..`, the user's checkout)."""
    if not changed:
        return ()
    out = git(repo, "ls-tree", "-z", "--full-tree", commit, "--", *changed)
    bad = []
    for entry in out.split("\0"):
        if not entry.startswith("120000 "):
            continue
        meta, path = entry.split("\t", 1)
        target = git(repo, "cat-file", "blob", meta.split()[2])
        resolved = posixpath.normpath(posixpath.join(posixpath.dirname(path), target))
        if posixpath.isabs(target) or resolved == ".." or resolved.startswith("../"):
            bad.append(path)
    return tuple(bad)


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


def tampered(checkout: Path, expected: dict[str, str | None]) -> list[str]:
    """Protected files in `checkout` that no longer match their expected content (None:
    expected missing)."""
    return sorted(p for p, sha in expected.items() if blob_id(checkout / p) != sha)


def on_disk_blobs(checkout: Path, paths: list[str]) -> dict[str, str | None]:
    """Blob ids of files as they are on disk now (the user's checkout may differ from HEAD)."""
    return {p: blob_id(checkout / p) for p in paths}


def tree_fingerprint(root: Path) -> dict[str, tuple[int, int, int]]:
    """(size, mtime_ns, inode) of every file under `root` except `.git`, links not followed:
    cheap enough to take around every step, and any rewrite of a build output changes it."""
    out: dict[str, tuple[int, int, int]] = {}
    stack = [root]
    while stack:
        d = stack.pop()
        try:
            entries = list(os.scandir(d))
        except OSError:
            continue
        for e in entries:
            if e.name == ".git" and d == root:
                continue
            st = e.stat(follow_symlinks=False)
            if e.is_dir(follow_symlinks=False):
                stack.append(Path(e.path))
            else:
                out[os.path.relpath(e.path, root)] = (st.st_size, st.st_mtime_ns, st.st_ino)
    return out
