"""The local executor: W persistent workers on this machine, each with its own worktrees.

Each worker is one long-lived process (`python -m readfirst.loop.worker --serve W`) that imports
readfirst, numpy and scipy once and then runs the experiments it is handed, one at a time, so an
experiment does not pay an interpreter start and those imports. A job is a line on the worker's
stdin naming its job, result and log files; the result file is written atomically when the job
ends. Each worker keeps a pair of worktrees (`<worker>-base`, `<worker>-cand`) and their build
outputs across experiments, so builds are incremental and disk use is bounded by W. Every
build / benchmark / checks step still runs through process.py in its own process group under
its keeper or sandbox (everything it starts ends with it, on timeout or cancel); the worker runs
in its own process group too, optionally pinned to its own CPUs, and receives SIGTERM if the
loop process dies. Cancelling a job kills its worker and what is below it (by ownership, never
by directory); the next job on that worker starts a fresh one.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from readfirst.core.constants import KILL_GRACE_SECONDS
from readfirst.loop.executors.base import Handle, Job, JobResult
from readfirst.measure.process import end_process
from readfirst.measure.yielding import ENV_QUIET
from readfirst.vcs.workspace import Workspace

PR_SET_PDEATHSIG = 1


PARENT_ENV = "READFIRST_WORKER_PARENT"  # the loop's pid, for the worker's first check


def _die_with_parent() -> None:
    """Linux: SIGTERM this child when the loop process dies (even by kill -9)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """SIGINT and SIGTERM are noted, not acted on, inside the block; the first one noted is
    handed to its handler after it (the main thread only: others cannot set handlers)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    noted: list[int] = []
    old = {sig: signal.signal(sig, lambda signo, _f: noted.append(signo))
           for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        if noted and callable(old[noted[0]]):
            old[noted[0]](noted[0], None)  # e.g. KeyboardInterrupt, now that it is safe
        elif noted and old[noted[0]] == signal.SIG_DFL:
            os.kill(os.getpid(), noted[0])


def die_with_the_loop() -> bool:
    """In a local worker: SIGTERM when the loop process dies; False if it is gone already."""
    _die_with_parent()
    parent = os.environ.get(PARENT_ENV)
    return parent is None or os.getppid() == int(parent)


@dataclass
class _Running:
    handle: Handle
    proc: subprocess.Popen[bytes]
    result_path: Path
    log_path: Path


class LocalExecutor:
    def __init__(self, workspace: Workspace, jobs_dir: Path, workers: int,
                 pin_cpus: bool = False, quiet_timed: bool = False) -> None:
        self.ws = workspace
        self.jobs_dir = jobs_dir
        self.workers = [f"w{i}" for i in range(workers)]
        self.cpus = _cpu_split(workers) if pin_cpus else {}
        self.env = {PARENT_ENV: str(os.getpid()), **({ENV_QUIET: "1"} if quiet_timed else {})}
        self._running: dict[int, _Running] = {}
        self._procs: dict[str, subprocess.Popen[bytes]] = {}  # worker -> its live process

    def idle_workers(self) -> list[str]:
        busy = {r.handle.worker for r in self._running.values()}
        return [w for w in self.workers if w not in busy]

    def _process(self, worker: str) -> subprocess.Popen[bytes]:
        """The worker's process, started on first use (and again after it died)."""
        proc = self._procs.get(worker)
        if proc is not None and proc.poll() is None:
            return proc
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        # No preexec_fn: with one, Python runs its at-fork hooks in this process, and a
        # Ctrl-C landing during the fork is raised inside one of them (logging's), which only
        # prints it: the run would go on. The worker sets its parent-death signal itself.
        # Ctrl-C and SIGTERM wait until the worker is on the books (`close` ends it): raised
        # inside Popen, they would leave a worker nobody knows of.
        with _signals_deferred():
            with open(self.jobs_dir / f"{worker}.worker.log", "ab") as log:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "readfirst.loop.worker", "--serve", worker],
                    stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True, env={**os.environ, **self.env},
                )
            self._procs[worker] = proc
        if self.cpus.get(worker):
            with contextlib.suppress(OSError):  # already gone: its job will say so
                os.sched_setaffinity(proc.pid, self.cpus[worker])
        return proc

    def submit(self, job: Job, worker: str) -> Handle:
        if worker not in self.idle_workers():
            raise RuntimeError(f"worker {worker} is busy")
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        job_path = self.jobs_dir / f"{job.exp_id}.job.json"
        result_path = self.jobs_dir / f"{job.exp_id}.result.json"
        log_path = self.jobs_dir / f"{job.exp_id}.log"
        result_path.unlink(missing_ok=True)
        log_path.write_bytes(b"")
        job_path.write_text(json.dumps(job.to_dict()))
        line = json.dumps({"job": str(job_path), "result": str(result_path),
                           "log": str(log_path)}) + "\n"
        for _attempt in range(2):  # an idle worker that died is replaced, once
            proc = self._process(worker)
            try:
                assert proc.stdin is not None
                proc.stdin.write(line.encode())
                proc.stdin.flush()
                break
            except (BrokenPipeError, OSError):
                proc.wait()  # it died: the next _process starts a new one
        handle = Handle(job.exp_id, worker, proc.pid)
        self._running[job.exp_id] = _Running(handle, proc, result_path, log_path)
        return handle

    def poll(self, handle: Handle) -> JobResult | None:
        run = self._running.get(handle.exp_id)
        if run is None:
            return None
        if run.result_path.is_file():
            del self._running[handle.exp_id]
            return _read_result(run.result_path, handle)
        if run.proc.poll() is None:
            return None
        del self._running[handle.exp_id]
        if run.result_path.is_file():  # written just before it exited
            return _read_result(run.result_path, handle)
        code = run.proc.returncode
        how = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
        tail = _tail(run.log_path) or _tail(self.jobs_dir / f"{handle.worker}.worker.log")
        return JobResult(handle.exp_id, handle.worker, "worker_died",
                         reason=f"worker {handle.worker} died ({how})"
                         + (": " + " | ".join(tail) if tail else ""))

    def wait_any(self, handles: list[Handle], timeout: float | None = None) -> list[JobResult]:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            done = [r for r in (self.poll(h) for h in handles) if r is not None]
            if done or (deadline is not None and time.monotonic() >= deadline):
                return done
            time.sleep(0.02)

    def cancel(self, handle: Handle) -> None:
        run = self._running.pop(handle.exp_id, None)
        if run is None:
            return
        self._stop(handle.worker, run.proc)

    def _stop(self, worker: str, proc: subprocess.Popen[bytes]) -> None:
        """End a worker and everything it started (its steps' keepers end theirs as SIGTERM
        unwinds it; a worker that does not exit is frozen and killed with all below it)."""
        end_process(proc, KILL_GRACE_SECONDS * 3)
        if self._procs.get(worker) is proc:
            del self._procs[worker]

    def close(self) -> None:
        for run in list(self._running.values()):
            self.cancel(run.handle)
        for worker, proc in list(self._procs.items()):
            with contextlib.suppress(OSError, ValueError):
                assert proc.stdin is not None
                proc.stdin.close()  # an idle worker exits at end of input
            try:
                proc.wait(timeout=KILL_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                self._stop(worker, proc)
        self._procs.clear()


def _tail(path: Path, lines: int = 5) -> list[str]:
    try:
        return path.read_text(errors="replace").strip().splitlines()[-lines:]
    except OSError:
        return []


def _cpu_split(workers: int) -> dict[str, set[int]]:
    """Disjoint CPU sets, one per worker (empty when there are fewer CPUs than workers)."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < workers:
        return {}
    per = len(cpus) // workers
    return {f"w{i}": set(cpus[i * per:(i + 1) * per]) for i in range(workers)}


def _read_result(path: Path, handle: Handle) -> JobResult:
    """The worker's result file; one that does not validate means no usable result came back."""
    try:
        return JobResult.from_dict(json.loads(path.read_text()))
    except ValueError as e:  # not JSON, or not a JobResult
        return JobResult(handle.exp_id, handle.worker, "worker_died",
                         reason=f"worker {handle.worker} wrote a malformed result: "
                         + str(e).splitlines()[0])
