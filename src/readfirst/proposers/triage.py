"""Triage of a fork's commits before any worker is spent on them.

`vcs.competitors.list_fork_commits` lists every divergent commit with the files it changes
(one `git log --raw`). Each commit is then sorted: nothing in scope (skipped, counted per
reason), in scope only (offered), in scope plus non-code elsewhere (offered restricted to its
in-scope part, noted), in scope plus code elsewhere (skipped: porting half of it would not be
that commit).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from readfirst.core import constants as C
from readfirst.core.globs import matches
from readfirst.vcs.competitors import ForkCommit

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


