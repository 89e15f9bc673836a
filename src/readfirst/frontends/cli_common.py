"""What the CLI's commands share: the consoles, loading a target, the sandbox decision, the
run lock, progress on stderr, a run's summary from the journal."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from rich.console import Console

from readfirst.core.config import Spec, load_spec
from readfirst.core.errors import ConfigError, ReadfirstError

# Piped output gets a wide page instead of rich's 80 columns, so tables keep one row per line.
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 150)


err = Console(stderr=True, highlight=False, soft_wrap=True)


def fail(e: ReadfirstError) -> NoReturn:
    err.print(f"readfirst: error: {e}", markup=False, soft_wrap=True)
    sys.exit(e.exit_code)


def load_target(directory: Path) -> tuple[Any, Spec]:
    from readfirst.vcs.workspace import target_at

    target = target_at(directory)
    return target, load_spec(target.root)


def sandboxed(spec: Spec, no_sandbox: bool, thinking: bool = False) -> Spec:
    """The spec as it will run: --no-sandbox, or bwrap unusable here (one line, and a
    refusal for proposers whose code is written by a model)."""
    from readfirst.measure.sandbox import probe

    why = None if no_sandbox or not spec.target.sandbox else probe()
    if why is not None and thinking:
        raise ConfigError(f"{why}; LLM and agent candidates only run in the sandbox "
                          "(--no-sandbox runs them unconfined)")
    if why is not None:
        err.print(f"readfirst: warning: {why}; build, benchmark and checks run WITHOUT the "
                  "sandbox", markup=False)
    if no_sandbox or why is not None:
        return spec.model_copy(update={"target": spec.target.model_copy(
            update={"sandbox": False})})
    return spec


def locked(target: Any, work: Callable[[], Any]) -> Any:
    """Run `work` holding the target's run lock (one run per target)."""
    from readfirst.vcs.workspace import Workspace

    with Workspace(target.root).run_lock():
        return work()


def progress_view(enabled: bool):  # type: ignore[no-untyped-def]
    from readfirst.frontends.render import ProgressView

    return ProgressView(err, enabled)


def loop_summary(directory: Path, run_id: str | None) -> dict[str, Any]:
    from readfirst.store.journal import Journal
    from readfirst.store.loop_journal import LoopLog
    from readfirst.vcs.workspace import Workspace, target_at

    ws = Workspace(target_at(directory).root)
    if not ws.journal_path.exists():
        raise ConfigError(f"{ws.state}: no journal yet (run `readfirst run` first)")
    journal = Journal(ws.journal_path)
    try:
        log = LoopLog(journal)
        row = log.get(run_id)
        if row is None:
            raise ConfigError(f"no run {run_id!r} in the journal" if run_id else "no runs yet")
        return log.summary(row["id"])
    finally:
        journal.close()
