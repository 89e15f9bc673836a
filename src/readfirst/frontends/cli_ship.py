"""Commands that watch and ship a run: `readfirst finalize` (and `dashboard`), registered by
cli.py like the agent commands."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from readfirst.core import constants as C
from readfirst.frontends.cli_common import err, load_target, loop_summary, out, progress_view
from readfirst.frontends.cli_options import example, json_option, run_id_option, target_option


@click.command("status", epilog=example("readfirst status", "readfirst status --watch",
                            "readfirst status --run 20261121-061500-ab12 --json"))
@target_option
@run_id_option
@click.option("--watch", is_flag=True,
              help="Follow the run until it ends: each running experiment's stage, rounds, "
                   "change so far with its CI, elapsed time and ETA.")
@json_option
def status(directory: Path, run_id: str | None, watch: bool, as_json: bool) -> None:
    """Each experiment of a run: result, change, CI, time."""
    from readfirst.frontends.live import read_states
    from readfirst.frontends.live import watch as follow
    from readfirst.report.status import status_rows, status_table

    summary = loop_summary(directory, run_id)
    journal = Path(summary["target"]) / C.STATE_DIR / C.JOURNAL_FILE
    if watch and not as_json:
        try:
            summary = follow(out, journal, lambda: loop_summary(directory, summary["run_id"]),
                             status_table)
        except KeyboardInterrupt:  # stops watching; the run itself goes on
            return
    _id, live = read_states(journal, summary["run_id"]) if summary["status"] == "running" \
        else (None, [])
    if as_json:
        click.echo(json.dumps({**{k: v for k, v in summary.items() if k != "experiments"},
                               "experiments": status_rows(summary),
                               "live": [s.model_dump() for s in live]}, indent=2))
        return
    if not watch:
        out.print(status_table(summary))
        from readfirst.store.progress import state_line

        for s in live:
            out.print(state_line(s), markup=False)
    for worker, n in sorted(summary.get("workers_noise", {}).items()):
        cv = "?" if n["cv"] is None else f"{n['cv']:.2%}"
        out.print(f"worker {worker}: baseline CV {cv}"
                  + (" (quarantined)" if n["quarantined"] else ""), markup=False)
    if summary["cost"]["total_usd"]:
        c = summary["cost"]
        out.print(f"cost: ${c['total_usd']:.4f} (compute ${c['compute_usd']:.4f}, "
                  f"API ${c['api_usd']:.4f})", markup=False)
    if summary["stop_reason"]:
        out.print(f"stopped: {summary['stop_reason']}", markup=False)


@click.command("report", epilog=example("readfirst report",
                                         "readfirst report --run 20261121-061500-ab12"))
@target_option
@run_id_option
def report(directory: Path, run_id: str | None) -> None:
    """Write a run's Markdown and self-contained HTML report."""
    from readfirst.report import write_report
    from readfirst.report.view import connect_read_only, hypotheses, machine, samples_by_seq
    from readfirst.vcs.workspace import Workspace, target_at

    summary = loop_summary(directory, run_id)
    ws = Workspace(target_at(directory).root)
    db = connect_read_only(ws.journal_path)
    try:
        samples = samples_by_seq(db, summary["run_id"])
        extra = samples, hypotheses(db), machine(db, summary["run_id"], samples)
    finally:
        db.close()
    md, html = write_report(summary, ws.state / "reports" / summary["run_id"], *extra)
    click.echo(f"{md}\n{html}")


@click.command("export", epilog=example("readfirst export --format pi-jsonl -o log.jsonl"))
@target_option
@run_id_option
@click.option("--format", "fmt", type=click.Choice(["pi-jsonl"]), required=True,
              help="pi-jsonl: pi-autoresearch's log.jsonl (a config line, a baseline row, one "
                   "row per experiment).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="File to write (default: standard output).")
def export(directory: Path, run_id: str | None, fmt: str, output: Path | None) -> None:
    """Export a run in another tool's format."""
    from readfirst.report.export import pi_jsonl

    text = pi_jsonl(loop_summary(directory, run_id))
    if output is None:
        click.echo(text, nl=False)
    else:
        tmp = output.with_name(output.name + ".tmp")
        tmp.write_text(text)
        tmp.replace(output)
        click.echo(f"wrote {output}")


@click.command("finalize", epilog=example(
    "readfirst finalize", "readfirst finalize 20261121-061500-ab12 --prefix speedup/",
    "readfirst finalize --push origin --pr"))
@click.argument("run_id", required=False, metavar="[RUN]")
@target_option
@click.option("--prefix", default="perf/", show_default=True,
              help="Branch names: PREFIX plus the winner's title as a slug.")
@click.option("--force", is_flag=True, help="Replace branches of the same names.")
@click.option("--push", "remote", metavar="REMOTE", help="Push each branch to this git remote.")
@click.option("--pr", "open_pr", is_flag=True,
              help="Open a pull request per branch with `gh pr create` (needs --push).")
@click.option("--pr-base", help="The PRs' base branch (default: the repository's default).")
@json_option
def finalize(run_id: str | None, directory: Path, prefix: str, force: bool, remote: str | None,
             open_pr: bool, pr_base: str | None, as_json: bool) -> None:
    """Turn a run's winners into independent, reviewable branches.

    Each kept winner is re-applied on the run's base alone (winners that touch the same lines,
    or that only help on top of another, are grouped), rebuilt from scratch, checked and
    re-measured; each faster one becomes a branch with commits authored by you, the evidence
    and sources in the messages, and a PR description in Markdown.
    """
    from readfirst.core.errors import ConfigError
    from readfirst.loop.finalize import finalize as run_finalize
    from readfirst.loop.finalize import open_prs, push, require_gh
    from readfirst.vcs.workspace import Workspace

    if open_pr and not remote:
        raise ConfigError("--pr needs --push REMOTE (a pull request's branch must be pushed)")
    if open_pr:
        require_gh()
    target, spec = load_target(directory)
    summary = loop_summary(directory, run_id)
    if summary["status"] == "running":
        raise ConfigError(f"run {summary['run_id']} is still running; finalize it when done")

    def say(message: str) -> None:
        if not as_json:
            err.print(message, markup=False, highlight=False)

    # it rebuilds and re-measures: one run per target, like `run`, `compare` and `bench`
    with Workspace(target.root).run_lock(), progress_view(not as_json or err.is_terminal) as view:
        result = run_finalize(target, spec, summary, prefix=prefix, force=force,
                              progress=view.update, say=say)
    if remote:
        push(target.repo, remote, result.groups)
    if open_pr:
        open_prs(target.repo, result.groups, pr_base)
    if as_json:
        click.echo(json.dumps(result.model_dump(), indent=2))
        return
    for g in result.groups:
        out.print(f"{g.branch}  {g.head[:12] if g.head else ''}  {g.title}", markup=False)
        out.print(f"  {g.evidence}", markup=False)
        out.print(f"  PR description: {g.pr_file}" + (f"\n  PR: {g.pr_url}" if g.pr_url else ""),
                  markup=False)
    for g in result.dropped:
        out.print(f"no branch: {g.title}: {g.reason}", markup=False)


@click.command("dashboard", epilog=example(
    "readfirst dashboard", "readfirst dashboard --port 9000 --run 20261121-061500-ab12"))
@target_option
@run_id_option
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; anything but 127.0.0.1 shows the journal to others.")
@click.option("--port", type=click.IntRange(min=0, max=65535), default=C.DASHBOARD_PORT,
              show_default=True, help="Port (0: any free one; the address is printed).")
def dashboard(directory: Path, run_id: str | None, host: str, port: int) -> None:
    """A live web view of a run: workers, charts, experiments.

    Read-only: the journal is opened read-only and the page only reads. Updates are pushed as
    experiments progress; the latest run is followed unless --run names one.
    """
    from readfirst.core.errors import ConfigError
    from readfirst.frontends.dashboard import bind, make_app, serve
    from readfirst.vcs.workspace import target_at

    root = target_at(directory).root
    journal = root / C.STATE_DIR / C.JOURNAL_FILE
    if not journal.is_file():
        raise ConfigError(f"{journal.parent}: no journal yet (run `readfirst run` first)")
    sock = bind(host, port)
    actual = sock.getsockname()[1]
    hosts = ["127.0.0.1", "localhost", host]
    if host not in ("127.0.0.1", "localhost", "::1"):
        err.print(f"note: listening on {host}: anyone who can reach it can read this journal",
                  markup=False)
    shown = f"[{host}]" if ":" in host else host
    click.echo(f"dashboard: http://{shown}:{actual}/  (Ctrl-C stops it)")
    sys.stdout.flush()  # the address, before the server blocks
    try:
        serve(make_app(journal, run_id, hosts=hosts), sock)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM ends the view; no run is affected
        err.print("dashboard stopped", markup=False)
