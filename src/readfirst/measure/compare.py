"""`readfirst compare` and `readfirst bench`: the measurement engine, top to bottom.

compare: resolve revisions -> scope/protected guard -> worktrees -> build both -> candidate
checks -> warm-up -> sequential RMIT (or duet) rounds -> judge -> journal.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from readfirst.core import constants as C
from readfirst.core.config import Spec
from readfirst.core.errors import BaseFailedError, ConfigError
from readfirst.core.notation import format_change
from readfirst.core.target import Target
from readfirst.measure.buildreuse import base_build, seed_candidate
from readfirst.measure.guards import (
    Refusal,
    check_changes,
    escaping_links,
    on_disk_blobs,
    protected_blobs,
)
from readfirst.measure.judge import Evidence, early_verdict, judge_measurement, side_dict
from readfirst.measure.runner import (
    BaseOutputsChanged,
    Isolation,
    Runner,
    Sample,
    Side,
    StepFailed,
    Tampering,
    duet_cpu_sets,
)
from readfirst.measure.sandbox import probe
from readfirst.measure.stats import (
    SequentialResult,
    plan_looks,
    sequential_compare,
    summarize,
)
from readfirst.store.journal import Journal
from readfirst.store.progress import interim_estimate
from readfirst.vcs import gitcli
from readfirst.vcs.workspace import Workspace

# progress(message, rounds_done, rounds_max[, estimate]): the CLI draws it, a worker writes it
# to the journal (progress.py); after each round the interim estimate comes with it.
Progress = Callable[..., None]


def _quiet(_msg: str, _done: int | None, _total: int | None, _est: object = None) -> None:
    pass


def isolation_for(target: Target, spec: Spec, ws: Workspace, commit: str) -> Isolation:
    """The sandbox (when asked for and available) and the user's checkout's protected
    files as they are now, re-hashed after every step."""
    patterns = target.repo_patterns(spec.protected_patterns())
    protected = protected_blobs(target.repo, commit, patterns)
    return Isolation(target.repo, ws.state, spec.target.sandbox and probe() is None,
                     on_disk_blobs(target.repo, sorted(protected)))


def side_of(target: Target, role: str, rev: str, commit: str, checkout: Path) -> Side:
    tree = gitcli.tree_of(target.repo, commit)
    workdir = checkout / target.rel if target.rel else checkout
    return Side(role, rev, commit, tree, checkout, workdir)


def _metric_info(spec: Spec, name: str | None) -> dict[str, Any]:
    return {"name": name, "unit": spec.metric.unit, "direction": spec.metric.direction}


def compare(
    target: Target,
    base_rev: str,
    cand_rev: str,
    spec: Spec,
    progress: Progress = _quiet,
    *,
    slots: tuple[str, str] = ("base", "cand"),
    clean_cand: bool = False,
) -> dict[str, Any]:
    """Compare two revisions; `slots` names the two worktrees to use (one pair per worker);
    `clean_cand` removes the candidate's build outputs first (a clean rebuild)."""
    base_sha, cand_sha, cpu_sets = _validated(target, base_rev, cand_rev, spec)
    ws = Workspace(target.root)
    ws.ensure()
    journal = Journal(ws.journal_path)
    run_id = journal.start_run("compare", target.root, spec.model_dump(), spec.metric.name)
    run_dir = ws.run_dir(run_id)
    meta = {
        "run_id": run_id,
        "mode": spec.compare.mode,
        "base_rev": base_rev,
        "cand_rev": cand_rev,
        "base_commit": base_sha,
        "cand_commit": cand_sha,
        "logs": str(run_dir),
    }
    for role, rev, sha in (("base", base_rev, base_sha), ("cand", cand_rev, cand_sha)):
        tree = gitcli.tree_of(target.repo, sha)
        slot = slots[0] if role == "base" else slots[1]
        journal.add_revision(run_id, role, rev, sha, tree, str(ws.slot_path(slot)))
    try:
        result = _compare_run(target, ws, journal, run_id, run_dir, spec, progress,
                              (base_rev, base_sha), (cand_rev, cand_sha), cpu_sets, slots,
                              clean_cand)
        result["timings"] = journal.step_seconds(run_id)
    except BaseFailedError as e:
        journal.finish_run(run_id, "error", error=str(e))
        raise
    except BaseException as e:  # Ctrl-C, SIGTERM, bugs: the run is marked, never left running
        journal.finish_run(run_id, "interrupted", error=type(e).__name__)
        raise
    finally:
        journal.close()
    return {**result, **meta}


def _validated(target: Target, base_rev: str, cand_rev: str, spec: Spec,
               ) -> tuple[str, str, tuple[set[int], set[int]] | None]:
    """Everything that can be bad input, checked before anything is written: the two commits
    and the duet's CPU sets. The judge's config is read from the user's tree, never from a
    revision: WORKTREE snapshots leave uncommitted config edits out, so they are not the
    candidate's change."""
    config = tuple(target.repo_patterns(list(C.CONFIG_FILES)))
    base_sha = gitcli.resolve_commit(target.repo, base_rev, keep_from_head=config)
    cand_sha = gitcli.resolve_commit(target.repo, cand_rev, keep_from_head=config)
    plan = plan_looks(spec.compare.rounds, spec.compare.max_rounds, spec.compare.alpha,
                      spec.compare.spending)
    if not plan.active_looks:
        raise ConfigError(
            f"[compare] max_rounds = {spec.compare.max_rounds} is too few: no look can decide "
            f"before {C.MIN_ROUNDS_FOR_TEST} rounds; raise max_rounds (10 or more)"
        )
    cpu_sets = None
    if spec.compare.mode == "duet":
        cpu_sets = duet_cpu_sets()
        if cpu_sets is None:
            raise ConfigError("[compare] mode = 'duet' needs at least 2 usable CPUs")
    return base_sha, cand_sha, cpu_sets


def _compare_run(
    target: Target,
    ws: Workspace,
    journal: Journal,
    run_id: int,
    run_dir: Path,
    spec: Spec,
    progress: Progress,
    base: tuple[str, str],
    cand: tuple[str, str],
    cpu_sets: tuple[set[int], set[int]] | None,
    slots: tuple[str, str],
    clean_cand: bool = False,
) -> dict[str, Any]:
    metric = _metric_info(spec, spec.metric.name)
    protected = target.repo_patterns(spec.protected_patterns())
    scope = target.repo_patterns(spec.target.scope or ([] if not target.rel else ["**"]))
    changed = gitcli.changed_files(target.repo, base[1], cand[1])
    refusal = check_changes(changed, protected, scope)
    links = escaping_links(target.repo, cand[1], changed)
    if links:
        refusal = Refusal(refusal.protected if refusal else (),
                          refusal.out_of_scope if refusal else (), links)
    if refusal:
        flag = "protected" if refusal.protected else "scope" if refusal.out_of_scope else "link"
        result = early_verdict("refused", refusal.reason(), metric, [flag], files=refusal.files)
        journal.finish_run(run_id, "done", verdict="refused", result=result)
        return result

    with ws.lock_slot(slots[0]), ws.lock_slot(slots[1]):
        progress("checking out worktrees", None, None)
        b = side_of(target, "base", base[0], base[1], ws.checkout(slots[0], base[1]))
        c = side_of(target, "cand", cand[0], cand[1],
                        ws.checkout(slots[1], cand[1], clean=clean_cand))
        runner = Runner(spec, journal, run_id, run_dir, [b, c],
                        protected_blobs(target.repo, base[1], protected),
                        isolation_for(target, spec, ws, base[1]))
        try:
            result = _measure(runner, spec, b, c, progress, cpu_sets, reuse=not clean_cand)
        except Tampering as t:
            result = early_verdict("refused", str(t), metric, ["tampering"], files=t.files)
        except BaseOutputsChanged as e:
            result = early_verdict("suspect", str(e), metric, ["base_outputs_changed"],
                                   files=e.files[:20])
        except StepFailed as f:
            if f.role == "base":
                raise BaseFailedError(
                    _failed_step(journal, run_id, f"base {base[0]} cannot be measured: {f}",
                                 f.tail)) from None
            verdict = "crash"
            result = early_verdict(verdict, str(f), _metric_info(spec, runner.metric_name),
                                   [f"{f.step}_failed"], tail=f.tail)
    if result["base"]:
        _flag_drift(journal, run_id, b.tree, result, result["base"]["median"], spec)
    journal.finish_run(run_id, "done", verdict=result["verdict"], result=result)
    return result


def _measure(runner: Runner, spec: Spec, b: Side, c: Side, progress: Progress,
             cpu_sets: tuple[set[int], set[int]] | None, reuse: bool = True) -> dict[str, Any]:
    """Build and check both sides, warm up, run rounds until the sequential test decides, and
    judge what they measured."""
    failed = _build_and_check(runner, spec, b, c, progress, reuse)
    if failed is not None:
        return failed
    progress("warming up", None, None)
    runner.warmup([b, c] if runner.rng.random() < 0.5 else [c, b])
    seq, rounds = _run_rounds(runner, spec, b, c, progress, cpu_sets)
    return judge_measurement(_evidence(spec, runner.metric_name, seq, rounds))


Rounds = list[tuple[Sample, Sample]]  # (base, cand) of each round


def _run_rounds(runner: Runner, spec: Spec, b: Side, c: Side, progress: Progress,
                cpu_sets: tuple[set[int], set[int]] | None) -> tuple[SequentialResult, Rounds]:
    """Interleaved rounds (duet rounds with `cpu_sets`) until the sequential test stops."""
    cfg = spec.compare
    rounds: Rounds = []

    def draw_round() -> tuple[float, float]:
        rnd = len(rounds)
        progress("benchmark rounds", rnd, cfg.max_rounds)
        if cpu_sets is not None:
            sb, sc = runner.duet_round(rnd, b, c, cpu_sets)
        else:
            sb, sc = runner.interleaved_round(rnd, b, c)
        rounds.append((sb, sc))
        progress("benchmark rounds", rnd + 1, cfg.max_rounds,
                 interim_estimate([r[0].value for r in rounds], [r[1].value for r in rounds]))
        return sb.value, sc.value

    seq = sequential_compare(
        draw_round,
        rounds=cfg.rounds,
        max_rounds=cfg.max_rounds,
        alpha=cfg.alpha,
        noise_threshold=cfg.noise_threshold,
        direction=spec.metric.direction,
        spending=cfg.spending,
    )
    progress("benchmark rounds", len(seq.base), cfg.max_rounds)
    return seq, rounds


def _evidence(spec: Spec, metric_name: str | None, seq: SequentialResult,
              rounds: Rounds) -> Evidence:
    """The judge's input: the test's result, the rounds' samples (CPU times of the rounds
    where both sides have one), the settings."""
    cfg = spec.compare
    cpus = [(sb.cpu, sc.cpu) for sb, sc in rounds if sb.cpu is not None and sc.cpu is not None]
    return Evidence(
        metric=_metric_info(spec, metric_name),
        direction=spec.metric.direction,
        noise_threshold=cfg.noise_threshold,
        alpha_look=seq.alpha_look,
        alpha=cfg.alpha,
        plausible_ratio=cfg.plausible_ratio,
        seq=seq,
        wall_base=[sb.wall for sb, _ in rounds],
        wall_cand=[sc.wall for _, sc in rounds],
        secondary_base=[sb.metrics for sb, _ in rounds],
        secondary_cand=[sc.metrics for _, sc in rounds],
        repeated_metrics=sorted({n for sb, sc in rounds for n in sb.repeated + sc.repeated}),
        wall_informative=(spec.metric.wall_check
                          and spec.metric.format not in C.SELF_TIMING_FORMATS),
        wall_share=spec.metric.wall_share,
        cpu_base=[cb for cb, _ in cpus],
        cpu_cand=[cc for _, cc in cpus],
    )


def _build_and_check(runner: Runner, spec: Spec, b: Side, c: Side, progress: Progress,
                     reuse: bool) -> dict[str, Any] | None:
    """Build both sides (the candidate from the base's outputs when it can), run the
    candidate's checks; the `checks_failed` verdict when they fail, else None."""
    progress(f"building base {b.rev}", None, None)
    with base_build(b.checkout, b.commit):  # once per baseline: a fresh slot copies a built one
        runner.build(b)
    if reuse and spec.target.build and seed_candidate(b.checkout, c.checkout, b.commit):
        progress("candidate starts from the base's build outputs", None, None)
    progress(f"building candidate {c.rev}", None, None)
    runner.build(c)
    if spec.target.checks:
        progress("running checks", None, None)
    checks = runner.checks(c)
    if checks is None or checks.ok:
        return None
    flags = ["checks_failed"]
    base_checks = runner.checks(b)
    if base_checks is not None and not base_checks.ok:
        flags.append("base_checks_fail_too")
    reason = f"candidate checks failed ({'timeout' if checks.timed_out else checks.exit_code})"
    return early_verdict("checks_failed", reason, _metric_info(spec, runner.metric_name),
                         flags, tail=checks.tail(50))


def _flag_drift(journal: Journal, run_id: int, tree: str, result: dict[str, Any],
                median: float | None, spec: Spec) -> None:
    """Flag a baseline far from the journal's last baseline of the same tree on this host."""
    name = result["metric"]["name"]
    previous = journal.last_baseline(tree, name, run_id) if name and median else []
    if not previous or median is None:
        return
    before = summarize(previous).median
    drift = median / before - 1
    result["baseline_previous_median"] = before
    if abs(drift) > spec.compare.baseline_drift:
        result["flags"] = sorted({*result["flags"], "baseline_drift"})
        result["reason"] += (
            f"; note: the base median moved {format_change(median / before)} from the last "
            "measurement of the same code on this machine"
        )


def _failed_step(journal: Journal, run_id: int, what: str, tail: str) -> str:
    """An error that shows the end of the failing step's output and where its log is."""
    row = journal.db.execute(
        "SELECT stdout_path, stderr_path FROM steps WHERE run_id = ? ORDER BY id DESC LIMIT 1",
        (run_id,)).fetchone()
    lines = [what]
    last = [ln for ln in tail.splitlines() if ln.strip()][-C.ERROR_TAIL_LINES:]
    if last:
        lines.append("last lines of its output:")
        lines += [f"  {ln}" for ln in last]
    if row is not None:
        lines.append(f"log: {row['stderr_path']} (stdout: {row['stdout_path']})")
    return "\n".join(lines)


def result_cv(samples: list[Sample]) -> float:
    return summarize([s.value for s in samples]).cv


def bench(
    target: Target, rev: str, spec: Spec, rounds: int, progress: Progress = _quiet,
    *, slot: str = "base",
) -> dict[str, Any]:
    """Baseline rounds of one revision: build, warm-up, `rounds` runs, summary."""
    config = tuple(target.repo_patterns(list(C.CONFIG_FILES)))
    sha = gitcli.resolve_commit(target.repo, rev, keep_from_head=config)
    ws = Workspace(target.root)
    ws.ensure()
    journal = Journal(ws.journal_path)
    run_id = journal.start_run("bench", target.root, spec.model_dump(), spec.metric.name)
    run_dir = ws.run_dir(run_id)
    try:
        with ws.lock_slot(slot):
            side = side_of(target, "base", rev, sha, ws.checkout(slot, sha))
            journal.add_revision(run_id, "base", rev, sha, side.tree, str(side.checkout))
            protected = target.repo_patterns(spec.protected_patterns())
            runner = Runner(spec, journal, run_id, run_dir, [side],
                            protected_blobs(target.repo, sha, protected),
                            isolation_for(target, spec, ws, sha))
            try:
                progress(f"building {rev}", None, None)
                with base_build(side.checkout, sha):
                    runner.build(side)
                runner.warmup([side])
                samples = []
                for rnd in range(rounds):
                    progress("benchmark rounds", rnd, rounds)
                    samples.append(runner.bench_once(side, "bench", rnd))
            except (StepFailed, Tampering) as e:
                raise BaseFailedError(_failed_step(
                    journal, run_id, f"{rev} cannot be measured: {e}",
                    e.tail if isinstance(e, StepFailed) else "")) from None
        result: dict[str, Any] = {
            "metric": _metric_info(spec, runner.metric_name),
            "rev": rev,
            "commit": sha,
            "rounds": rounds,
            **side_dict([s.value for s in samples]),
            "flags": ["high_cv"] if result_cv(samples) >= C.HIGH_CV else [],
            "reason": "",
            "run_id": run_id,
            "logs": str(run_dir),
        }
        _flag_drift(journal, run_id, side.tree, result, result["median"], spec)
        journal.finish_run(run_id, "done", result=result)
        return result
    except BaseFailedError as e:
        journal.finish_run(run_id, "error", error=str(e))
        raise
    except BaseException as e:
        journal.finish_run(run_id, "interrupted", error=type(e).__name__)
        raise
    finally:
        journal.close()
