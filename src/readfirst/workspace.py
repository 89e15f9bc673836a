"""The target's `.readfirst/` directory: persistent worktrees, logs and the journal.

Worktrees live in named slots (`.readfirst/worktrees/<slot>`) that are reused between calls: a
slot is moved to the next commit with `reset --hard` + `clean -fd`, which keeps ignored build
outputs, so the next build is incremental. The user's own working tree is never written.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from readfirst import gitcli
from readfirst.constants import JOURNAL_FILE, STATE_DIR
from readfirst.errors import ConfigError
from readfirst.process import kill_processes_under


class Workspace:
    def __init__(self, repo: Path) -> None:
        self.repo = repo
        self.state = repo / STATE_DIR

    def ensure(self) -> Path:
        """Create `.readfirst/`, ignored by git from inside so the user's files stay as they are."""
        self.state.mkdir(exist_ok=True)
        ignore = self.state / ".gitignore"
        if not ignore.exists():
            ignore.write_text("# readfirst's state: never committed\n*\n")
        return self.state

    @property
    def journal_path(self) -> Path:
        return self.state / JOURNAL_FILE

    def run_dir(self, run_id: int) -> Path:
        d = self.state / "runs" / str(run_id)
        d.mkdir(parents=True, exist_ok=True)
        return d

    def slot_path(self, slot: str) -> Path:
        return self.state / "worktrees" / slot

    @contextmanager
    def lock_slot(self, slot: str) -> Iterator[None]:
        """One readfirst process per slot at a time."""
        lock_dir = self.state / "locks"
        lock_dir.mkdir(parents=True, exist_ok=True)
        with open(lock_dir / f"{slot}.lock", "w") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise ConfigError(
                    f"worktree slot {slot!r} is in use by another readfirst process"
                ) from None
            fh.write(str(os.getpid()))
            fh.flush()
            yield

    def checkout(self, slot: str, commit: str, *, clean: bool = False) -> Path:
        """The slot's worktree at `commit`, created on first use, reused after; `clean` also
        removes ignored files (build outputs), so the next build starts from scratch."""
        path = self.slot_path(slot)
        if path.exists() and gitcli.head_of(path) is not None:
            if gitcli.head_of(path) != commit or not gitcli.is_clean(path):
                gitcli.worktree_checkout(path, commit)
            if clean:
                gitcli.git(path, "clean", "-ffdxq")
            return path
        if path.exists():  # half-made by a killed run: start it over
            shutil.rmtree(path)
        gitcli.git(self.repo, "worktree", "prune", check=False)
        path.parent.mkdir(parents=True, exist_ok=True)
        gitcli.worktree_add(self.repo, path, commit)
        return path

    def kill_strays(self, slot: str) -> list[int]:
        """Kill processes still running inside a slot's worktree (left by a worker that was
        killed before it could clean up)."""
        return kill_processes_under([self.slot_path(slot)])

    def slots(self) -> list[Path]:
        root = self.state / "worktrees"
        return sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []

    def remove_worktrees(self) -> list[Path]:
        removed = []
        for path in self.slots():
            gitcli.worktree_remove(self.repo, path)
            if path.exists():
                shutil.rmtree(path)
            removed.append(path)
        return removed
