"""Every git call readfirst makes goes through this one module (the `git` CLI, no bindings).

Hooks never run: a candidate (without the sandbox) could plant them in the shared `.git`, and
readfirst's own git calls would then execute them. Every call points `core.hooksPath` at an
empty directory of readfirst's and turns the fsmonitor (a configurable command) off.
"""

from __future__ import annotations

import functools
import os
import subprocess
import tempfile
from pathlib import Path

from readfirst.core.errors import ConfigError

# The special revision name meaning "HEAD plus the uncommitted changes of the working tree".
WORKTREE = "WORKTREE"
# Who readfirst's own commits (snapshots, candidates, landed winners) are by.
COMMIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "readfirst",
    "GIT_AUTHOR_EMAIL": "readfirst@localhost",
    "GIT_COMMITTER_NAME": "readfirst",
    "GIT_COMMITTER_EMAIL": "readfirst@localhost",
}


class GitError(RuntimeError):
    pass


@functools.cache
def _no_hooks_dir() -> str:
    """An empty, read-only directory private to this process: git's hooks directory."""
    path = tempfile.mkdtemp(prefix="readfirst-nohooks-")
    os.chmod(path, 0o555)
    return path


def hardening() -> list[str]:
    return ["-c", f"core.hooksPath={_no_hooks_dir()}", "-c", "core.fsmonitor=false"]


def git(repo: Path, *args: str, env: dict[str, str] | None = None, check: bool = True,
        errors: str = "strict") -> str:
    """Run `git -C repo args...` (hooks disabled) and return stdout (stripped of the final
    newline). `errors` is how bytes that are not UTF-8 decode: "strict" raises
    UnicodeDecodeError; "replace" or "surrogateescape" for listings that must go on (a
    commit message or path in another encoding)."""
    full_env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", **(env or {})}
    proc = subprocess.run(
        ["git", *hardening(), "-C", str(repo), *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors=errors,
        env=full_env,
        stdin=subprocess.DEVNULL,
    )
    if check and proc.returncode != 0:
        raise GitError(f"git {' '.join(args)}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout.rstrip("\n")


def git_bytes(repo: Path, *args: str, env: dict[str, str] | None = None,
              input: bytes | None = None) -> bytes:
    """Like `git`, but stdout as bytes (diffs and paths need not be UTF-8); GitError carries
    git's stderr, decoded leniently."""
    full_env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", **(env or {})}
    proc = subprocess.run(
        ["git", "-C", str(repo), *args],
        capture_output=True,
        env=full_env,
        input=input,
        stdin=None if input is not None else subprocess.DEVNULL,
    )
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip()
        raise GitError(f"git {' '.join(args)}: {err}")
    return proc.stdout


def cannot_read(e: GitError) -> str:
    """git's complaint about one commit in one line: what it could not read (a partial clone's
    missing blob, a corrupt object)."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    useful = [ln for ln in lines if ln.startswith(("fatal:", "error:"))] or lines[-1:]
    return f"git cannot read this commit: {' / '.join(useful)[:300]}"


def repo_root(path: Path) -> Path:
    """The top of the git work tree containing `path`; ConfigError when there is none."""
    if not path.is_dir():
        raise ConfigError(f"{path}: no such directory")
    try:
        top = git(path, "rev-parse", "--show-toplevel")
    except GitError:
        raise ConfigError(f"{path}: not a git repository (readfirst needs git history)") from None
    return Path(top)


def resolve_commit(repo: Path, rev: str, *, keep_from_head: tuple[str, ...] = ()) -> str:
    """Full sha of `rev`; WORKTREE snapshots the uncommitted changes (see snapshot_worktree)."""
    if rev == WORKTREE:
        return snapshot_worktree(repo, keep_from_head=keep_from_head)
    try:
        return git(repo, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    except GitError:
        raise ConfigError(f"unknown revision {rev!r} in {repo}") from None


def snapshot_worktree(repo: Path, *, keep_from_head: tuple[str, ...] = ()) -> str:
    """Commit HEAD plus the uncommitted (and untracked, not ignored) files without touching the
    user's index or files: a private index file, `write-tree`, `commit-tree`. Paths in
    `keep_from_head` (repo-relative) keep HEAD's version (or stay absent)."""
    head = resolve_commit(repo, "HEAD")
    with tempfile.TemporaryDirectory(prefix="readfirst-index-") as tmp:
        env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
        git(repo, "read-tree", head, env=env)
        excludes = [f":(exclude,literal){p}" for p in keep_from_head]
        git(repo, "add", "-A", "--", ".", ":(exclude).readfirst", *excludes, env=env)
        tree = git(repo, "write-tree", env=env)
    if tree == tree_of(repo, head):
        return head  # nothing uncommitted: WORKTREE is HEAD
    return git(
        repo,
        "commit-tree",
        tree,
        "-p",
        head,
        "-m",
        "readfirst: snapshot of the uncommitted working tree",
        env=COMMIT_IDENTITY,
    )


def applies(repo: Path, base: str, diff: str) -> bool:
    """Whether `diff` applies on `base` (3-way), checked in a private index."""
    with tempfile.TemporaryDirectory(prefix="readfirst-index-") as tmp:
        env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
        patch = Path(tmp) / "change.patch"
        patch.write_text(diff if diff.endswith("\n") else diff + "\n")
        git(repo, "read-tree", base, env=env)
        try:
            git(repo, "apply", "--cached", "--3way", "--whitespace=nowarn", str(patch), env=env)
        except GitError:
            return False
    return True


def commit_diff(repo: Path, base: str, diff: str, message: str) -> str:
    """A commit (on no branch) of `diff` applied on `base` with a 3-way fallback, made in a
    private index: no worktree is touched. GitError when it does not apply."""
    with tempfile.TemporaryDirectory(prefix="readfirst-index-") as tmp:
        env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
        patch = Path(tmp) / "change.patch"
        patch.write_text(diff if diff.endswith("\n") else diff + "\n")
        git(repo, "read-tree", base, env=env)
        git(repo, "apply", "--cached", "--3way", "--whitespace=nowarn", str(patch), env=env)
        tree = git(repo, "write-tree", env=env)
    return git(repo, "commit-tree", tree, "-p", base, "-m", message, env=COMMIT_IDENTITY)


def tree_of(repo: Path, commit: str) -> str:
    return git(repo, "rev-parse", f"{commit}^{{tree}}")


def changed_files(repo: Path, base: str, cand: str) -> list[str]:
    """Paths that differ between two commits (renames count as delete + add)."""
    out = git(repo, "diff", "--no-renames", "--name-only", "-z", base, cand)
    return [p for p in out.split("\0") if p]


def short(sha: str) -> str:
    return sha[:12]


def worktree_add(repo: Path, path: Path, commit: str) -> None:
    git(repo, "worktree", "add", "--detach", "--force", str(path), commit)


def worktree_checkout(path: Path, commit: str) -> None:
    """Move an existing worktree to `commit`, discarding stray edits but keeping ignored build
    outputs so the next build is incremental."""
    git(path, "reset", "--hard", "--quiet", commit)
    git(path, "clean", "-fdq")


def worktree_remove(repo: Path, path: Path) -> None:
    git(repo, "worktree", "remove", "--force", str(path), check=False)
    git(repo, "worktree", "prune", check=False)


def head_of(path: Path) -> str | None:
    try:
        return git(path, "rev-parse", "HEAD")
    except GitError:
        return None


def is_clean(path: Path) -> bool:
    return git(path, "status", "--porcelain", "--untracked-files=normal") == ""


def branches(repo: Path, prefix: str) -> dict[str, str]:
    """Local branches under `prefix` (e.g. "readfirst/") -> their commit."""
    out = git(repo, "for-each-ref", "--format=%(refname:short) %(objectname)",
              f"refs/heads/{prefix}")
    return dict(line.split(" ", 1) for line in out.splitlines() if " " in line)


def delete_branch(repo: Path, name: str, expected: str) -> None:
    """Delete a branch only if it still points at `expected` (never a moved one)."""
    git(repo, "update-ref", "-d", f"refs/heads/{name}", expected)


class BranchMoved(Exception):
    """A readfirst branch no longer points where the journal says: someone else moved it."""


def check_branch(repo: Path, branch: str, expected: str) -> None:
    """Raise BranchMoved unless `refs/heads/<branch>` equals the journal's baseline; the ref is
    put back where the journal says first, so nothing forged stays on the branch."""
    ref = f"refs/heads/{branch}"
    actual = git(repo, "rev-parse", "--verify", "--quiet", ref, check=False) or None
    if actual == expected:
        return
    git(repo, "update-ref", ref, expected)
    raise BranchMoved(f"{ref} was moved to {short(actual) if actual else 'nothing'} behind "
                      f"readfirst's back (journal baseline {short(expected)}); put back")
