"""What `Loop.start` and `Loop.resume` build before the loop runs: the journal row, the branch,
the proposer and its first candidates, the executors (and the report the run ends with).
Everything that can fail on bad input (unknown proposer, missing executor extra, bad
[executor] table) fails before the run is created; an ExitStack owns what was opened, so a
failure half-way leaks nothing."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from readfirst.core import constants as C
from readfirst.core.candidate import Candidate
from readfirst.core.config import Spec
from readfirst.core.errors import BudgetExceeded, ConfigError
from readfirst.core.target import Target
from readfirst.loop.executors import make_executor
from readfirst.loop.executors.base import Executor, JobResult
from readfirst.loop.landing import Tried
from readfirst.measure.timedlock import quiet_timed_runs
from readfirst.proposers import get_proposer
from readfirst.proposers.base import Proposer, ProposerContext
from readfirst.store.journal import Journal
from readfirst.store.loop_journal import FINAL_STATUSES, LoopLog
from readfirst.vcs import gitcli
from readfirst.vcs.workspace import Workspace


@dataclass
class LoopOptions:
    proposer: str
    workers: int = 2
    max_experiments: int | None = None
    max_time: float | None = None  # seconds; no new experiment starts after it
    patience: int | None = None  # stop after this many explored candidates in a row without a win
    patches_dir: str | None = None
    pin_cpus: bool = False
    base: str = "HEAD"
    executor: str | None = None  # overrides [executor] kind
    dry_run: bool = False  # remote executors: write what would run, launch nothing
    max_cost: float | None = None  # USD, compute + API; no experiment starts after it
    waves: bool = False  # the old rhythm: a wave of W, wait for all, confirm winners one by one


@dataclass
class NoiseCheck:
    """A-vs-A checks of each worker (on by default on shared remote machines)."""

    enabled: bool = False
    max_cv: float = C.MAX_WORKER_CV
    every: int = C.NOISE_EVERY_WAVES  # waves between two checks of one worker


@dataclass
class Setup:
    target: Target
    spec: Spec
    opts: LoopOptions
    ws: Workspace
    log: LoopLog
    run_id: str
    branch: str
    baseline: str  # the current baseline: the branch head
    proposer: Proposer
    ctx: ProposerContext
    candidates: list[Candidate]
    executor: Executor
    verifier: Executor | None  # a second pool (e.g. arm64) winners must also win on
    noise: NoiseCheck
    cleanup: ExitStack
    resumed: bool = False
    rows: list[Any] = field(default_factory=list)  # the run's journal rows so far


LOOP_TABLE_KEYS = ("proposer", "patches", "workers", "max_experiments", "max_time", "patience",
                   "max_cost", "pin_cpus", "waves", "executor")


def with_loop_table(table: dict[str, Any], root: Path, values: dict[str, Any],
                    from_command_line: set[str]) -> dict[str, Any]:
    """`readfirst run`'s options: the command line's, else `[loop]`'s, else the defaults
    (`[loop] patches` is relative to the target's directory)."""
    out = dict(values)
    for key in LOOP_TABLE_KEYS:
        name = "patches_dir" if key == "patches" else key
        if table.get(key) is not None and name not in from_command_line:
            out[name] = str(root / table[key]) if key == "patches" else table[key]
    return out


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + os.urandom(2).hex()


def open_run(target: Target, spec: Spec, opts: LoopOptions | None, *, resume: bool,
             executor: Executor | None = None, proposer: Proposer | None = None) -> Setup:
    """Validate, propose, make the executors, then create (or reopen) the run."""
    ws = Workspace(target.root)
    with ExitStack() as stack:
        row = None
        if resume:
            if not ws.journal_path.exists():
                raise ConfigError("nothing to resume: no run in this target yet")
            journal = Journal(ws.journal_path)
            stack.callback(journal.close)
            row = LoopLog(journal).get()
            if row is None or row["status"] == "done":
                raise ConfigError("nothing to resume: the last run finished (start a new one)")
            if row["status"] == "running":
                raise ConfigError(f"run {row['id']} is still running (pid {row['pid']})")
            opts = LoopOptions(**json.loads(row["options_json"])["loop"])
            base, run_id = row["base_commit"], row["id"]
        else:
            assert opts is not None
            base, run_id = gitcli.resolve_commit(target.repo, opts.base), new_run_id()
        proposer = proposer or get_proposer(opts.proposer)
        if hasattr(proposer, "close"):
            stack.callback(proposer.close)
        ctx = ProposerContext(repo=target.repo, root=target.root, rel=target.rel, baseline=base,
                              spec=spec, state_dir=ws.state, run_id=run_id,
                              options={"patches_dir": opts.patches_dir})
        try:
            candidates = proposer.propose(ctx)
        except BudgetExceeded:
            candidates = []  # the run starts, and stops at once with the reason
        executor, verifier, noise = _executors(spec, opts, ws, run_id, executor, stack)
        brief = ws.state / "research" / "brief.md"
        ctx.brief = brief if brief.is_file() else None
        if row is not None:
            log = LoopLog(journal)
            branch, baseline = row["branch"], row["baseline"]
            log.reopen(run_id)
            # the journal is the truth; the branch follows it
            gitcli.git(target.repo, "update-ref", f"refs/heads/{branch}", baseline)
        else:
            ws.ensure()
            journal = Journal(ws.journal_path)
            stack.callback(journal.close)
            log = LoopLog(journal)
            branch, baseline = f"readfirst/{run_id}", base
            gitcli.git(target.repo, "update-ref", f"refs/heads/{branch}", base)
            metric = {"name": spec.metric.name, "unit": spec.metric.unit,
                      "direction": spec.metric.direction}
            log.create(run_id, target.root, branch, base,
                       {"loop": asdict(opts), "metric": metric, "workers": opts.workers,
                        "proposer": opts.proposer})
        return Setup(target, spec, opts, ws, log, run_id, branch, baseline, proposer, ctx,
                     candidates, executor, verifier, noise, stack.pop_all(),
                     resumed=row is not None, rows=log.experiments(run_id))
    raise AssertionError("unreachable")  # pragma: no cover


def _executors(spec: Spec, opts: LoopOptions, ws: Workspace, run_id: str,
               given: Executor | None, stack: ExitStack
               ) -> tuple[Executor, Executor | None, NoiseCheck]:
    """The executor (and verify pool) from `[executor]` and the command line."""
    ex_opts = dict(spec.executor)
    kind = opts.executor or str(ex_opts.pop("kind", "local"))
    ex_opts.pop("kind", None)
    verify_opts = ex_opts.pop("verify", None)
    if opts.dry_run:
        ex_opts["dry_run"] = True
    jobs_dir = ws.state / "loops" / run_id / "jobs"
    # On shared remote machines noisy neighbours are the norm, so workers are checked by
    # default there; locally the paired rounds already absorb a busy laptop's noise.
    noise = NoiseCheck(
        enabled=bool(ex_opts.pop("noise_check", kind in ("ray", "skypilot")))
        and not opts.dry_run,
        max_cv=float(ex_opts.pop("max_worker_cv", C.MAX_WORKER_CV)),
        every=int(ex_opts.pop("noise_every", C.NOISE_EVERY_WAVES)))
    quiet = quiet_timed_runs(ex_opts.pop("quiet_timed_runs", "auto"), opts.workers,
                             spec.target.bench_threads, kind)
    executor = given or make_executor(kind, ws, jobs_dir, opts.workers, pin_cpus=opts.pin_cpus,
                                      options=ex_opts, quiet_timed=quiet)
    stack.callback(executor.close)
    verifier = None
    if isinstance(verify_opts, dict):
        vo = dict(verify_opts)
        verifier = make_executor(str(vo.pop("kind", "local")), ws, jobs_dir / "verify", 1,
                                 options=vo)
        stack.callback(verifier.close)
    return executor, verifier, noise


@dataclass
class Restored:
    """Where a run stands by its journal rows (nothing, for a new run)."""

    winners: list[Tried]  # explorations that won but were not confirmed yet
    todo: list[Candidate]  # the proposer's candidates not finished yet
    explored: int
    nonwins: int  # explorations in a row since the last kept winner
    wave: int  # the next wave's number


def restore(log: LoopLog, rows: list[Any], candidates: list[Candidate]) -> Restored:
    """What the journal says is done. A confirmation that came back but had not landed
    when the run was cut off is discarded: its winner is confirmed again."""
    # wave 0 holds what the proposer itself skipped: recorded, but not an experiment
    explored = [r for r in rows if r["kind"] == "explore" and r["wave"] > 0
                and r["status"] in FINAL_STATUSES]
    by_id = {c.id: c for c in candidates}
    winners = []
    for r in explored:
        if r["verdict"] == "improved" and r["outcome"] is None:
            cand = by_id.get(r["candidate_id"]) or Candidate.from_dict(
                json.loads(r["candidate_json"]))
            prior = JobResult(r["id"], r["worker"] or "", "finished", r["verdict"],
                              r["reason"] or "", json.loads(r["result_json"] or "null"))
            winners.append(Tried(cand, r["id"], prior))
    for r in rows:
        if r["kind"] == "confirm" and r["status"] == "finished" and r["outcome"] is None:
            log.discard([r["id"]], f"{r['reason']}; the run was cut off before it could "
                        "land, so confirmed again")
    done = {r["candidate_id"] for r in rows if r["status"] in FINAL_STATUSES}
    nonwins = 0
    for row in sorted(explored, key=lambda r: r["seq"], reverse=True):
        if row["outcome"] == "kept":
            break
        nonwins += 1
    return Restored(winners, [c for c in candidates if c.id not in done], len(explored),
                    nonwins, max((r["wave"] for r in rows), default=0) + 1)


def repair_of(proposer: Proposer, ctx: ProposerContext, spec: Spec, cand: Candidate,
              res: JobResult) -> list[Candidate]:
    """A fixed version (a list of none or one) of a candidate that failed to build or pass
    the checks, from a proposer that repairs, within `[agent] repair_attempts` per lineage.
    Its lineage is data: `parent` is the candidate it fixes, `attempt` counts from 1."""
    result = res.result or {}
    broken = res.verdict == "checks_failed" or (
        res.verdict == "crash" and "build_failed" in result.get("flags", []))
    attempt = cand.attempt + 1
    if not broken or not hasattr(proposer, "repair") or attempt > _repair_attempts(spec):
        return []
    new = proposer.repair(ctx, cand, res.verdict or "", result.get("tail", ""), attempt)
    return [replace(new, parent=cand.id, attempt=attempt)] if new is not None else []


def _repair_attempts(spec: Spec) -> int:
    from readfirst.core.config import load_agent
    from readfirst.core.config_tables import AgentConfig

    if not spec.agent:
        return int(AgentConfig.model_fields["repair_attempts"].default)
    return load_agent(spec).repair_attempts


def write_run_report(log: LoopLog, ws: Workspace, run_id: str) -> None:
    """The run's report (`.readfirst/reports/<run-id>/report.{md,html}`), noted in the journal."""
    from readfirst.report import write_report
    from readfirst.report.view import hypotheses, machine, samples_by_seq

    samples = samples_by_seq(log.db, run_id)
    _md, html = write_report(log.summary(run_id), ws.state / "reports" / run_id, samples,
                             hypotheses(log.db), machine(log.db, run_id, samples))
    log.set_report(run_id, str(html))


@contextmanager
def interrupts_marked(target: Target) -> Iterator[None]:
    """A Ctrl-C at any moment of a run, even before `Loop.run` took over (while the run is
    created, or restored), leaves it `interrupted`, never `running`."""
    try:
        yield
    except KeyboardInterrupt:
        ws = Workspace(target.root)
        if ws.journal_path.exists():
            journal = Journal(ws.journal_path)
            try:
                journal.db.execute(
                    "UPDATE loop_runs SET status = 'interrupted', finished = ?, stop_reason ="
                    " 'interrupted' WHERE status = 'running' AND pid = ?",
                    (time.time(), os.getpid()))
            finally:
                journal.close()
        raise
