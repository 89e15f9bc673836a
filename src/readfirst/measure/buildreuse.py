"""Build reuse: a fresh worktree starts from another worktree's build outputs.

On a large project every fresh slot would otherwise start with a clean build (minutes each, 2 x
W of them before the first verdict). Instead:
- the base is built once per baseline per workspace: base builds take turns (a lock), and a
  worker whose base slot has never been built copies the outputs of a slot already built at
  the same commit, so its own build finds nothing to do;
- a fresh candidate slot copies its base's outputs right after the base is built, so the
  candidate's first build is incremental.

A copy is `cp -a --reflink=auto` (copy-on-write where the filesystem allows; never hard links,
which would let a candidate write into the base's files). The old slot's absolute path is
rewritten to the new one inside the copied files (CMake caches, makefiles, dependency files;
every file when both paths have the same length, text files otherwise) with their times kept,
and the new slot's tracked files that are identical to the old slot's get the old slot's
modification times, the others the current time, so make-style tools rebuild exactly what
differs. (Ninja also hashes its command lines, so a ninja build dir is rebuilt in full: use
the Makefile generator, or ccache.)
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from readfirst.vcs import gitcli

BUILT_DIR = "builds"  # under .readfirst/: <slot> holds the commit the slot was last built at
MAX_REWRITE_BYTES = 256 * 1024 * 1024  # larger outputs are copied, not rewritten


def _state(checkout: Path) -> Path:
    return checkout.parent.parent  # .readfirst/worktrees/<slot>


def built_at(checkout: Path) -> str | None:
    try:
        return (_state(checkout) / BUILT_DIR / checkout.name).read_text().strip() or None
    except OSError:
        return None


def mark_built(checkout: Path, commit: str) -> None:
    d = _state(checkout) / BUILT_DIR
    d.mkdir(parents=True, exist_ok=True)
    tmp = d / f".{checkout.name}.tmp"
    tmp.write_text(commit)
    os.replace(tmp, d / checkout.name)


def unmark(checkout: Path) -> None:
    (_state(checkout) / BUILT_DIR / checkout.name).unlink(missing_ok=True)


def build_outputs(checkout: Path) -> list[str]:
    """Ignored, untracked paths of a worktree (directories collapsed)."""
    out = gitcli.git(checkout, "ls-files", "-z", "--others", "--ignored", "--exclude-standard",
                     "--directory")
    return [p.rstrip("/") for p in out.split("\0") if p]


@contextmanager
def base_build(checkout: Path, commit: str) -> Iterator[str | None]:
    """Around building a base slot: builds take turns; a never-built slot first copies a slot
    built at the same commit. Yields where it copied from (None: nothing). The slot is marked
    built at `commit` when the block succeeds."""
    locks = _state(checkout) / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    with open(locks / "base-build.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        unmark(checkout)
        source = None
        if not build_outputs(checkout):
            source = _peer_built_at(checkout, commit)
            if source is not None and not seed(source, checkout, commit):
                source = None
        yield source.name if source else None
        mark_built(checkout, commit)


def _peer_built_at(checkout: Path, commit: str) -> Path | None:
    for slot in sorted(checkout.parent.iterdir()):
        if slot != checkout and built_at(slot) == commit and gitcli.head_of(slot) == commit:
            return slot
    return None


def seed(src: Path, dst: Path, src_commit: str) -> bool:
    """Copy `src`'s build outputs into `dst` (which has none). False, leaving `dst` without
    outputs, when `src` moved while copying."""
    paths = build_outputs(src)
    if not paths:
        return False
    for rel in paths:
        target = dst / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["cp", "-a", "--reflink=auto", str(src / rel), str(target)],
                       check=True, capture_output=True)
    for rel in paths:
        _rewrite_paths(dst / rel, str(src).encode(), str(dst).encode())
    _transplant_mtimes(src, dst)
    if gitcli.head_of(src) != src_commit:  # moved on under us: do not trust the copy
        gitcli.git(dst, "clean", "-ffdxq")
        return False
    return True


def seed_candidate(base: Path, cand: Path, base_commit: str) -> bool:
    """After the base is built: a candidate slot without outputs starts from the base's."""
    if build_outputs(cand):
        return False
    return seed(base, cand, base_commit)


def _rewrite_paths(root: Path, old: bytes, new: bytes) -> None:
    same_length = len(old) == len(new)
    for path in [root] if root.is_file() or root.is_symlink() else _walk(root):
        if path.is_symlink():
            link = os.readlink(path).encode()
            if link.startswith(old):
                path.unlink()
                os.symlink((new + link[len(old):]).decode(), path)
            continue
        st = path.stat()
        if st.st_size > MAX_REWRITE_BYTES:
            continue
        data = path.read_bytes()
        if old not in data or (not same_length and b"\0" in data):
            continue
        path.write_bytes(data.replace(old, new))
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def _walk(root: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        d = Path(dirpath)
        for name in filenames:
            yield d / name
        for name in dirnames:
            if (d / name).is_symlink():
                yield d / name


def _transplant_mtimes(src: Path, dst: Path) -> None:
    """Tracked files identical in both slots get `src`'s times; the others now, so they are
    newer than every copied output."""
    def blobs(tree: Path) -> dict[str, str]:
        out = gitcli.git(tree, "ls-files", "-s", "-z")
        entries = (e.split("\t", 1) for e in out.split("\0") if e)
        return {path: meta.split()[1] for meta, path in entries}

    theirs, ours = blobs(src), blobs(dst)
    now = time.time_ns()
    for path, blob in ours.items():
        target = dst / path
        if target.is_symlink() or not target.is_file():
            continue
        if theirs.get(path) == blob:
            try:
                st = (src / path).stat()
            except OSError:
                os.utime(target, ns=(now, now))
                continue
            os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
        else:
            os.utime(target, ns=(now, now))
    # The index caches each file's stat data; a mismatch makes the next `reset --hard`
    # rewrite the file (mtime now: everything rebuilds). Same contents: refresh the cache.
    gitcli.git(dst, "update-index", "-q", "--refresh", check=False)

