"""One experiment in one worker: apply the candidate on the baseline, then compare.

`python -m readfirst.loop.worker --serve WORKER` is the local executor's persistent worker: it reads
one JSON line per job from stdin (`{"job", "result", "log"}` paths), sends its output to the
job's log, runs it, and writes the result file atomically; it exits at end of input. Imports
(readfirst, numpy, scipy) are paid once per worker, not once per experiment.
`python -m readfirst.loop.worker JOB.json RESULT.json WORKER` runs a single job the same way.
A worker that dies leaves no result file and is recorded as such.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import sys
import time
import traceback
from pathlib import Path

from readfirst.core import constants as C
from readfirst.core.candidate import Candidate
from readfirst.core.config import Spec
from readfirst.core.errors import BaseFailedError
from readfirst.core.fsutil import atomic_write
from readfirst.loop.executors.base import Job, JobResult
from readfirst.loop.executors.local import die_with_the_loop
from readfirst.measure.compare import bench, compare
from readfirst.measure.sandbox import probe
from readfirst.store.progress import ProgressBoard
from readfirst.vcs.apply import ApplyError, apply_candidate
from readfirst.vcs.workspace import Workspace, target_at


def run_job(job: Job, worker: str) -> JobResult:
    """The job's result, saying whether its steps ran in the sandbox and, when this machine
    cannot sandbox, why; a model's candidate is refused here then (same rule as locally)."""
    spec = Spec.model_validate(job.spec)
    cand = Candidate.from_dict(job.candidate)
    why = probe() if spec.target.sandbox else None
    note = f"{why}; its steps run WITHOUT the sandbox" if why else ""
    if why and job.kind == "experiment" and cand.source not in C.HUMAN_SOURCES:
        return JobResult(job.exp_id, worker, "skipped", sandboxed=False, sandbox_note=note,
                         reason=f"this worker cannot sandbox ({why}); {cand.source} "
                         "candidates only run in the sandbox (--no-sandbox runs them unconfined)")
    res = _run_job(job, worker, spec, cand)
    return dataclasses.replace(res, sandboxed=spec.target.sandbox and why is None,
                               sandbox_note=note)


def _run_job(job: Job, worker: str, spec: Spec, cand: Candidate) -> JobResult:
    target = target_at(Path(job.target_root))
    ws = Workspace(target.root)
    ws.ensure()
    slots = (f"{worker}-base", f"{worker}-cand")
    started = time.perf_counter()
    if job.kind == "noise":  # baseline rounds on this worker: how noisy is it?
        try:
            result = bench(target, job.baseline, spec,
                           max(spec.compare.rounds, C.BENCH_ROUNDS), slot=slots[0])
        except BaseFailedError as e:
            return JobResult(job.exp_id, worker, "base_failed", reason=str(e))
        return JobResult(job.exp_id, worker, "finished",
                         reason=f"baseline CV {result['cv']:.2%} over {result['n']} runs",
                         result=result, timings={"total": time.perf_counter() - started})
    with ws.lock_slot(slots[1]):
        path = ws.checkout(slots[1], job.baseline)
        try:
            cand_commit = apply_candidate(path, job.baseline, cand)
        except ApplyError as e:
            return JobResult(job.exp_id, worker, "skipped",
                             reason=f"does not apply to {job.baseline[:12]}: {e}",
                             timings={"apply": time.perf_counter() - started})
    applied = time.perf_counter() - started
    board = ProgressBoard(ws.journal_path, job.exp_id, worker)  # for the live views
    try:
        result = compare(target, job.baseline, cand_commit, spec, board.update, slots=slots,
                         clean_cand=job.clean_build)
    except BaseFailedError as e:
        return JobResult(job.exp_id, worker, "base_failed", reason=str(e),
                         cand_commit=cand_commit, timings={"apply": applied})
    finally:
        board.close()
    timings = {"apply": applied, **result.get("timings", {})}
    timings["total"] = time.perf_counter() - started
    return JobResult(job.exp_id, worker, "finished", verdict=result["verdict"],
                     reason=result["reason"], result=result, cand_commit=cand_commit,
                     timings=timings)


def write_result(path: Path, res: JobResult) -> None:
    atomic_write(path, json.dumps(res.to_dict()))


def _on_sigterm(_signo: int, _frame: object) -> None:
    raise KeyboardInterrupt  # unwinds through RunningStep, which kills its process group


def _run_one(job_path: Path, result_path: Path, worker: str) -> None:
    """One job to its result file; a bug in readfirst becomes a worker_died result."""
    job = Job(**json.loads(job_path.read_text()))
    try:
        res = run_job(job, worker)
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as e:  # the worker stays up for the next job; the log has the trace
        traceback.print_exc()
        res = JobResult(job.exp_id, worker, "worker_died",
                        reason=f"worker {worker} failed: {type(e).__name__}: {e}")
    write_result(result_path, res)


def _to_log(path: Path) -> None:
    """Send this process's stdout and stderr (and its children's) to the job's log."""
    sys.stdout.flush()
    sys.stderr.flush()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def serve(worker: str) -> int:
    """Run the jobs named on stdin, one at a time, until end of input."""
    stdin = sys.stdin.buffer
    while True:
        line = stdin.readline()
        if not line:
            return 0
        request = json.loads(line)
        _to_log(Path(request["log"]))
        _run_one(Path(request["job"]), Path(request["result"]), worker)


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        if argv[:1] == ["--serve"]:
            if not die_with_the_loop():  # the loop died while this worker started
                return 130
            return serve(argv[1])
        _run_one(Path(argv[0]), Path(argv[1]), argv[2])
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
