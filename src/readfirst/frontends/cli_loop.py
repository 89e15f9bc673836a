"""Commands that run the loop: `run`, `demo`, and `clean` after it."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import click

from readfirst.core import constants as C
from readfirst.core.config import load_spec
from readfirst.core.errors import ConfigError
from readfirst.frontends.cli_common import (
    err,
    load_target,
    locked,
    out,
    sandboxed,
)
from readfirst.frontends.cli_options import example, json_option, no_sandbox_option, target_option


@click.command(epilog=example("readfirst demo", "readfirst demo --dir /tmp/rf-demo --workers 1"))
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
    spec = sandboxed(load_spec(target_dir), False)
    target = target_at(target_dir)
    say("research (offline): profile, memory bandwidth, fork commits, multi-pass code ...")
    found = research_target(target, spec, offline=True)
    say(f"research: {len(found.hypotheses)} hypotheses; "
        f"{(found.diagnosis or {}).get('conclusion', 'no diagnosis')}; brief: {found.brief}")
    opts = LoopOptions(proposer="forks", workers=workers)
    with _live(target, not as_json) as live:
        summary = locked(target, lambda: run_loop(
            target, spec, opts, say=live.say if not as_json else say))
    summary["demo_dir"] = str(target_dir.parent)
    summary["brief"] = found.brief
    _print_summary(summary, as_json)
    if not as_json:
        exe = ("readfirst" if shutil.which("readfirst") else f"{sys.executable} -m readfirst"
               if Path(sys.argv[0]).name == "__main__.py" else str(Path(sys.argv[0]).resolve()))
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


@click.command(epilog=example("readfirst run --proposer forks --workers 2",
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

    target, spec = load_target(directory)
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
    spec = sandboxed(spec, no_sandbox, thinking=_thinking(proposer, resume, target))
    with _live(target, not as_json) as live:
        summary = locked(target, lambda: run_loop(
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


@click.command(epilog=example("readfirst clean", "readfirst clean --branches"))
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
