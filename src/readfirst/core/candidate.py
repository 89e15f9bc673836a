"""A candidate: one proposed change, as a diff against the baseline it was made for.

Candidates are plain data (JSON-serialisable) so executors on other machines can carry them.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from readfirst.vcs import gitcli

COMMIT_IDENTITY = gitcli.COMMIT_IDENTITY  # re-exported for the executors that import it here


@dataclass(frozen=True)
class Candidate:
    id: str  # stable across runs: "fork:<name>@<sha12>", "patch:<file name>"
    title: str
    rationale: str
    diff: str  # unified diff (git format), applied with `git apply --3way`
    source: str  # the proposer: "forks", "patches", ...
    provenance: tuple[str, ...] = field(default_factory=tuple)  # e.g. "fastfork@<sha>", "a.c:12"
    parent: str | None = None  # a repair: the id of the candidate it fixes
    attempt: int = 0  # a repair: 1, 2, ... (0: not a repair)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["provenance"] = list(self.provenance)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Candidate:
        return cls(**{**d, "provenance": tuple(d.get("provenance", ()))})

    def diff_hash(self) -> str:
        return hashlib.sha256(self.diff.encode()).hexdigest()[:16]


_NOISE = re.compile(r"^(index |From |Date: |Subject: |similarity index|old mode|new mode)")
_HUNK = re.compile(r"^@@ [^@]* @@.*$")


def normalized_diff_hash(diff: str) -> str:
    """A hash of what a diff changes, blind to blob ids, line numbers, headers and trailing
    whitespace: two candidates with the same hash make the same edit."""
    kept: list[str] = []
    lines = diff.splitlines()
    start = next((i for i, ln in enumerate(lines) if ln.startswith(("diff --git", "--- "))), 0)
    for line in lines[start:]:  # a format-patch's message comes before its first diff line
        if _NOISE.match(line):
            continue
        if _HUNK.match(line):
            kept.append("@@")
        elif line.startswith(("diff --git", "--- ", "+++ ", "+", "-", " ")):
            kept.append(line.rstrip())
    return hashlib.sha256("\n".join(kept).encode()).hexdigest()[:20]


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
