"""Command line: the `readfirst` group. Its commands live by workflow stage: cli_measure.py
(init, research, bench, compare), judge_cmd.py (judge), cli_loop.py (run, demo, clean),
cli_ship.py (status, dashboard, report, finalize, export), agent_cli_commands.py (mcp,
playbook); cli_common.py holds what they share.

Exit codes: 0 a verdict was reached (any verdict), 2 usage or config error, 3 the base itself
cannot be built or benchmarked, 130 interrupted.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import sys
from pathlib import Path
from typing import Any

import click

from readfirst.core import constants as C
from readfirst.core.errors import ReadfirstError
from readfirst.frontends import agent_cli_commands, cli_loop, cli_measure, cli_ship, judge_cmd
from readfirst.frontends.cli_common import err, fail
from readfirst.frontends.cli_options import example
from readfirst.measure.process import kill_all_live
from readfirst.vcs.gitcli import GitError
from readfirst.vcs.workspace import describe_fault


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
            fail(e)
        except (OSError, sqlite3.Error, GitError) as e:
            fault = describe_fault(e)
            if fault is None:
                raise
            fail(fault)
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


for _command in (cli_measure.init, cli_measure.research, cli_measure.bench, cli_measure.compare,
                 cli_loop.run, cli_loop.demo, cli_loop.clean, judge_cmd.judge,
                 cli_ship.status, cli_ship.report, cli_ship.export, cli_ship.finalize,
                 cli_ship.dashboard, agent_cli_commands.mcp, agent_cli_commands.playbook):
    cli.add_command(_command)
