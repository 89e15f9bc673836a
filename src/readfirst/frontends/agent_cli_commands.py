"""Agent-driven mode's commands, as standalone click commands registered by cli.py:
`readfirst mcp` (the MCP server over stdio) and `readfirst playbook` (the agent's instructions).
"""

from __future__ import annotations

from pathlib import Path

import click

from readfirst.core.errors import ConfigError
from readfirst.frontends.cli_options import target_option

_dir_option = target_option


@click.command("mcp", epilog="\b\nExamples:\n  readfirst mcp\n"
               "  claude mcp add readfirst -- readfirst -C /path/to/project mcp")
@_dir_option
def mcp(directory: Path) -> None:
    """Serve readfirst's tools to a coding agent over MCP (stdio)."""
    try:
        import mcp as _sdk  # noqa: F401 - only to give a clear message when it is missing
    except ImportError:
        raise ConfigError("the `mcp` package is not installed: pip install 'mcp>=2'") from None
    from readfirst.frontends.mcp_server import serve

    serve(directory)


@click.command("playbook", epilog="\b\nExamples:\n  readfirst playbook --agent claude\n"
               "  readfirst playbook --agent codex --print")
@click.option("--agent", type=click.Choice(["claude", "codex", "generic"]), required=True,
              help="claude -> CLAUDE.md, codex -> AGENTS.md, generic -> READFIRST.md.")
@_dir_option
@click.option("--print", "print_only", is_flag=True,
              help="Print the readfirst section instead of writing the file.")
def playbook(agent: str, directory: Path, print_only: bool) -> None:
    """Write an agent's instruction file (CLAUDE.md, AGENTS.md).

    The research-first method and readfirst's tools, as a section of the agent's file.
    """
    from readfirst.frontends.playbook import playbook_section, write_playbook

    if print_only:
        click.echo(playbook_section(directory, agent), nl=False)
        return
    click.echo(f"wrote {write_playbook(directory, agent)}")
