"""Apply a candidate: its diff on a baseline in a worktree (`git apply --3way`), committed.

When git refuses, its multi-line complaint becomes one short reason (`ApplyError`).
"""

from __future__ import annotations

import re
from pathlib import Path

from readfirst.core.candidate import Candidate
from readfirst.vcs import gitcli
from readfirst.vcs.gitcli import COMMIT_IDENTITY


class ApplyError(Exception):
    """The candidate's diff does not apply to the baseline (a one-line reason, from git's)."""


_APPLY_REASONS = (  # git apply's lines -> short words; the first kind found wins
    (re.compile(r"^U (.+)$"), "conflicts in {}"),
    (re.compile(r"^error: patch failed: (.+)$"), "patch failed at {}"),
    (re.compile(r"^error: (.+): does not exist in index$"), "{} does not exist"),
    (re.compile(r"^error: (.+): already exists in (?:index|working directory)$"),
     "{} already exists"),
)


def apply_failure(text: str) -> str:
    """git apply's multi-line complaint as one short line: `conflicts in src/a.c, src/b.c`."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for pattern, words in _APPLY_REASONS:
        found = list(dict.fromkeys(m.group(1) for ln in lines if (m := pattern.match(ln))))
        if found:
            more = f" and {len(found) - 3} more" if len(found) > 3 else ""
            return words.format(", ".join(found[:3]) + more)
    errors = [ln.removeprefix("error: ") for ln in lines if ln.startswith("error: ")]
    first = (errors or lines or ["git apply failed"])[0]
    return first if len(first) <= 160 else first[:157] + "..."


def apply_candidate(worktree: Path, baseline: str, cand: Candidate) -> str:
    """Reset `worktree` to `baseline`, apply the diff with a 3-way merge, commit; the commit sha.

    The 3-way fallback resolves context drift the way `git cherry-pick` would when the diff's
    preimage blobs are in the object store (forks are fetched, so theirs are).
    """
    gitcli.worktree_checkout(worktree, baseline)
    patch = worktree.parent / f".{worktree.name}.patch"
    patch.write_text(cand.diff if cand.diff.endswith("\n") else cand.diff + "\n")
    try:
        gitcli.git(worktree, "apply", "--3way", "--whitespace=nowarn", str(patch))
    except gitcli.GitError as e:
        gitcli.worktree_checkout(worktree, baseline)
        raise ApplyError(apply_failure(str(e).split(": ", 1)[-1])) from None
    finally:
        patch.unlink(missing_ok=True)
    gitcli.git(worktree, "add", "-A")
    status = gitcli.git(worktree, "status", "--porcelain")
    if not status:
        raise ApplyError("the diff changes nothing on this baseline (already applied?)")
    gitcli.git(worktree, "commit", "-q", "--no-verify", "-m", cand.title, env=COMMIT_IDENTITY)
    return gitcli.git(worktree, "rev-parse", "HEAD")
