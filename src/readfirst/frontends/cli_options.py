"""Click options shared by every command module."""

from __future__ import annotations

from pathlib import Path

import click

target_option = click.option(
    "-C",
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="The target's directory (holding readfirst.toml).",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
run_id_option = click.option("--run", "run_id", help="Run id (default: the latest).")


def example(*lines: str) -> str:
    """A command's epilog: its examples, kept as written (click rewraps plain epilogs)."""
    return "\b\nExamples:\n" + "\n".join(f"  {ln}" for ln in lines)
no_sandbox_option = click.option(
    "--no-sandbox", is_flag=True,
    help="Run build/bench/checks without the bwrap sandbox (only for code you trust).")
