"""One timed benchmark run at a time on this machine.

Workers build and run checks in parallel, but a timed round (both sides of an interleaved
round, a duet round, a baseline run) holds an exclusive `flock` on a file outside every
worktree, so the timed runs of different workers, and of different readfirst runs, never
overlap. The lock belongs to the open file, so a killed holder releases it at once.

A hostile candidate could try to hold the lock from a process it leaves behind, stalling the
other workers' timed runs: the waiter gives up after TIMED_LOCK_MAX_WAIT and the round fails
as a benchmark step with that reason, and the loop kills processes left in a worktree.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from readfirst import constants as C
from readfirst.config import Spec

ENV_PATH = "READFIRST_TIMED_LOCK"


class LockTimeout(Exception):
    pass


def lock_path() -> Path:
    return Path(os.environ.get(ENV_PATH) or C.TIMED_LOCK_FILE)


@contextmanager
def timed_run(max_wait: float = C.TIMED_LOCK_MAX_WAIT) -> Iterator[float]:
    """Hold the machine-wide timing lock; yields the seconds spent waiting for it."""
    path = lock_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
    started = time.monotonic()
    try:
        delay = 0.005
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() - started > max_wait:
                    raise LockTimeout(
                        f"no timed run possible: the machine-wide lock {path} was held by "
                        f"another process for over {max_wait:.0f}s") from None
                time.sleep(delay)
                delay = min(delay * 2, 0.1)
        yield time.monotonic() - started
    finally:
        os.close(fd)  # releases the lock


@contextmanager
def timed_runs(failure: type[Exception]) -> Iterator[None]:
    """`timed_run` for the measurement engine: a lock that cannot be had fails the round as
    the candidate's benchmark step (`failure(role, step, reason)`), not the whole loop."""
    try:
        with timed_run():
            yield
    except LockTimeout as e:
        raise failure("cand", "bench", str(e)) from None


def oversubscribed(workers: int, spec: Spec, executor: str | None) -> str | None:
    """A warning when local workers x benchmark threads exceed this machine's cores."""
    kind = executor or str(spec.executor.get("kind", "local"))
    cores = len(os.sched_getaffinity(0))
    threads = spec.target.bench_threads
    if kind != "local" or workers * threads <= cores:
        return None
    return (f"{workers} workers x {threads} benchmark thread(s) = {workers * threads} > "
            f"{cores} cores: timed runs take turns (a machine-wide lock), but one worker's "
            "build or checks still compete with another's timed run; use fewer workers, or "
            "set [target] bench_threads to what the benchmark really uses")
