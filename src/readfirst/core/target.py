"""`Target`: where a target lives (its directory, the git repo around it)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from readfirst.vcs import gitcli


@dataclass
class Target:
    """Where a target lives: its directory, the git repo around it, and the state directory."""

    root: Path  # the directory holding readfirst.toml (or the autoresearch files)
    repo: Path  # the git work tree containing it
    rel: str  # root relative to repo, "" at the top

    @classmethod
    def at(cls, path: Path) -> Target:
        root = path.resolve()
        repo = gitcli.repo_root(root).resolve()
        rel = root.relative_to(repo).as_posix()
        return cls(root, repo, "" if rel == "." else rel)

    def repo_patterns(self, patterns: list[str]) -> list[str]:
        """Target-relative globs as repo-relative ones."""
        return [f"{self.rel}/{p.lstrip('/')}" if self.rel else p for p in patterns]
