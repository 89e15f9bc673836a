"""Commands that watch and ship a run: `readfirst finalize` (and `dashboard`), registered by
cli.py like the agent commands."""

from __future__ import annotations

import json
from pathlib import Path

import click

from readfirst.cli_options import json_option, target_option


def _example(*lines: str) -> str:
    return "\b\nExamples:\n" + "\n".join(f"  {ln}" for ln in lines)


@click.command("finalize", epilog=_example(
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
    from readfirst.cli import _load, _loop_summary, _progress, err, out
    from readfirst.errors import ConfigError
    from readfirst.finalize import finalize as run_finalize
    from readfirst.finalize import open_prs, push, require_gh

    if open_pr and not remote:
        raise ConfigError("--pr needs --push REMOTE (a pull request's branch must be pushed)")
    if open_pr:
        require_gh()
    target, spec = _load(directory)
    summary = _loop_summary(directory, run_id)
    if summary["status"] == "running":
        raise ConfigError(f"run {summary['run_id']} is still running; finalize it when done")

    def say(message: str) -> None:
        if not as_json:
            err.print(message, markup=False, highlight=False)

    with _progress(not as_json or err.is_terminal) as view:
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
