"""The local executor: W workers on this machine, each a subprocess with its own worktrees.

Each worker keeps a persistent pair of worktrees (`<worker>-base`, `<worker>-cand`) and their
build outputs across experiments, so builds are incremental and disk use is bounded by W. A
worker runs in its own process group (killed whole on cancel), optionally pinned to its own CPUs,
and receives SIGTERM if the loop process dies.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from readfirst.constants import KILL_GRACE_SECONDS
from readfirst.executors import Handle, Job, JobResult
from readfirst.process import signal_group
from readfirst.workspace import Workspace

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Linux: SIGTERM this child when the loop process dies (even by kill -9)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class _Running:
    handle: Handle
    proc: subprocess.Popen[bytes]
    result_path: Path
    log_path: Path


class LocalExecutor:
    def __init__(self, workspace: Workspace, jobs_dir: Path, workers: int,
                 pin_cpus: bool = False) -> None:
        self.ws = workspace
        self.jobs_dir = jobs_dir
        self.workers = [f"w{i}" for i in range(workers)]
        self.cpus = _cpu_split(workers) if pin_cpus else {}
        self._running: dict[int, _Running] = {}

    def idle_workers(self) -> list[str]:
        busy = {r.handle.worker for r in self._running.values()}
        return [w for w in self.workers if w not in busy]

    def submit(self, job: Job, worker: str) -> Handle:
        if worker not in self.idle_workers():
            raise RuntimeError(f"worker {worker} is busy")
        for slot in (f"{worker}-base", f"{worker}-cand"):
            self.ws.kill_strays(slot)  # leftovers of a worker killed earlier
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        job_path = self.jobs_dir / f"{job.exp_id}.job.json"
        result_path = self.jobs_dir / f"{job.exp_id}.result.json"
        log_path = self.jobs_dir / f"{job.exp_id}.log"
        result_path.unlink(missing_ok=True)
        job_path.write_text(json.dumps(job.to_dict()))
        cpus = self.cpus.get(worker)

        def setup() -> None:
            _die_with_parent()
            if cpus:
                os.sched_setaffinity(0, cpus)

        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "readfirst.worker", str(job_path), str(result_path),
                 worker],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, preexec_fn=setup,
            )
        handle = Handle(job.exp_id, worker, proc.pid)
        self._running[job.exp_id] = _Running(handle, proc, result_path, log_path)
        return handle

    def poll(self, handle: Handle) -> JobResult | None:
        run = self._running.get(handle.exp_id)
        if run is None or run.proc.poll() is None:
            return None
        del self._running[handle.exp_id]
        if run.result_path.is_file():
            return JobResult.from_dict(json.loads(run.result_path.read_text()))
        code = run.proc.returncode
        how = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
        tail = run.log_path.read_text(errors="replace").strip().splitlines()[-5:]
        return JobResult(handle.exp_id, handle.worker, "worker_died",
                         reason=f"worker {handle.worker} died ({how})"
                         + (": " + " | ".join(tail) if tail else ""))

    def wait_any(self, handles: list[Handle], timeout: float | None = None) -> list[JobResult]:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            done = [r for r in (self.poll(h) for h in handles) if r is not None]
            if done or (deadline is not None and time.monotonic() >= deadline):
                return done
            time.sleep(0.05)

    def cancel(self, handle: Handle) -> None:
        run = self._running.pop(handle.exp_id, None)
        if run is None:
            return
        signal_group(run.proc.pid, signal.SIGTERM)  # the worker kills its own steps
        try:
            run.proc.wait(timeout=KILL_GRACE_SECONDS * 3)
        except subprocess.TimeoutExpired:
            signal_group(run.proc.pid, signal.SIGKILL)
            run.proc.wait()
        for slot in (f"{handle.worker}-base", f"{handle.worker}-cand"):
            self.ws.kill_strays(slot)

    def close(self) -> None:
        for run in list(self._running.values()):
            self.cancel(run.handle)


def _cpu_split(workers: int) -> dict[str, set[int]]:
    """Disjoint CPU sets, one per worker (empty when there are fewer CPUs than workers)."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < workers:
        return {}
    per = len(cpus) // workers
    return {f"w{i}": set(cpus[i * per:(i + 1) * per]) for i in range(workers)}
