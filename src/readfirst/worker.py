"""One experiment in one worker: apply the candidate on the baseline, then compare.

Run as `python -m readfirst.worker JOB.json RESULT.json WORKER`; the result file is written
atomically at the end, so a worker that dies leaves no result and is recorded as such.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

from readfirst.candidate import ApplyError, Candidate, apply_candidate
from readfirst.compare import Target, bench, compare
from readfirst.config import Spec
from readfirst.errors import BaseFailedError
from readfirst.executors import Job, JobResult
from readfirst.progress import ProgressBoard
from readfirst.workspace import Workspace


def run_job(job: Job, worker: str) -> JobResult:
    target = Target.at(Path(job.target_root))
    spec = Spec.model_validate(job.spec)
    cand = Candidate.from_dict(job.candidate)
    ws = Workspace(target.root)
    ws.ensure()
    slots = (f"{worker}-base", f"{worker}-cand")
    started = time.perf_counter()
    if job.kind == "noise":  # baseline rounds on this worker: how noisy is it?
        try:
            result = bench(target, job.baseline, spec, max(spec.compare.rounds, 5),
                           slot=slots[0])
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
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(res.to_dict()))
    os.replace(tmp, path)


def _on_sigterm(_signo: int, _frame: object) -> None:
    raise KeyboardInterrupt  # unwinds through RunningStep, which kills its process group


def main(argv: list[str]) -> int:
    job_path, result_path, worker = Path(argv[0]), Path(argv[1]), argv[2]
    signal.signal(signal.SIGTERM, _on_sigterm)
    job = Job(**json.loads(job_path.read_text()))
    try:
        res = run_job(job, worker)
    except KeyboardInterrupt:
        return 130
    write_result(result_path, res)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
