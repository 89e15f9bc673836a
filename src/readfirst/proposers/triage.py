"""Triage of a fork's commits before any worker is spent on them.

One `git log --raw` lists every divergent commit with the files it changes (trees only: no
blob is read, so a partial clone's missing blobs cannot stop the listing). Each commit is then
sorted: nothing in scope (skipped, counted per reason), in scope only (offered), in scope plus
non-code elsewhere (offered restricted to its in-scope part, noted), in scope plus code
elsewhere (skipped: porting half of it would not be that commit).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from readfirst.core import constants as C
from readfirst.measure.guards import matches
from readfirst.vcs import gitcli

EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
SUBMODULE_MODE = "160000"
_LOG_FORMAT = "--format=%x1e%m%x1f%H%x1f%P%x1f%s%x1f%b%x1f"


@dataclass(frozen=True)
class FileChange:
    """One entry of `git log --raw`: a file a commit adds, modifies or deletes."""

    status: str  # A, M, D, T
    old_mode: str
    new_mode: str
    old_blob: str
    new_blob: str
    path: str  # repo-relative; undecodable bytes kept as surrogate escapes

    @property
    def submodule(self) -> bool:
        return SUBMODULE_MODE in (self.old_mode, self.new_mode)

    @property
    def utf8_path(self) -> bool:
        try:
            self.path.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True


@dataclass(frozen=True)
class ForkCommit:
    mark: str  # git log --cherry-mark: "=" when a patch-equivalent commit is in the baseline
    sha: str
    parent: str  # first parent, or the empty tree for a root commit
    subject: str
    body: str
    files: tuple[FileChange, ...] = ()


def list_fork_commits(repo: Path, baseline: str, ref: str) -> tuple[list[ForkCommit], bool]:
    """The non-merge commits of `ref` the baseline lacks, oldest first, each with the files it
    changes, and whether the two share history (without a merge-base, all of `ref`)."""
    base = gitcli.git(repo, "merge-base", baseline, ref, check=False).strip()
    rng = ["--cherry-mark", "--right-only", f"{baseline}...{ref}"] if base else [ref]
    raw = gitcli.git_bytes(repo, "-c", "core.quotePath=false", "log", "-z", "--no-merges",
                           "--reverse", "--raw", "--no-renames", "--no-abbrev", _LOG_FORMAT,
                           *rng)
    return [_parse_commit(chunk) for chunk in raw.split(b"\x1e")[1:]], bool(base)


def _parse_commit(chunk: bytes) -> ForkCommit:
    head, _, rest = chunk.partition(b"\x1f\x00")
    fields = head.decode("utf-8", "replace").split("\x1f")
    mark, sha, parents, subject, body = (fields + [""] * 5)[:5]
    parent = parents.split()[0] if parents.split() else EMPTY_TREE
    parts = rest.lstrip(b"\n").split(b"\x00")
    files: list[FileChange] = []
    for meta, path in zip(parts[0::2], parts[1::2], strict=False):
        bits = meta.lstrip(b"\n").decode("ascii", "replace").lstrip(":").split()
        if len(bits) != 5:
            continue
        files.append(FileChange(bits[4][:1], bits[0], bits[1], bits[2], bits[3],
                                path.decode("utf-8", "surrogateescape")))
    return ForkCommit(mark, sha, parent, subject.strip(), body, tuple(files))


# --- sorting one commit -------------------------------------------------------------------

# Skip reasons counted per fork (one record per reason, with the count).
OUT_OF_SCOPE = "out of scope: changes nothing in [target] scope"
MIXED_CODE = "mixed: also changes code outside [target] scope"
UPSTREAM = "already upstream: a patch-equivalent commit is in the baseline"
EMPTY = "empty: changes no file"
CAPPED = "cap: ranked beyond [research] max_fork_commits"


@dataclass
class Sorted:
    """What triage decided for one commit: the in-scope paths to port (empty: skip), the
    non-code files left out, and the reason when it is skipped."""

    paths: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    counted: str | None = None  # a reason counted per fork
    reason: str | None = None  # a reason of this commit alone


def non_code(path: str) -> bool:
    """Documentation, CI configuration or tests: what a port may leave out."""
    return matches(path, C.FORK_NON_CODE)


def sort_commit(fc: ForkCommit, in_scope: Callable[[str], bool]) -> Sorted:
    if fc.mark == "=":
        return Sorted(counted=UPSTREAM)
    if not fc.files:
        return Sorted(counted=EMPTY)
    bad = [f.path for f in fc.files if not f.utf8_path]
    if bad:
        shown = bad[0].encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        return Sorted(reason=f"a path is not UTF-8: {shown}")
    inside = [f for f in fc.files if in_scope(f.path)]
    if not inside:
        return Sorted(counted=OUT_OF_SCOPE)
    subs = [f.path for f in inside if f.submodule]
    if subs:
        return Sorted(reason=f"changes a submodule in scope: {', '.join(subs)}")
    outside = [f.path for f in fc.files if not in_scope(f.path)]
    code = [p for p in outside if not non_code(p)]
    if code:
        return Sorted(counted=MIXED_CODE, dropped=code)
    return Sorted(paths=[f.path for f in inside], dropped=outside)


class SkipTally:
    """Commits skipped for a shared reason, counted: one record per reason and fork."""

    def __init__(self, fork: str) -> None:
        self.fork = fork
        self.by_reason: dict[str, list[ForkCommit]] = {}

    def add(self, reason: str, fc: ForkCommit) -> None:
        self.by_reason.setdefault(reason, []).append(fc)

    def records(self) -> list[tuple[str, str, str]]:
        out = []
        for reason, commits in self.by_reason.items():
            n = len(commits)
            key = reason.split(":")[0].replace(" ", "-")
            examples = "; ".join(f"{c.sha[:12]} {c.subject[:60]}" for c in commits[:3])
            more = f" and {n - 3} more" if n > 3 else ""
            noun = "commit" if n == 1 else "commits"
            out.append((f"fork:{self.fork}:{key}", f"{n} {noun} of {self.fork}: {reason}",
                        f"{reason} ({n} {noun}; e.g. {examples}{more})"))
        return out


def commit_diff(repo: Path, parent: str, sha: str, paths: list[str] | None = None) -> str:
    """The commit's change (restricted to `paths` when given) with full blob ids, so that
    `apply --3way` merges it like cherry-pick would. Plumbing, so user diff settings do not
    leak in. GitError when git cannot read an object (`gitcli.cannot_read` says which);
    UnicodeDecodeError when not UTF-8."""
    spec = ["--", *paths] if paths else []
    out = gitcli.git_bytes(repo, "-c", "core.quotePath=false", "diff-tree", "-p", "--binary",
                           "--full-index", "--no-renames", parent, sha, *spec,
                           env={"GIT_LITERAL_PATHSPECS": "1"})
    return out.decode("utf-8")
