"""What executors exchange: `Job` (plain JSON data), `JobResult` (validated when made or when it
comes back), `Handle`, and the `Executor` protocol."""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from pydantic.dataclasses import dataclass as validated

from readfirst.core.results import CompareResult, JobStatus, Verdict


@dataclass(frozen=True)
class Job:
    exp_id: int
    target_root: str  # the target's directory (holds readfirst.toml)
    baseline: str  # commit sha
    candidate: dict[str, Any]  # Candidate.to_dict()
    spec: dict[str, Any]  # Spec.model_dump(): the judge's config travels with the job
    clean_build: bool = False  # confirmations rebuild the candidate from a clean tree
    # "experiment": apply the candidate and compare; "noise": compare the baseline with itself
    # (A-vs-A rounds that measure how noisy a worker is; the candidate is ignored)
    kind: str = "experiment"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@validated(frozen=True)
class JobResult:
    exp_id: int
    worker: str
    status: JobStatus
    verdict: Verdict | None = None
    reason: str = ""
    result: dict[str, Any] | None = None  # the compare verdict object (CompareResult's fields)
    cand_commit: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    sandboxed: bool | None = None  # did the steps run in the sandbox (None: nothing ran)
    sandbox_note: str = ""  # why not, when the worker's machine cannot sandbox (one line)

    def __post_init__(self) -> None:
        if self.result is not None and "verdict" in self.result:
            CompareResult.model_validate(self.result)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> JobResult:
        return cls(**d)


def warn_unsandboxed(res: JobResult, seen: set[str]) -> None:
    """One warning per node whose steps could not run in the sandbox they were asked to."""
    if res.sandbox_note and res.worker not in seen:
        seen.add(res.worker)
        print(f"readfirst: warning: worker {res.worker}: {res.sandbox_note}", file=sys.stderr,
              flush=True)


@dataclass(frozen=True)
class Handle:
    exp_id: int
    worker: str
    pid: int | None = None


class Executor(Protocol):
    workers: list[str]

    def idle_workers(self) -> list[str]: ...

    def submit(self, job: Job, worker: str) -> Handle: ...

    def poll(self, handle: Handle) -> JobResult | None: ...

    def wait_any(self, handles: list[Handle], timeout: float | None = None) -> list[JobResult]:
        """Results of the handles that finished (at least one unless the timeout passed)."""
        ...

    def cancel(self, handle: Handle) -> None: ...

    def close(self) -> None: ...
