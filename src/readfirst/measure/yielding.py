"""Builds and checks give their cores to timed runs.

Timed runs take turns through the machine-wide lock (`timedlock.py`), but on a machine with
fewer cores than workers need, one worker's build or checks would still compete with another
worker's timed run (on 2 cores with one busy, a build beside a timed run took a third of its
core: a real +9 % win measured as inconclusive). So, when the local executor says so
(`[executor] quiet_timed_runs`), an untimed step stops its own processes (SIGSTOP) while any
other process holds the timed-runs lock, and continues them (SIGCONT) once it is free.

Only the step's own descendants are stopped, never its keeper or bwrap (which must still hear a
timeout or a cancel), and never anything else. Nothing waits on a stopped step while holding the
lock, so this cannot deadlock; a holder that dies releases the lock (it belongs to the open
file), so a paused step never stays paused. The time spent paused does not count against the
step's timeout.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time

from readfirst.core import constants as C
from readfirst.measure.proctree import continue_pids, stop_tree
from readfirst.measure.timedlock import lock_path, open_lock

ENV_QUIET = "READFIRST_QUIET_TIMED_RUNS"  # "1" in local workers that pause untimed steps


def quiet_here() -> bool:
    """Whether this process (a local worker) was told to pause its untimed steps."""
    return os.environ.get(ENV_QUIET) == "1"


def timed_run_in_progress(fd: int) -> bool:
    """Whether another open file holds the timed-runs lock (a shared lock cannot be had)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    fcntl.flock(fd, fcntl.LOCK_UN)
    return False


class Yielder:
    """Pauses the descendants of `root` while a timed run holds the lock, until `done`."""

    def __init__(self, root: int, done: threading.Event) -> None:
        self.root, self.done = root, done
        self.ending = threading.Event()  # the step is being killed: continue it, pause no more
        self._paused = 0.0
        self._since: float | None = None
        self._fd = open_lock(lock_path())
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def paused_seconds(self) -> float:
        """Seconds spent paused so far (the current pause included)."""
        since = self._since
        return self._paused + (time.perf_counter() - since if since is not None else 0.0)

    def stop(self) -> None:
        """No more pauses; continue the step if it is paused. Returns once it is running."""
        self.ending.set()
        self._thread.join()

    def _quiet(self) -> bool:
        return self.done.is_set() or self.ending.is_set()

    def _watch(self) -> None:
        try:
            while not self.done.wait(C.YIELD_POLL_SECONDS) and not self.ending.is_set():
                if timed_run_in_progress(self._fd):
                    self._pause()
        finally:
            os.close(self._fd)

    def _pause(self) -> None:
        self._since = time.perf_counter()
        stopped: set[int] = set()
        try:
            # stopped again each time: the step may not have started its shell yet, or a
            # process it just forked may show up after a scan
            while not self._quiet() and timed_run_in_progress(self._fd):
                stopped.update(stop_tree(self.root))
                time.sleep(C.YIELD_POLL_SECONDS)
        finally:
            continue_pids(list(stopped))
            self._paused += time.perf_counter() - self._since
            self._since = None
