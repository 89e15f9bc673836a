"""The target's `.readfirst/` directory: persistent worktrees, logs and the journal.

Worktrees live in named slots (`.readfirst/worktrees/<slot>`) that are reused between calls: a
slot is moved to the next commit with `reset --hard` + `clean -fd`, which keeps ignored build
outputs, so the next build is incremental. The user's own working tree is never written.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from readfirst.core.constants import JOURNAL_FILE, STATE_DIR
from readfirst.core.errors import ConfigError
from readfirst.core.target import Target
from readfirst.vcs import gitcli

# Space set aside when a run starts and given back on a fault (disk full), so the journal
# can still mark the run interrupted.
RESERVE_FILE = "reserve"
RESERVE_BYTES = 256 * 1024

# The state directory of the run this process holds (for the one-line fault message).
_LAST_STATE: Path | None = None


def target_at(path: Path) -> Target:
    """The target at `path`: the directory, the git work tree around it, and the way between."""
    root = path.resolve()
    repo = gitcli.repo_root(root).resolve()
    rel = root.relative_to(repo).as_posix()
    return Target(root, repo, "" if rel == "." else rel)


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
    def run_lock(self) -> Iterator[None]:
        """One readfirst run per target: an exclusive lock on `.readfirst/run.lock`, held for
        the whole command (its workers run under it). Steps never see `.readfirst/`, so a
        candidate cannot release it."""
        global _LAST_STATE
        _LAST_STATE = self.state
        created = not self.state.exists()
        self.ensure()
        path = self.state / "run.lock"
        try:
            with self._hold(path):
                yield
        finally:  # bad input ends a first run before anything is written: leave nothing
            with contextlib.suppress(OSError):
                (self.state / RESERVE_FILE).unlink(missing_ok=True)
            if created and {p.name for p in self.state.iterdir()} <= {".gitignore", "run.lock"}:
                shutil.rmtree(self.state, ignore_errors=True)

    @contextmanager
    def _hold(self, path: Path) -> Iterator[None]:
        with open(path, "a+") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.seek(0)
                holder = fh.read().strip() or "?"
                raise ConfigError(
                    f"{self.state}: another readfirst run (pid {holder}) is using this target; "
                    "wait for it to finish or stop it first"
                ) from None
            fh.seek(0)
            fh.truncate()
            fh.write(str(os.getpid()))
            fh.flush()
            reserve = self.state / RESERVE_FILE
            with contextlib.suppress(OSError):  # room to mark the run interrupted if full
                reserve.write_bytes(b"\0" * RESERVE_BYTES)
            yield

    @contextmanager
    def lock_slot(self, slot: str) -> Iterator[None]:
        """One readfirst process per slot at a time."""
        held = contextlib.ExitStack()
        try:
            fh = held.enter_context(self._locked(f"{slot}.lock", fcntl.LOCK_NB))
        except BlockingIOError:
            raise ConfigError(
                f"worktree slot {slot!r} is in use by another readfirst process"
            ) from None
        with held:
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
        with self._worktree_admin():
            gitcli.git(self.repo, "worktree", "prune", check=False)
            path.parent.mkdir(parents=True, exist_ok=True)
            gitcli.worktree_add(self.repo, path, commit)
        return path

    @contextmanager
    def _worktree_admin(self) -> Iterator[None]:
        """One `git worktree add/remove/prune` at a time across readfirst's processes: a prune
        run while another worker's add is half-way deletes that worktree's admin entry."""
        with self._locked("worktree-admin.lock"):
            yield

    @contextmanager
    def _locked(self, name: str, flags: int = 0) -> Iterator[TextIO]:
        """An exclusive flock on `.readfirst/locks/<name>` (`flags`: fcntl.LOCK_NB to raise
        BlockingIOError instead of waiting)."""
        lock_dir = self.state / "locks"
        lock_dir.mkdir(parents=True, exist_ok=True)
        with open(lock_dir / name, "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX | flags)
            yield fh

    def slots(self) -> list[Path]:
        root = self.state / "worktrees"
        return sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []

    def remove_worktrees(self) -> list[Path]:
        removed = []
        for path in self.slots():
            with self._worktree_admin():
                gitcli.worktree_remove(self.repo, path)
            if path.exists():
                shutil.rmtree(path)
            removed.append(path)
        return removed


_FAULTS = {
    errno.EROFS: "read-only file system",
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
}
_FAULT_WORDS = {"Read-only file system": errno.EROFS, "readonly database": errno.EROFS,
                "No space left": errno.ENOSPC, "disk is full": errno.ENOSPC,
                "unable to open database": errno.EACCES, "Permission denied": errno.EACCES}


def describe_fault(e: BaseException) -> ConfigError | None:
    """A read-only, full or unwritable state directory or worktree as one line (exit 2),
    the run marked interrupted; None for errors that are not such faults."""
    code = e.errno if isinstance(e, OSError) else None
    if code not in _FAULTS:
        code = next((c for w, c in _FAULT_WORDS.items() if w in str(e)), None)
    if code is None:
        return None
    where = (e.filename if isinstance(e, OSError) and e.filename else None) or (
        _LAST_STATE / JOURNAL_FILE if isinstance(e, sqlite3.Error) and _LAST_STATE else
        _LAST_STATE)
    if _LAST_STATE is not None:
        with contextlib.suppress(OSError):
            (_LAST_STATE / RESERVE_FILE).unlink(missing_ok=True)
        mark_interrupted(_LAST_STATE, os.getpid())
    return ConfigError(
        f"{where}: {_FAULTS[code]}; readfirst needs {STATE_DIR}/ (journal, logs, worktrees) "
        "writable with free space: free some space or make it writable, then "
        "`readfirst run --resume` (or run the command again)"
    )


def mark_interrupted(state: Path, pid: int) -> None:
    """Best effort after a fault (disk full, read-only): every run of process `pid` still
    marked running becomes interrupted, so none is left `running`."""
    path = state / JOURNAL_FILE
    if not path.is_file():
        return
    try:
        db = sqlite3.connect(path, timeout=5)
        with db:
            for table in ("runs", "loop_runs"):
                db.execute(f"UPDATE {table} SET status = 'interrupted' "  # noqa: S608
                           "WHERE status = 'running' AND pid = ?", (pid,))
        db.close()
    except sqlite3.Error:
        pass
