"""`readfirst run`: the optimisation loop, top to bottom.

propose -> waves of up to W candidates, each compared against the current baseline on its own
worker -> winners (best first) re-measured on a different worker, against the baseline as it is
then (gains may not stack) -> a confirmed winner becomes a commit on `readfirst/<run-id>` and the
new baseline -> next wave. Stops on --max-experiments, --max-time, --patience or when no
candidates are left. The journal records every step, so `--resume` continues after a kill.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from readfirst import constants as C
from readfirst import gitcli
from readfirst.candidate import COMMIT_IDENTITY, Candidate, normalized_diff_hash
from readfirst.compare import Target
from readfirst.config import Spec
from readfirst.errors import BaseFailedError, ConfigError
from readfirst.executors import Job, JobResult, make_executor
from readfirst.journal import Journal
from readfirst.loop_journal import FINAL_STATUSES, LoopLog
from readfirst.proposers import BudgetExceeded, ProposerContext, get_proposer
from readfirst.render import format_change
from readfirst.research.orchestrate import refresh_from_experiments, research_after_landing
from readfirst.workspace import Workspace

Say = Callable[[str], None]


@dataclass
class LoopOptions:
    proposer: str
    workers: int = 2
    max_experiments: int | None = None
    max_time: float | None = None  # seconds; no new wave starts after it
    patience: int | None = None  # stop after this many explored candidates in a row without a win
    patches_dir: str | None = None
    pin_cpus: bool = False
    base: str = "HEAD"
    executor: str | None = None  # overrides [executor] kind
    dry_run: bool = False  # remote executors: write what would run, launch nothing
    max_cost: float | None = None  # USD, compute + API; no wave starts after it


@dataclass
class _Tried:
    cand: Candidate
    exp_id: int
    result: JobResult


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + os.urandom(2).hex()


def run_loop(target: Target, spec: Spec, opts: LoopOptions | None, *, resume: bool = False,
             say: Say = lambda _m: None) -> dict[str, Any]:
    ws = Workspace(target.root)
    # --- validate and propose before anything is written -------------------------------
    journal: Journal | None = None
    if resume:
        if not ws.journal_path.exists():
            raise ConfigError("nothing to resume: no run in this target yet")
        journal = Journal(ws.journal_path)
        log = LoopLog(journal)
        row = log.get()
        if row is None or row["status"] == "done":
            journal.close()
            raise ConfigError("nothing to resume: the last run finished (start a new one)")
        if row["status"] == "running":
            journal.close()
            raise ConfigError(f"run {row['id']} is still running (pid {row['pid']})")
        opts = LoopOptions(**json.loads(row["options_json"])["loop"])
        base = row["base_commit"]
    else:
        assert opts is not None
        base = gitcli.resolve_commit(target.repo, opts.base)
    loop_id = row["id"] if resume and row is not None else new_run_id()
    proposer = get_proposer(opts.proposer)
    ctx = ProposerContext(repo=target.repo, root=target.root, rel=target.rel, baseline=base,
                          spec=spec, state_dir=ws.state, run_id=loop_id,
                          options={"patches_dir": opts.patches_dir})
    try:
        candidates = proposer.propose(ctx)
    except BudgetExceeded:
        candidates = []  # the run starts, and stops at once with the reason
    except BaseException:
        if journal is not None:
            journal.close()
        raise

    ex_opts = dict(spec.executor)
    ex_kind = opts.executor or str(ex_opts.pop("kind", "local"))
    ex_opts.pop("kind", None)
    verify_opts = ex_opts.pop("verify", None)  # a second pool (e.g. arm64) winners must pass
    if opts.dry_run:
        ex_opts["dry_run"] = True
    jobs_dir = ws.state / "loops" / loop_id / "jobs"
    try:  # a missing extra or a bad [executor] table fails before the run is created
        executor = make_executor(ex_kind, ws, jobs_dir, opts.workers, pin_cpus=opts.pin_cpus,
                                 options=ex_opts)
    except BaseException:
        if journal is not None:
            journal.close()
        raise
    verifier = None
    if isinstance(verify_opts, dict):
        vo = dict(verify_opts)
        verifier = make_executor(str(vo.pop("kind", "local")), ws, jobs_dir / "verify", 1,
                                 options=vo)
    brief = ws.state / "research" / "brief.md"
    ctx.brief = brief if brief.is_file() else None

    # --- open or create the run -----------------------------------------------------------
    if resume:
        assert journal is not None and row is not None
        branch = row["branch"]
        log.reopen(loop_id)
        baseline = row["baseline"]  # the journal is the truth; the branch follows it
        gitcli.git(target.repo, "update-ref", f"refs/heads/{branch}", baseline)
        say(f"resuming run {loop_id} at {gitcli.short(baseline)}")
    else:
        ws.ensure()
        journal = Journal(ws.journal_path)
        log = LoopLog(journal)
        branch = f"readfirst/{loop_id}"
        gitcli.git(target.repo, "update-ref", f"refs/heads/{branch}", base)
        metric = {"name": spec.metric.name, "unit": spec.metric.unit,
                  "direction": spec.metric.direction}
        log.create(loop_id, target.root, branch, base,
                   {"loop": asdict(opts), "metric": metric, "workers": opts.workers,
                    "proposer": opts.proposer})
        baseline = base
        say(f"run {loop_id}: branch {branch} from {gitcli.short(base)}")
    rows = log.experiments(loop_id)

    def record_skipped(skipped: list[tuple[str, str, str]]) -> None:
        recorded = {r["candidate_id"] for r in log.experiments(loop_id)}
        for cid, title, reason in skipped:
            if cid not in recorded:
                stub = Candidate(cid, title, "", "", proposer.name)
                exp = log.start_experiment(loop_id, 0, "explore", stub, baseline, None,
                                           "skipped")
                log.finish_experiment(exp, "skipped", reason=reason, outcome="discarded")

    # Novelty index: normalised diff -> (candidate id, where it was measured). This run's
    # experiments are added as they start; earlier runs are read once per baseline.
    this_run: dict[str, tuple[str, str]] = {}
    other_runs: dict[str, dict[str, str]] = {}

    def remember(cand: Candidate, seq: int, run: str, into: dict[str, tuple[str, str]]) -> None:
        if cand.diff:
            into.setdefault(normalized_diff_hash(cand.diff),
                            (cand.id, f"experiment #{seq} of run {run}"))

    for row in rows:
        if row["status"] not in ("cancelled", "skipped"):
            remember(Candidate.from_dict(json.loads(row["candidate_json"])), row["seq"],
                     loop_id, this_run)

    def duplicate_of(cand: Candidate) -> str | None:
        """Novelty: the same edit was measured before in this run, or on this baseline in
        an earlier run of this target."""
        digest = normalized_diff_hash(cand.diff)
        if digest in this_run and this_run[digest][0] != cand.id:
            return f"same change as {this_run[digest][1]}"
        if baseline not in other_runs:
            found: dict[str, tuple[str, str]] = {}
            for row in journal.db.execute(
                "SELECT loop_id, seq, candidate_json FROM experiments WHERE baseline = ?"
                " AND loop_id != ? AND status NOT IN ('cancelled', 'skipped')",
                (baseline, loop_id),
            ).fetchall():
                remember(Candidate.from_dict(json.loads(row["candidate_json"])), row["seq"],
                         row["loop_id"], found)
            other_runs[baseline] = {h: where for h, (_id, where) in found.items()}
        if digest in other_runs[baseline]:
            return f"same change as {other_runs[baseline][digest]}"
        return None

    admitted: dict[str, str] = {}  # normalised diff -> the candidate id that carries it

    def admit(fresh: list[Candidate]) -> list[Candidate]:
        """Candidates worth measuring; duplicates are recorded as skipped with the reason."""
        out = []
        for cand in fresh:
            digest = normalized_diff_hash(cand.diff)
            earlier = admitted.get(digest)
            dup = (f"same change as candidate {earlier}" if earlier and earlier != cand.id
                   else duplicate_of(cand))
            admitted.setdefault(digest, cand.id)
            if dup:
                record_skipped([(cand.id, cand.title, f"not novel: {dup}")])
            else:
                out.append(cand)
        return out

    record_skipped(proposer.skipped)
    # wave 0 holds what the proposer itself skipped: recorded, but not an experiment
    explore_rows = [r for r in rows if r["kind"] == "explore" and r["wave"] > 0
                    and r["status"] in FINAL_STATUSES]
    by_id = {c.id: c for c in candidates}
    awaiting = [r for r in explore_rows if r["verdict"] == "improved" and r["outcome"] is None]
    finished_ids = {r["candidate_id"] for r in rows if r["status"] in FINAL_STATUSES}
    queue = admit([c for c in candidates if c.id not in finished_ids])
    explored = len(explore_rows)
    nonwins = _trailing_nonwins(explore_rows)
    wave_no = max((r["wave"] for r in rows), default=0) + 1
    say(f"{len(candidates)} candidates from {opts.proposer}, {len(queue)} to try, "
        f"{len(proposer.skipped)} skipped")

    # On shared remote machines noisy neighbours are the norm, so workers are checked by
    # default there; locally the paired rounds already absorb a busy laptop's noise.
    noise_check = bool(ex_opts.get("noise_check", ex_kind != "local")) and not opts.dry_run
    max_worker_cv = float(ex_opts.get("max_worker_cv", C.MAX_WORKER_CV))
    noise_every = int(ex_opts.get("noise_every", C.NOISE_EVERY_WAVES))
    quarantined: set[str] = set()
    spec_data = spec.model_dump()
    started = time.monotonic()
    stop_reason = "no candidates left"

    def run_wave(batch: list[tuple[Candidate, str]], kind: str) -> list[_Tried]:
        """Submit each (candidate, worker) against the current baseline; wait for all."""
        handles, cands = [], {}
        for cand, worker in batch:
            exp_id = log.start_experiment(loop_id, wave_no, kind, cand, baseline, worker)
            seq = log.seq_of(exp_id)  # the one number console, status and commits show
            remember(cand, seq, loop_id, this_run)
            job = Job(exp_id, str(target.root), baseline, cand.to_dict(), spec_data,
                      clean_build=kind == "confirm")
            handle = executor.submit(job, worker)
            log.set_pid(exp_id, handle.pid or 0)
            handles.append(handle)
            cands[exp_id] = cand
            say(f"  [{worker}] {kind} #{seq}: {cand.title}")
        tried = []
        pending = {h.exp_id: h for h in handles}
        while pending:
            for res in executor.wait_any(list(pending.values())):
                del pending[res.exp_id]
                final = res.status in ("skipped", "worker_died", "dry_run")
                log.finish_experiment(res.exp_id, res.status, verdict=res.verdict,
                                      reason=res.reason, result=res.result,
                                      cand_commit=res.cand_commit, timings=res.timings,
                                      outcome="discarded" if final else None)
                say(f"  [{res.worker}] #{log.seq_of(res.exp_id)} {res.verdict or res.status}: "
                    f"{res.reason}")
                if res.status == "base_failed":
                    raise BaseFailedError(res.reason)
                tried.append(_Tried(cands[res.exp_id], res.exp_id, res))
        return sorted(tried, key=lambda t: t.exp_id)

    def confirm(winner: _Tried) -> bool:
        """Re-measure a winner on another worker against the current baseline; land it."""
        nonlocal baseline
        pool = healthy()
        # remote executors name the machine in `worker` and their own slot in `executor`
        found = ((winner.result.result or {}).get("executor") or {}).get("slot") \
            or winner.result.worker
        others = [w for w in pool if w != found] or pool
        (check,) = run_wave([(winner.cand, others[0])], "confirm")
        res = check.result
        if res.verdict != "improved" or res.result is None or res.cand_commit is None:
            moved = "on the new baseline " if winner.result.result and \
                winner.result.result.get("base_commit") != baseline else ""
            why = f"not confirmed {moved}on {res.worker}: {res.verdict or res.status}"
            log.discard([check.exp_id])
            log.discard([winner.exp_id], f"{winner.result.reason}; {why}")
            return False
        if verifier is not None:  # e.g. an arm64 pool: the winner must win there too
            other = run_on(verifier, winner.cand, verifier.workers[0], "verify")
            if other.result.verdict != "improved":
                got = other.result.verdict or other.result.status
                why = f"not confirmed on the verify pool: {got}"
                log.discard([winner.exp_id, check.exp_id, other.exp_id], why)
                say(f"  {why}: {winner.cand.title}")
                return False
        if hasattr(proposer, "review"):  # e.g. an LLM reading the project's conventions
            approve, why = proposer.review(ctx, winner.cand)
            if not approve:
                log.discard([winner.exp_id, check.exp_id], f"review veto: {why}")
                say(f"  review veto: {winner.cand.title}: {why}")
                return False
        commit = _land_commit(target, winner.cand, res, baseline, loop_id,
                              log.seq_of(check.exp_id))
        log.land(loop_id, [winner.exp_id, check.exp_id], commit)
        gitcli.git(target.repo, "update-ref", f"refs/heads/{branch}", commit, baseline)
        say(f"  kept: {winner.cand.title} ({res.reason.split(' (')[0]}) -> {gitcli.short(commit)}")
        baseline = commit
        return True

    def healthy() -> list[str]:
        return [w for w in executor.workers if w not in quarantined]

    def check_noise() -> None:
        """A-vs-A: each worker benchmarks the baseline alone; a worker whose CV is above
        the threshold is quarantined (on SkyPilot, replaced with a fresh VM)."""
        stub = Candidate("noise-check", "worker noise check (A vs A)", "", "", "readfirst")
        for worker in healthy():
            tried = run_on(executor, stub, worker, "noise")
            res = tried.result.result or {}
            cv = res.get("cv")
            if tried.result.status == "base_failed":
                raise BaseFailedError(tried.result.reason)
            noisy = cv is None or cv > max_worker_cv
            log.record_noise(loop_id, worker, cv, res.get("n"), noisy)
            log.discard([tried.exp_id])
            if noisy:
                say(f"  [{worker}] noise CV {cv if cv is None else f'{cv:.1%}'} > "
                    f"{max_worker_cv:.0%}: quarantined")
                if hasattr(executor, "replace_worker"):
                    executor.replace_worker(worker)  # a fresh VM, checked next time
                else:
                    quarantined.add(worker)

    def spent() -> float:
        return float(log.summary(loop_id)["cost"]["total_usd"])

    def run_on(ex: Any, cand: Candidate, worker: str, kind: str) -> _Tried:
        """One job on one executor (noise checks, verify pool), waited for."""
        exp_id = log.start_experiment(loop_id, wave_no, kind, cand, baseline, worker)
        job = Job(exp_id, str(target.root), baseline, cand.to_dict(), spec_data,
                  clean_build=kind == "verify", kind="noise" if kind == "noise" else
                  "experiment")
        handle = ex.submit(job, worker)
        log.set_pid(exp_id, handle.pid or 0)
        res = ex.wait_any([handle])[0]  # no timeout: returns once the job is done
        log.finish_experiment(exp_id, res.status, verdict=res.verdict, reason=res.reason,
                              result=res.result, cand_commit=res.cand_commit,
                              timings=res.timings)
        return _Tried(cand, exp_id, res)

    def refill() -> list[Candidate]:
        """Ask a thinking proposer again, on the current baseline, knowing what was tried."""
        if not getattr(proposer, "continuous", False):
            return []
        ctx.baseline = baseline
        ctx.history = [e for e in log.summary(loop_id)["experiments"] if e["kind"] == "explore"]
        fresh = admit(proposer.propose(ctx))
        record_skipped(proposer.skipped)
        say(f"{opts.proposer}: {len(fresh)} new candidate(s)")
        return fresh

    def repairs(tried: list[_Tried]) -> list[Candidate]:
        """Fixed versions of candidates that failed to build or pass the checks."""
        if not hasattr(proposer, "repair"):
            return []
        fixed = []
        for t in tried:
            res = t.result.result or {}
            broken = t.result.verdict == "checks_failed" or (
                t.result.verdict == "crash" and "build_failed" in res.get("flags", []))
            if not broken:
                continue
            attempt = t.cand.id.count("-r") + 1
            new = proposer.repair(ctx, t.cand, t.result.verdict or "", res.get("tail", ""),
                                  attempt)
            if new is not None:
                fixed += admit([new])
        return fixed

    # --- the waves ----------------------------------------------------------------------
    try:
        for row in awaiting:  # winners a killed run found but had not confirmed yet
            cand = by_id.get(row["candidate_id"]) or Candidate.from_dict(
                json.loads(row["candidate_json"]))
            prior = JobResult(row["id"], row["worker"] or "", "finished", row["verdict"],
                              row["reason"] or "", json.loads(row["result_json"] or "null"))
            nonwins = 0 if confirm(_Tried(cand, row["id"], prior)) else nonwins + 1
        while True:
            if opts.max_experiments is not None and explored >= opts.max_experiments:
                stop_reason = "max experiments"
                break
            if opts.max_time is not None and time.monotonic() - started >= opts.max_time:
                stop_reason = "max time"
                break
            if opts.patience is not None and nonwins >= opts.patience:
                stop_reason = "patience"
                break
            if not queue:
                queue = refill()
                if not queue:
                    break
            if noise_check and (wave_no - 1) % noise_every == 0:
                check_noise()
            if not healthy():
                stop_reason = "every worker is too noisy (quarantined)"
                break
            if opts.max_cost is not None and spent() >= opts.max_cost:
                stop_reason = "max cost"
                break
            size = min(len(healthy()), len(queue))
            if opts.max_experiments is not None:
                size = min(size, opts.max_experiments - explored)
            batch, queue = queue[:size], queue[size:]
            say(f"wave {wave_no}: {len(batch)} candidate(s) on {gitcli.short(baseline)}")
            tried = run_wave(list(zip(batch, healthy(), strict=False)), "explore")
            explored += len(batch)
            winners = [t for t in tried if t.result.verdict == "improved"]
            for t in tried:
                if t.result.verdict != "improved" and t.result.status == "finished":
                    log.discard([t.exp_id])
            nonwins += len(tried) - len(winners)
            queue = repairs(tried) + queue
            for winner in sorted(winners, key=lambda t: _gain(t, spec), reverse=True):
                nonwins = 0 if confirm(winner) else nonwins + 1
            # research refresh: hypotheses behind failed candidates are demoted in the brief
            updated = refresh_from_experiments(ws, journal, str(target.root),
                                               log.summary(loop_id)["experiments"])
            if updated:
                say(f"research: {updated} hypothesis(es) updated from wave {wave_no}")
            research_after_landing(target, spec, baseline)  # re-profiled once a change landed
            wave_no += 1
    except KeyboardInterrupt:
        executor.close()
        log.finish(loop_id, "interrupted", "interrupted")
        _write_report(log, ws, loop_id)
        journal.close()
        raise
    except BaseFailedError as e:
        stop_reason = f"baseline cannot be measured: {e}"
    except BudgetExceeded as e:
        stop_reason = f"max cost: {e}"
    finally:
        executor.close()
        if verifier is not None:
            verifier.close()
        if hasattr(proposer, "close"):
            proposer.close()
    if opts.dry_run:
        stop_reason = f"dry run: nothing launched ({stop_reason})"
    log.finish(loop_id, "done", stop_reason)
    _write_report(log, ws, loop_id)
    summary = log.summary(loop_id)
    journal.close()
    say(f"stopped: {stop_reason}")
    return summary


def _gain(t: _Tried, spec: Spec) -> float:
    """How much better than the baseline, in the metric's direction (for ordering winners)."""
    ratio = (t.result.result or {}).get("ratio") or 1.0
    return ratio - 1 if spec.metric.direction == "higher" else 1 - ratio


def _trailing_nonwins(explore_rows: list[Any]) -> int:
    count = 0
    for row in sorted(explore_rows, key=lambda r: r["seq"], reverse=True):
        if row["outcome"] == "kept":
            break
        count += 1
    return count


def _land_commit(target: Target, cand: Candidate, res: JobResult, baseline: str,
                 loop_id: str, seq: int) -> str:
    """A commit on the baseline with the candidate's tree and the evidence in its message."""
    r = res.result or {}
    m = r.get("metric", {})
    unit = f" {m['unit']}" if m.get("unit") else ""
    lines = [
        cand.title,
        "",
        f"{m.get('name')}: {r['base']['median']:.4g} -> {r['cand']['median']:.4g}{unit} "
        f"({format_change(r['ratio'], r['ci_low'], r['ci_high'], r['ci_level'], decimals=2)}, "
        f"p={r['p_value']:.2g}, {r['rounds']} rounds, confirmed on {res.worker})",
    ]
    if cand.provenance:
        lines.append("Provenance: " + ", ".join(cand.provenance))
    if cand.rationale:
        lines += ["", cand.rationale.strip()]
    lines += ["", f"readfirst run {loop_id}, experiment #{seq}"]
    tree = _candidate_tree(target, cand, res, baseline)
    return gitcli.git(target.repo, "commit-tree", tree, "-p", baseline, "-m", "\n".join(lines),
                      env=COMMIT_IDENTITY)


def _candidate_tree(target: Target, cand: Candidate, res: JobResult, baseline: str) -> str:
    """The tree of the candidate on the baseline. A remote worker's commit lives on its
    machine only, so then the diff is applied again here, in a worktree of our own."""
    parent = res.cand_commit and gitcli.git(
        target.repo, "rev-parse", "--verify", "--quiet", f"{res.cand_commit}^", check=False)
    if parent == baseline:  # made here, on this very baseline
        return gitcli.tree_of(target.repo, res.cand_commit or "")
    from readfirst.candidate import apply_candidate

    ws = Workspace(target.root)
    with ws.lock_slot("land"):
        commit = apply_candidate(ws.checkout("land", baseline), baseline, cand)
    return gitcli.tree_of(target.repo, commit)


def _write_report(log: LoopLog, ws: Workspace, loop_id: str) -> None:
    from readfirst.report import write_report
    from readfirst.report.view import hypotheses, machine, samples_by_seq

    out_dir = ws.state / "reports" / loop_id
    samples = samples_by_seq(log.db, loop_id)
    _md, html = write_report(log.summary(loop_id), out_dir, samples, hypotheses(log.db),
                             machine(log.db, loop_id, samples))
    log.set_report(loop_id, str(html))
