"""Dependent fork commits: a commit that does not apply alone on the baseline is retried on
top of the earlier in-scope commits of the same fork it depends on (those changing the same
files, nearest and overlapping hunks first), and offered as one stacked candidate.

Everything happens in a private index file (`GIT_INDEX_FILE`): `apply --cached --3way` merges
like cherry-pick would, `write-tree` gives the stacked tree. No working tree is touched.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from readfirst.core import constants as C
from readfirst.vcs import gitcli


@dataclass
class Offer:
    """An in-scope commit (or its in-scope part) ready to be a candidate."""

    order: int  # position in the fork, oldest first
    sha: str
    subject: str
    body: str
    diff: str
    paths: list[str]
    dropped: list[str]
    starts: dict[str, list[int]]  # path -> old-side hunk starts (for dependency order)


class Stacker:
    def __init__(self, repo: Path, baseline: str) -> None:
        self.repo = repo
        self.baseline = baseline

    def apply(self, diffs: list[str]) -> tuple[str | None, str]:
        """(the tree of the baseline with the diffs applied in order, or None; git's error)."""
        with tempfile.TemporaryDirectory(prefix="readfirst-stack-") as tmp:
            env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
            gitcli.git(self.repo, "read-tree", self.baseline, env=env)
            for diff in diffs:
                body = diff if diff.endswith("\n") else diff + "\n"
                try:
                    gitcli.git_bytes(self.repo, "apply", "--cached", "--3way",
                                     "--whitespace=nowarn", "-", env=env,
                                     input=body.encode("utf-8"))
                except gitcli.GitError as e:
                    return None, str(e).removeprefix("git apply --cached --3way "
                                                     "--whitespace=nowarn -: ")
            return gitcli.git(self.repo, "write-tree", env=env), ""

    def diff_to(self, tree: str) -> str:
        base_tree = gitcli.tree_of(self.repo, self.baseline)
        return gitcli.git_bytes(self.repo, "-c", "core.quotePath=false", "diff-tree", "-p",
                                "--binary", "--full-index", "--no-renames", base_tree,
                                tree).decode("utf-8")

    def resolve(self, offer: Offer, earlier: list[Offer]) -> tuple[list[Offer], str] | str:
        """([dependencies in fork order], the stacked diff) when `offer` applies only on top
        of earlier commits; ([], its own diff) when it applies alone; else git's error."""
        tree, error = self.apply([offer.diff])
        if tree is not None:
            return [], offer.diff
        related = [e for e in earlier if set(e.paths) & set(offer.paths)]
        related.sort(key=lambda e: (not _overlaps(e, offer), -e.order))
        chosen: list[Offer] = []
        for dep in related[:C.FORK_STACK_DEPTH]:
            chosen = sorted([*chosen, dep], key=lambda e: e.order)
            tree, _err = self.apply([d.diff for d in chosen] + [offer.diff])
            if tree is not None:
                chosen, tree = self._prune(chosen, offer, tree)
                return chosen, self.diff_to(tree)
        tried = f" alone or on top of {len(chosen)} earlier commit(s) of the fork" \
            if chosen else ""
        return f"does not apply on the baseline{tried}: {error.strip()[:300]}"


    def _prune(self, chosen: list[Offer], offer: Offer, tree: str) -> tuple[list[Offer], str]:
        """Drop the dependencies the stack applies without (the greedy search may have
        picked a nearby commit it does not need, e.g. another fork win)."""
        for dep in list(chosen):
            rest = [d for d in chosen if d is not dep]
            fewer, _err = self.apply([d.diff for d in rest] + [offer.diff])
            if fewer is not None:
                chosen, tree = rest, fewer
        return chosen, tree


def _overlaps(dep: Offer, offer: Offer) -> bool:
    """Does `dep` change lines near where `offer` changes the same file?"""
    for path, starts in offer.starts.items():
        for s in starts:
            if any(abs(s - d) <= C.FORK_SITE_WINDOW for d in dep.starts.get(path, [])):
                return True
    return False
