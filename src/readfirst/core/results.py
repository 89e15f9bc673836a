"""The data that crosses stage boundaries, typed: verdicts, compare results, job results,
experiments and run summaries. A result that comes back from a worker (a file, Ray, SkyPilot)
is validated here; `--json` prints their dumps. Field names are the ones users rely on."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Verdict = Literal["improved", "regressed", "no_change", "inconclusive", "checks_failed",
                  "refused", "crash", "suspect"]
VERDICTS: tuple[str, ...] = Verdict.__args__  # type: ignore[attr-defined]
# finished: a verdict was reached; skipped: the diff did not apply; base_failed: the baseline
# itself could not be measured; worker_died: no result came back; dry_run: nothing launched;
# cancelled: stopped by the loop
JobStatus = Literal["finished", "skipped", "base_failed", "worker_died", "dry_run", "cancelled"]
ExperimentStatus = Literal["running", "finished", "skipped", "base_failed", "worker_died",
                           "dry_run", "cancelled"]
ExperimentKind = Literal["explore", "confirm", "noise", "verify"]
Outcome = Literal["kept", "discarded"]
RunStatus = Literal["running", "done", "interrupted"]


class _Open(BaseModel):
    """Known fields are checked; others (executor details, logs) are kept as they are."""

    model_config = ConfigDict(extra="allow")


class Side(_Open):
    median: float | None = None
    mean: float | None = None
    stddev: float | None = None
    n: int = 0


class CompareResult(_Open):
    """What `compare()` and a worker return for one candidate (`compare --json`)."""

    verdict: Verdict
    reason: str = ""
    ratio: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    ci_level: float | None = None
    p_value: float | None = None
    rounds: int = 0
    base: Side | None = None
    cand: Side | None = None
    flags: list[str] = []
    metric: dict[str, Any] = {}


class Experiment(_Open):
    """One row of a run summary (`run --json`, `status --json`)."""

    seq: int
    wave: int
    kind: ExperimentKind
    candidate_id: str
    title: str
    source: str
    provenance: list[str] = []
    rationale: str = ""
    parent: str | None = None  # the candidate this one repairs
    attempt: int = 0  # repair attempt (0: not a repair)
    status: ExperimentStatus
    verdict: Verdict | None = None
    outcome: Outcome | None = None
    reason: str = ""
    ratio: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    p_value: float | None = None
    base: dict[str, Any] | None = None
    cand: dict[str, Any] | None = None
    flags: list[str] = []
    worker: str | None = None
    baseline: str
    cand_commit: str | None = None
    landed_commit: str | None = None
    timings: dict[str, float] = {}
    started: float
    finished: float | None = None


class Cost(BaseModel):
    compute_usd: float = 0.0
    api_usd: float = 0.0
    total_usd: float = 0.0


class RunSummary(_Open):
    """A loop run: what `run --json` prints and the report reads."""

    run_id: str
    status: RunStatus
    target: str
    branch: str
    base_commit: str
    final_commit: str
    metric: dict[str, Any] = {}
    started: float
    finished: float | None = None
    stop_reason: str | None = None
    workers: int | None = None
    proposer: str | None = None
    experiments: list[Experiment] = []
    report: str | None = None
    api_cost: dict[str, float] = {}
    cost: Cost = Field(default_factory=Cost)
    workers_noise: dict[str, dict[str, Any]] = {}
