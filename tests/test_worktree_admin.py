"""Workers create their worktrees at the same time (issue 10, item 5).

`git worktree prune`, run by one worker before its `git worktree add`, deleted the admin entry
of another worker's add that was half-way (`could not open '.git/worktrees/w1-base/gitdir'`):
the loser's experiment ended `worker_died`. Seen in a fresh-clone CI run under load; without
the lock this test failed 8 of its 36 checkouts.
"""

from __future__ import annotations

from multiprocessing import get_context
from pathlib import Path

from conftest import make_target

from readfirst.vcs import gitcli
from readfirst.vcs.workspace import Workspace


def _checkout(args: tuple[str, str]) -> str | None:
    root, slot = args
    try:
        Workspace(Path(root)).checkout(slot, "HEAD")
    except Exception as e:  # noqa: BLE001 - reported back to the test
        return f"{slot}: {e}"
    return None


def test_many_processes_create_worktrees_at_once(tmp_path: Path) -> None:
    target = make_target(tmp_path / "target")
    slots = [(str(target), f"p{i}-s{j}") for i in range(6) for j in range(6)]
    with get_context("spawn").Pool(6) as pool:
        errors = [e for e in pool.map(_checkout, slots, chunksize=1) if e]
    assert errors == []
    ws = Workspace(target)
    head = gitcli.git(target, "rev-parse", "HEAD")
    assert len(ws.slots()) == 36
    assert all(gitcli.head_of(p) == head for p in ws.slots())
    assert len(ws.remove_worktrees()) == 36
    assert gitcli.git(target, "worktree", "list").count("\n") == 0
