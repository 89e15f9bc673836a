"""`readfirst clean`: remove readfirst's worktrees and, when asked, its run branches.

A careful user expects a clean-up never to lose a result silently: run branches hold the kept
winners, so they are deleted only with `--branches`, each printed with its commit (the way to
restore it), and nothing is removed while a run of this target is still going.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from readfirst.core.errors import ConfigError
from readfirst.store.journal import Journal, _pid_alive
from readfirst.vcs import gitcli
from readfirst.vcs.workspace import Workspace

if TYPE_CHECKING:
    from readfirst.core.target import Target

BRANCH_PREFIX = "readfirst/"


def _running(ws: Workspace) -> list[str]:
    """Runs of this target still in progress on this host (their process alive)."""
    if not ws.journal_path.exists():
        return []
    journal = Journal(ws.journal_path)
    try:
        rows = journal.db.execute(
            "SELECT id, pid FROM loop_runs WHERE status = 'running' AND host = ?",
            (journal.host,)).fetchall()
    except Exception:  # no loop table yet: nothing runs
        return []
    finally:
        journal.close()
    return [f"{r['id']} (pid {r['pid']})" for r in rows if _pid_alive(r["pid"])]


def clean_target(target: Target, with_branches: bool) -> list[str]:
    """Remove worktrees (and run branches when asked); the lines to print."""
    ws = Workspace(target.root)
    running = _running(ws)
    if running:
        raise ConfigError(f"run {', '.join(running)} is in progress; stop it first "
                          "(Ctrl-C, then `readfirst run --resume` later)")
    lines = [f"removed {len(ws.remove_worktrees())} worktree(s)"]
    found = gitcli.branches(target.repo, BRANCH_PREFIX)
    if not found:
        return lines
    if not with_branches:
        lines.append(f"kept {len(found)} run branch(es) ({', '.join(sorted(found))}); "
                     "`readfirst clean --branches` deletes them")
        return lines
    for name, sha in sorted(found.items()):
        gitcli.delete_branch(target.repo, name, sha)
        lines.append(f"deleted branch {name} (was {sha[:12]}; "
                     f"`git branch {name} {sha[:12]}` restores it)")
    return lines
