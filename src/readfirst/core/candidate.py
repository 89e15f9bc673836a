"""A candidate: one proposed change, as a diff against the baseline it was made for.

Candidates are plain data (JSON-serialisable) so executors on other machines can carry them.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass, field
from typing import Any


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
