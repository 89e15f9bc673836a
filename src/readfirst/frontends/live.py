"""The terminal's live views of a loop run: one line per running experiment (stage, rounds
done of the most, the change so far with its CI, elapsed, ETA), read from the journal's
progress table. `LiveRun` draws them under `run` / `demo` while the loop works in this process;
`watch` follows any run for `status --watch`."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.text import Text

from readfirst.store.progress import WorkerState, live_states, state_line


def _connect(journal: Path) -> sqlite3.Connection | None:
    if not journal.exists():
        return None
    try:
        return sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=2)
    except sqlite3.Error:
        return None


def read_states(journal: Path, loop_id: str | None = None) -> tuple[str | None, list[WorkerState]]:
    """(loop id, its running experiments); the loop run of this process when no id is given."""
    db = _connect(journal)
    if db is None:
        return loop_id, []
    try:
        if loop_id is None:
            row = db.execute("SELECT id FROM loop_runs WHERE pid = ? AND status = 'running'"
                             " ORDER BY started DESC LIMIT 1", (os.getpid(),)).fetchone()
            loop_id = row[0] if row else None
        return loop_id, live_states(db, loop_id) if loop_id else []
    except sqlite3.Error:
        return loop_id, []
    finally:
        db.close()


def lines(states: list[WorkerState]) -> RenderableType:
    return Group(*(Text(state_line(s), no_wrap=True, overflow="ellipsis") for s in states))


class LiveRun:
    """Live worker lines on a terminal while this process runs the loop; `say` prints above
    them. Off a terminal only the `say` lines are printed."""

    def __init__(self, console: Console, journal: Path, enabled: bool) -> None:
        self.console, self.journal = console, journal
        self.live: Live | None = None
        if enabled and console.is_terminal:
            self.live = Live(console=console, refresh_per_second=2, transient=True,
                             get_renderable=self._render)

    def _render(self) -> RenderableType:
        _id, states = read_states(self.journal)
        return lines(states)

    def say(self, message: str) -> None:
        self.console.print(message, markup=False, highlight=False)

    def __enter__(self) -> LiveRun:
        if self.live is not None:
            self.live.start()
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.live is not None:
            self.live.stop()


def watch(console: Console, journal: Path, summary_of: Callable[[], dict[str, Any]],
          render_table: Callable[[dict[str, Any]], RenderableType],
          interval: float = 1.0) -> dict[str, Any]:
    """Follow a run until it is no longer running; returns its last summary. On a terminal
    the table and worker lines are redrawn in place; elsewhere each change of the worker lines
    is printed once, with the time."""
    summary = summary_of()
    if console.is_terminal:
        with Live(console=console, refresh_per_second=2) as live:
            while True:
                _id, states = read_states(journal, summary["run_id"])
                live.update(Group(render_table(summary), lines(states)))
                if summary["status"] != "running":
                    return summary
                time.sleep(interval)
                summary = summary_of()
    last: list[str] = []
    while summary["status"] == "running":
        _id, states = read_states(journal, summary["run_id"])
        now = [state_line(s).split("  ", 1)[0] + "  " + _stable(s) for s in states]
        if now != last:
            stamp = time.strftime("%H:%M:%S")
            for s in states:
                console.print(f"{stamp}  {state_line(s)}", markup=False, highlight=False,
                              soft_wrap=True)
            last = now
        time.sleep(interval)
        summary = summary_of()
    console.print(render_table(summary))
    return summary


def _stable(s: WorkerState) -> str:
    """What changes when the experiment moves on (not the ticking clock)."""
    return f"{s.seq} {s.stage} {s.rounds_done} {s.ratio}"
