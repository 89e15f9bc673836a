"""One timed benchmark run at a time on this machine (per user).

Workers build and run checks in parallel, but a timed round (both sides of an interleaved
round, a duet round, a baseline run) holds an exclusive `flock` on a file outside every
worktree, so the timed runs of different workers, and of different readfirst runs, never
overlap. The lock belongs to the open file, so a killed holder releases it at once.

The file lives in the user's own `~/.cache/readfirst/locks/` (mode 0700), which the sandbox
hides: a sandboxed candidate can neither hold it nor delete it, and no other user can. An
unsandboxed candidate still could, so a holder is never trusted blindly: each holder writes
its pid and how long it may legitimately hold the lock into the file; a waiter logs who holds
it (from /proc/locks) after TIMED_LOCK_LOG_AFTER seconds, and gives up, failing the round with
a message naming the holder, once it has waited past its own step timeout and past what the
holder announced (a holder that announced nothing, or is not who it says, gets no extra time).
A lock file deleted under a holder is noticed (its inode changed) and taken again.
"""

from __future__ import annotations

import fcntl
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from readfirst.core import constants as C
from readfirst.core.config import Spec

ENV_PATH = "READFIRST_TIMED_LOCK"


class LockTimeout(Exception):
    pass


def lock_path() -> Path:
    override = os.environ.get(ENV_PATH)
    return Path(override) if override else Path.home() / C.TIMED_LOCK_FILE


def _holder(path: Path) -> int | None:
    """The pid holding an flock on `path` (Linux /proc/locks), if it can be told."""
    try:
        st = path.stat()
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if len(fields) > 5 and fields[1] == "FLOCK" and "->" not in fields:
            _major, _minor, inode = fields[5].split(":")
            if int(inode) == st.st_ino:
                return int(fields[4])
    return None


def _describe(pid: int | None) -> str:
    if pid is None:
        return "an unknown process"
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(
            errors="replace").strip()
    except OSError:
        cmd = ""
    return f"pid {pid}" + (f" ({cmd[:120]})" if cmd else "")


def _announced(fd: int, holder: int | None) -> float:
    """Until when (epoch seconds) the holder said it may hold the lock; 0 if it said nothing
    or is not the process that said it."""
    try:
        pid, until = os.pread(fd, 64, 0).decode().split()
        return float(until) if holder is not None and int(pid) == holder else 0.0
    except (OSError, ValueError):
        return 0.0


def open_lock(path: Path) -> int:
    """The lock file, opened (created with its 0700 directory if need be)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)


def _acquire(path: Path, max_wait: float) -> tuple[int, float]:
    """The locked file's descriptor and the seconds spent waiting for it."""
    started = time.monotonic()
    logged = confirmed = False
    delay = 0.005
    fd = open_lock(path)
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pass
        else:
            try:
                same = os.fstat(fd).st_ino == path.stat().st_ino
            except OSError:
                same = False
            if same:
                return fd, time.monotonic() - started
            os.close(fd)  # deleted or replaced under us: lock the file that is there now
            fd = open_lock(path)
            continue
        waited = time.monotonic() - started
        holder = _holder(path)
        grace = _announced(fd, holder) - time.time()
        if waited > C.TIMED_LOCK_LOG_AFTER and not logged:
            print(f"readfirst: waiting for the timed-runs lock {path}, held by "
                  f"{_describe(holder)}", file=sys.stderr, flush=True)
            logged = True
        overdue = (waited > max_wait and grace <= 0) or waited > C.TIMED_LOCK_MAX_WAIT
        if not overdue:
            confirmed = False
        elif not confirmed:  # the holder may have let go since: try once more, now
            confirmed = True
            continue
        else:
            os.close(fd)
            raise LockTimeout(
                f"no timed run possible: the timed-runs lock {path} was held by "
                f"{_describe(holder)} for over {waited:.0f}s, longer than a timed run may "
                "take (the step timeout); if that process is stuck, end it")
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


@contextmanager
def timed_run(max_wait: float = C.TIMED_LOCK_MAX_WAIT, hold: float | None = None
              ) -> Iterator[float]:
    """Hold the per-user timing lock; yields the seconds spent waiting for it. `max_wait`
    bounds the wait for a holder that overstays; `hold` is announced to waiters as how long
    this holder may keep the lock (default: `max_wait`)."""
    path = lock_path()
    fd, waited = _acquire(path, max_wait)
    try:
        until = time.time() + (max_wait if hold is None else hold) + C.TIMED_LOCK_SLACK
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {until:.0f}\n".encode(), 0)
        yield waited
    finally:
        os.close(fd)  # releases the lock


@contextmanager
def timed_runs(failure: type[Exception], step_timeout: float) -> Iterator[None]:
    """`timed_run` for the measurement engine, bounded by the step timeout (a round holds the
    lock for at most both sides' runs): a lock that cannot be had fails the round as the
    candidate's benchmark step (`failure(role, step, reason)`), not the whole loop."""
    bound = 2 * step_timeout + C.TIMED_LOCK_SLACK
    try:
        with timed_run(max_wait=bound, hold=bound):
            yield
    except LockTimeout as e:
        raise failure("cand", "bench", str(e)) from None


def quiet_timed_runs(setting: object, workers: int, bench_threads: int, kind: str) -> bool:
    """Whether local workers' builds and checks pause during another's timed run: as set,
    or ("auto") when each worker's timed run and a build beside it could not have a core each
    (workers x (benchmark threads + 1) > cores)."""
    if kind != "local" or workers < 2:
        return False
    if setting != "auto":
        return bool(setting)
    return workers * (bench_threads + 1) > len(os.sched_getaffinity(0))


def oversubscribed(workers: int, spec: Spec, executor: str | None) -> str | None:
    """A warning when local workers x benchmark threads exceed this machine's cores."""
    kind = executor or str(spec.executor.get("kind", "local"))
    cores = len(os.sched_getaffinity(0))
    threads = spec.target.bench_threads
    if kind != "local" or workers * threads <= cores:
        return None
    quiet = quiet_timed_runs(spec.executor.get("quiet_timed_runs", "auto"), workers, threads,
                             kind)
    beside = ("other workers' builds and checks pause meanwhile" if quiet else
              "but one worker's build or checks still compete with another's timed run")
    return (f"{workers} workers x {threads} benchmark thread(s) = {workers * threads} > "
            f"{cores} cores: timed runs take turns (a machine-wide lock), {beside}; use fewer "
            "workers, or set [target] bench_threads to what the benchmark really uses")
