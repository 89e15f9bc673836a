"""`Target`: where a target lives (its directory, the git repo around it).

`vcs.workspace.target_at(path)` finds the repository around a directory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from readfirst.core.globs import under


@dataclass
class Target:
    """Where a target lives: its directory, the git repo around it, and the state directory."""

    root: Path  # the directory holding readfirst.toml (or the autoresearch files)
    repo: Path  # the git work tree containing it
    rel: str  # root relative to repo, "" at the top

    def repo_patterns(self, patterns: list[str]) -> list[str]:
        """Target-relative globs as repo-relative ones."""
        return under(self.rel, patterns)
