"""Command line: `readfirst init | bench | compare | research | run | status | report | export |
demo | clean`.

Exit codes: 0 a verdict was reached (any verdict), 2 usage or config error, 3 the base itself
cannot be built or benchmarked, 130 interrupted.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import click
from rich.console import Console

from readfirst.core import constants as C
from readfirst.core.config import Spec, load_spec
from readfirst.core.errors import ConfigError, ReadfirstError
from readfirst.frontends.cli_options import example, json_option, no_sandbox_option, target_option
from readfirst.measure.process import kill_all_live
from readfirst.vcs.gitcli import GitError
from readfirst.vcs.workspace import describe_fault

# Piped output gets a wide page instead of rich's 80 columns, so tables keep one row per line.
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 150)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def _fail(e: ReadfirstError) -> NoReturn:
    err.print(f"readfirst: error: {e}", markup=False, soft_wrap=True)
    sys.exit(e.exit_code)


def _on_sigterm(_signo: int, _frame: object) -> None:
    raise KeyboardInterrupt


# `readfirst --help` lists commands in the order a user needs them, not alphabetically.
WORKFLOW_ORDER = ("init", "research", "bench", "compare", "judge", "run", "status", "dashboard",
                  "report", "finalize", "export", "demo", "clean", "mcp", "playbook")


class _Group(click.Group):
    """Maps readfirst's errors and interrupts to the documented exit codes; lists commands in
    workflow order; suggests the closest command for a typo."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        names = super().list_commands(ctx)
        rank = {n: i for i, n in enumerate(WORKFLOW_ORDER)}
        return sorted(names, key=lambda n: (rank.get(n, len(rank)), n))

    def resolve_command(self, ctx: click.Context, args: list[str]) -> Any:
        name = args[0] if args else ""
        if name and not name.startswith("-") and self.get_command(ctx, name) is None:
            import difflib

            close = difflib.get_close_matches(name, self.list_commands(ctx), n=2, cutoff=0.5)
            hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            raise click.UsageError(f"No such command {name!r}.{hint} "
                                   "(`readfirst --help` lists them)", ctx)
        return super().resolve_command(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        signal.signal(signal.SIGTERM, _on_sigterm)
        try:
            return super().invoke(ctx)
        except ReadfirstError as e:
            _fail(e)
        except (OSError, sqlite3.Error, GitError) as e:
            fault = describe_fault(e)
            if fault is None:
                raise
            _fail(fault)
        except KeyboardInterrupt:
            kill_all_live()
            err.print("readfirst: interrupted; the journal marks the run as interrupted")
            sys.exit(C.EXIT_INTERRUPTED)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"],
                                           "max_content_width": 100},
             epilog=example("readfirst init && readfirst research",
                            "readfirst run --proposer forks --workers 2",
                            "readfirst -C ../project status"))
@click.option("-C", "chdir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Run as if readfirst was started in this directory (as `git -C`).")
@click.version_option(package_name="readfirst")
def cli(chdir: Path | None) -> None:
    """Research-driven optimisation with measurement you can trust.

    The usual order: init, research, bench, run (or compare), status / dashboard, report,
    finalize.
    """
    if chdir is not None:
        os.chdir(chdir)


def main() -> None:
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.ClickException as e:  # usage errors: exit 2 with click's one-line message
        e.show()
        sys.exit(C.EXIT_USAGE)
    except click.exceptions.Abort:
        sys.exit(C.EXIT_INTERRUPTED)




def _load(directory: Path) -> tuple[Any, Spec]:
    from readfirst.vcs.workspace import target_at

    target = target_at(directory)
    return target, load_spec(target.root)


def _sandboxed(spec: Spec, no_sandbox: bool, thinking: bool = False) -> Spec:
    """The spec as it will run: --no-sandbox, or bwrap unusable here (one line, and a
    refusal for proposers whose code is written by a model)."""
    from readfirst.measure.sandbox import probe

    why = None if no_sandbox or not spec.target.sandbox else probe()
    if why is not None and thinking:
        raise ConfigError(f"{why}; LLM and agent candidates only run in the sandbox "
                          "(--no-sandbox runs them unconfined)")
    if why is not None:
        err.print(f"readfirst: warning: {why}; build, benchmark and checks run WITHOUT the "
                  "sandbox", markup=False)
    if no_sandbox or why is not None:
        return spec.model_copy(update={"target": spec.target.model_copy(
            update={"sandbox": False})})
    return spec


def _locked(target: Any, work: Callable[[], Any]) -> Any:
    """Run `work` holding the target's run lock (one run per target)."""
    from readfirst.vcs.workspace import Workspace

    with Workspace(target.root).run_lock():
        return work()


def _progress(enabled: bool):  # type: ignore[no-untyped-def]
    from readfirst.frontends.render import ProgressView

    return ProgressView(err, enabled)


@cli.command(epilog=example("readfirst init", "readfirst init -C ../project --force"))
@target_option
@click.option("--force", is_flag=True, help="Overwrite an existing readfirst.toml.")
def init(directory: Path, force: bool) -> None:
    """Write a commented readfirst.toml from what the target has.

    Finds the build (CMake, make, cargo) and the benchmark the project already has
    (autoresearch.sh, .auto/, bench.sh, a `make bench` target, `cargo bench`, pytest-benchmark);
    when there is none it writes a stub autoresearch.sh that says what to fill in.
    """
    from readfirst.frontends.init_spec import write_init

    path, notes = write_init(directory.resolve(), force=force)
    click.echo(f"wrote {path}")
    for note in notes:
        click.echo(f"  note: {note}")


def _measure_and_print(measure: Any, printer: Any, as_json: bool) -> None:
    """Run a measurement with progress on stderr, then print JSON or the human table."""
    with _progress(not as_json or err.is_terminal) as view:
        result = measure(view.update)
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        printer(out, result)


def _overrides(spec: Spec, **kw: Any) -> Spec:
    upd = {k: v for k, v in kw.items() if v is not None}
    if not upd:
        return spec
    merged = {**spec.compare.model_dump(), **upd}
    try:
        compare = type(spec.compare).model_validate(merged)
    except Exception as e:
        raise ConfigError(f"command-line options: {e}") from None
    return spec.model_copy(update={"compare": compare})


@cli.command(epilog=example("readfirst bench", "readfirst bench WORKTREE --rounds 10 --json"))
@click.argument("rev", default="HEAD")
@target_option
@click.option("--rounds", type=click.IntRange(min=2),
              help="Runs (default: 5, or [compare] rounds if larger).")
@no_sandbox_option
@json_option
def bench(rev: str, directory: Path, rounds: int | None, no_sandbox: bool,
          as_json: bool) -> None:
    """Benchmark one revision: median, mean ± sd, CV.

    REV defaults to HEAD; WORKTREE means HEAD plus your uncommitted changes.
    """
    from readfirst.frontends.render import print_bench
    from readfirst.measure.compare import bench as run_bench

    target, spec = _load(directory)
    spec = _sandboxed(spec, no_sandbox)
    n = rounds or max(spec.compare.rounds, C.BENCH_ROUNDS)
    _locked(target, lambda: _measure_and_print(
        lambda progress: run_bench(target, rev, spec, n, progress), print_bench, as_json))


@cli.command(epilog=example("readfirst compare main WORKTREE",
                            "readfirst compare v1.2 HEAD --mode duet --json"))
@click.argument("base")
@click.argument("cand")
@target_option
@click.option("--rounds", type=click.IntRange(min=1),
              help="Rounds per batch (default: [compare] rounds).")
@click.option("--max-rounds", type=click.IntRange(min=1),
              help="Most rounds in all before `inconclusive`.")
@click.option("--mode", type=click.Choice(["interleaved", "duet"]),
              help="interleaved: one side after the other in random order; duet: both at once "
                   "on disjoint pinned CPUs.")
@click.option("--noise-threshold", type=float, help="Relative change that counts as none.")
@click.option("--alpha", type=float, help="Family-wise false-verdict rate.")
@click.option("--warmup", type=click.IntRange(min=0), help="Unrecorded runs per side first.")
@no_sandbox_option
@json_option
def compare(
    base: str,
    cand: str,
    directory: Path,
    rounds: int | None,
    max_rounds: int | None,
    mode: str | None,
    noise_threshold: float | None,
    alpha: float | None,
    warmup: int | None,
    no_sandbox: bool,
    as_json: bool,
) -> None:
    """Is CAND faster than BASE beyond the noise?

    Both revisions are built in worktrees under .readfirst/ and benchmarked in randomised
    interleaved rounds; WORKTREE means HEAD plus your uncommitted changes (readfirst.toml is
    read from your tree, never from either revision).
    """
    from readfirst.frontends.render import print_compare
    from readfirst.measure.compare import compare as run_compare

    target, spec = _load(directory)
    spec = _overrides(spec, rounds=rounds, max_rounds=max_rounds, mode=mode,
                      noise_threshold=noise_threshold, alpha=alpha, warmup=warmup)
    spec = _sandboxed(spec, no_sandbox)
    _locked(target, lambda: _measure_and_print(
        lambda progress: run_compare(target, base, cand, spec, progress), print_compare,
        as_json))


@cli.command(epilog=example("readfirst demo", "readfirst demo --dir /tmp/rf-demo --workers 1"))
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path),
              help="Where to make the demo (default: a new temp dir).")
@click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True,
              help="Experiments measured at once, each in its own worktrees.")
@json_option
def demo(directory: Path | None, workers: int, as_json: bool) -> None:
    """The whole loop, offline, on a bundled C library and its fork.

    Copies the demo target and a competing fork to a temp dir, researches it and runs the
    loop; prints where the report is.
    """
    from readfirst.frontends.demo import make_demo
    from readfirst.loop.loop import LoopOptions, run_loop
    from readfirst.research.orchestrate import research_target
    from readfirst.vcs.workspace import target_at

    target_dir, fork = make_demo(directory)
    say = _say(as_json)
    if not as_json:
        out.print(f"demo target: {target_dir}\ncompeting fork: {fork}\n", markup=False)
    spec = _sandboxed(load_spec(target_dir), False)
    target = target_at(target_dir)
    say("research (offline): profile, memory bandwidth, fork commits, multi-pass code ...")
    found = research_target(target, spec, offline=True)
    say(f"research: {len(found.hypotheses)} hypotheses; "
        f"{(found.diagnosis or {}).get('conclusion', 'no diagnosis')}; brief: {found.brief}")
    opts = LoopOptions(proposer="forks", workers=workers)
    with _live(target, not as_json) as live:
        summary = _locked(target, lambda: run_loop(
            target, spec, opts, say=live.say if not as_json else say))
    summary["demo_dir"] = str(target_dir.parent)
    summary["brief"] = found.brief
    _print_summary(summary, as_json)
    if not as_json:
        exe = "readfirst" if shutil.which("readfirst") else str(Path(sys.argv[0]).resolve())
        out.print(f"\nTry it yourself: cd {target_dir} && {exe} status", markup=False)


def _live(target: Any, enabled: bool):  # type: ignore[no-untyped-def]
    """One live line per running experiment under the loop's messages (on a terminal)."""
    from readfirst.frontends.live import LiveRun

    return LiveRun(err, target.root / C.STATE_DIR / C.JOURNAL_FILE, enabled)


def _say(as_json: bool):  # type: ignore[no-untyped-def]
    def say(message: str) -> None:
        if not as_json:
            err.print(message, markup=False, highlight=False)
    return say


def _print_summary(summary: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    from readfirst.report.status import status_table

    out.print(status_table(summary))
    kept = [e for e in summary["experiments"] if e["outcome"] == "kept" and e["kind"] == "confirm"]
    out.print(f"\n{len(kept)} kept on branch {summary['branch']} "
              f"({summary['stop_reason']})", markup=False)
    if summary.get("brief"):
        out.print(f"research brief: {summary['brief']}", markup=False)
    if summary.get("report"):
        out.print(f"report: {summary['report']}", markup=False)


@cli.command(epilog=example("readfirst run --proposer forks --workers 2",
                            "readfirst run --proposer patches --patches ideas/ --max-time 3600",
                            "readfirst run --proposer agent --max-cost 5",
                            "readfirst run --resume"))
@target_option
@click.option("--proposer", type=str,
              help="Where candidates come from: forks (commits of [research] competitors), "
                   "patches (--patches DIR), agent (an LLM or coding-agent CLI, [agent]), or a "
                   "plugin's name.")
@click.option("--patches", "patches_dir", type=click.Path(file_okay=False),
              help="Directory of .patch/.diff files (proposer patches).")
@click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True,
              help="Experiments measured at once, each in its own worktrees.")
@click.option("--max-experiments", type=click.IntRange(min=1),
              help="Stop after this many candidates were tried (confirmations not counted).")
@click.option("--max-time", type=click.FloatRange(min=0),
              help="Seconds; no experiment starts after.")
@click.option("--patience", type=click.IntRange(min=1), help="Stop after K non-wins in a row.")
@click.option("--pin-cpus", is_flag=True, help="Pin each worker to its own CPUs.")
@click.option("--base", default="HEAD", show_default=True, help="Revision to start from.")
@click.option("--executor", type=click.Choice(["local", "ray", "skypilot"]),
              help="Where experiments run (default: [executor] kind, else local).")
@click.option("--dry-run", is_flag=True, help="SkyPilot: write the task YAMLs, launch nothing.")
@click.option("--max-cost", type=click.FloatRange(min=0), help="USD, compute + API.")
@click.option("--waves", is_flag=True,
              help="Waves of W candidates: wait for the slowest, then confirm winners one by one.")
@click.option("--resume", is_flag=True, help="Continue the last interrupted run.")
@no_sandbox_option
@json_option
def run(directory: Path, proposer: str | None, patches_dir: str | None, workers: int,
        max_experiments: int | None, max_time: float | None, patience: int | None,
        pin_cpus: bool, base: str, executor: str | None, dry_run: bool,
        max_cost: float | None, waves: bool, resume: bool, no_sandbox: bool,
        as_json: bool) -> None:
    """The loop: propose, measure in parallel, keep real winners.

    Each candidate is measured against the current baseline on its own worker; a winner is
    re-measured on another worker and lands as a commit on branch readfirst/<run-id>.
    """
    from click.core import ParameterSource

    from readfirst.loop.loop import LoopOptions, run_loop
    from readfirst.loop.loop_setup import with_loop_table

    target, spec = _load(directory)
    ctx = click.get_current_context()
    given = {n for n in ctx.params if ctx.get_parameter_source(n) is ParameterSource.COMMANDLINE}
    v = with_loop_table(spec.loop, target.root, dict(
        proposer=proposer, patches_dir=patches_dir, workers=workers,
        max_experiments=max_experiments, max_time=max_time, patience=patience,
        max_cost=max_cost, pin_cpus=pin_cpus, waves=waves, executor=executor), given)
    proposer, patches_dir, workers, executor = (v["proposer"], v["patches_dir"], v["workers"],
                                                v["executor"])
    opts = None
    if not resume:
        if proposer is None:
            raise ConfigError("--proposer is required (forks or patches), or use --resume")
        if proposer == "patches" and not patches_dir:
            raise ConfigError("--proposer patches needs --patches DIR")
        opts = LoopOptions(proposer=proposer, workers=workers,
                           max_experiments=v["max_experiments"], max_time=v["max_time"],
                           patience=v["patience"], pin_cpus=v["pin_cpus"], base=base,
                           executor=executor, dry_run=dry_run, max_cost=v["max_cost"],
                           waves=v["waves"],
                           patches_dir=str(Path(patches_dir).resolve()) if patches_dir else None)
    from readfirst.measure.timedlock import oversubscribed

    warning = opts and oversubscribed(opts.workers, spec, opts.executor)  # resume: as before
    if warning:
        err.print(f"warning: {warning}", markup=False, highlight=False)
    spec = _sandboxed(spec, no_sandbox, thinking=_thinking(proposer, resume, target))
    with _live(target, not as_json) as live:
        summary = _locked(target, lambda: run_loop(
            target, spec, opts, resume=resume,
            say=live.say if not as_json else _say(as_json)))
    if dry_run and not as_json:
        for e in summary["experiments"]:
            if e["status"] == "dry_run":
                click.echo(e["reason"].removeprefix("wrote "))
        return
    _print_summary(summary, as_json)


def _thinking(proposer: str | None, resume: bool, target: Any) -> bool:
    """Is the proposer (or, on --resume, the run's) one whose code a model writes?"""
    if resume:
        from readfirst.store.journal import Journal
        from readfirst.store.loop_journal import LoopLog
        from readfirst.vcs.workspace import Workspace

        ws = Workspace(target.root)
        if ws.journal_path.exists():
            journal = Journal(ws.journal_path)
            try:
                row = LoopLog(journal).get()
                if row is not None:
                    proposer = json.loads(row["options_json"])["loop"]["proposer"]
            finally:
                journal.close()
    return proposer not in (None, "forks", "patches")


def _loop_summary(directory: Path, run_id: str | None) -> dict[str, Any]:
    from readfirst.store.journal import Journal
    from readfirst.store.loop_journal import LoopLog
    from readfirst.vcs.workspace import Workspace, target_at

    ws = Workspace(target_at(directory).root)
    if not ws.journal_path.exists():
        raise ConfigError(f"{ws.state}: no journal yet (run `readfirst run` first)")
    journal = Journal(ws.journal_path)
    try:
        log = LoopLog(journal)
        row = log.get(run_id)
        if row is None:
            raise ConfigError(f"no run {run_id!r} in the journal" if run_id else "no runs yet")
        return log.summary(row["id"])
    finally:
        journal.close()


@cli.command(epilog=example("readfirst research", "readfirst research --offline --no-profile",
                            "readfirst research --source papers --source forks --json"))
@target_option
@click.option("--offline", is_flag=True, help="Only local sources and caches.")
@click.option("--no-profile", is_flag=True, help="Skip the profiled benchmark run.")
@click.option("--source", "sources", multiple=True, help="Run only these sources (repeat).")
@json_option
def research(directory: Path, offline: bool, no_profile: bool, sources: tuple[str, ...],
             as_json: bool) -> None:
    """Do the homework: a cited brief with ranked hypotheses.

    Profiles the benchmark, measures memory bandwidth, reads competing forks and the project's
    history, sibling backends and papers; writes .readfirst/research/brief.md.
    """
    from readfirst.research.orchestrate import research_target

    target, spec = _load(directory)
    result = research_target(target, spec, offline=offline, only=list(sources) or None,
                             profile=not no_profile)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
        return
    d = result.diagnosis
    if d:
        out.print(f"diagnosis: {d.get('conclusion')}", markup=False)
    for i, h in enumerate(result.hypotheses[:10]):
        site = f"  {h.sites[0].path}:{h.sites[0].line}" if h.sites else ""
        out.print(f"{i + 1:>2}. [{h.score:.2f}] {h.title} ({h.kind}){site}", markup=False)
    if len(result.hypotheses) > 10:
        out.print(f"    ... {len(result.hypotheses) - 10} more in the brief", markup=False)
    for note in result.notes:
        err.print(f"note: {note}", markup=False)
    out.print(f"brief: {result.brief}", markup=False)


@cli.command(epilog=example("readfirst clean", "readfirst clean --branches"))
@target_option
@click.option("--branches", "with_branches", is_flag=True,
              help="Also delete the readfirst/<run-id> branches (printed with their commits "
                   "so any can be restored); without it they are listed and kept.")
def clean(directory: Path, with_branches: bool) -> None:
    """Remove readfirst's worktrees; --branches: its run branches too.

    The journal, logs and reports stay. Refused while a run is in progress.
    """
    from readfirst.frontends.housekeeping import clean_target
    from readfirst.vcs.workspace import target_at

    for line in clean_target(target_at(directory), with_branches):
        out.print(line, markup=False)


# Agent-driven mode: commands that live in their own module.
from readfirst.frontends.agent_cli_commands import mcp as _mcp_command  # noqa: E402
from readfirst.frontends.agent_cli_commands import playbook as _playbook_command  # noqa: E402

cli.add_command(_mcp_command)
cli.add_command(_playbook_command)

# Watching and shipping a run.
from readfirst.frontends import cli_ship  # noqa: E402

for _command in (cli_ship.status, cli_ship.report, cli_ship.export, cli_ship.finalize,
                 cli_ship.dashboard):
    cli.add_command(_command)

from readfirst.frontends.judge_cmd import judge as _judge_command  # noqa: E402

cli.add_command(_judge_command)
