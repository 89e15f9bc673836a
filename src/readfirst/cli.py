"""Command line: `readfirst init | bench | compare | demo | clean`.

Exit codes: 0 a verdict was reached (any verdict), 2 usage or config error, 3 the base itself
cannot be built or benchmarked, 130 interrupted.
"""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import Any, NoReturn

import click
from rich.console import Console

from readfirst import constants as C
from readfirst.config import Spec, load_spec
from readfirst.errors import ConfigError, ReadfirstError
from readfirst.process import kill_all_live

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def _fail(e: ReadfirstError) -> NoReturn:
    err.print(f"readfirst: error: {e}", markup=False, soft_wrap=True)
    sys.exit(e.exit_code)


def _on_sigterm(_signo: int, _frame: object) -> None:
    raise KeyboardInterrupt


class _Group(click.Group):
    """Maps readfirst's errors and interrupts to the documented exit codes."""

    def invoke(self, ctx: click.Context) -> Any:
        signal.signal(signal.SIGTERM, _on_sigterm)
        try:
            return super().invoke(ctx)
        except ReadfirstError as e:
            _fail(e)
        except KeyboardInterrupt:
            kill_all_live()
            err.print("readfirst: interrupted; the journal marks the run as interrupted")
            sys.exit(C.EXIT_INTERRUPTED)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="readfirst")
def cli() -> None:
    """Research-driven optimisation with measurement you can trust."""


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


def _load(directory: Path) -> tuple[Any, Spec]:
    from readfirst.compare import Target

    target = Target.at(directory)
    return target, load_spec(target.root)


def _progress(enabled: bool):  # type: ignore[no-untyped-def]
    from readfirst.render import ProgressView

    return ProgressView(err, enabled)


@cli.command()
@target_option
@click.option("--force", is_flag=True, help="Overwrite an existing readfirst.toml.")
def init(directory: Path, force: bool) -> None:
    """Write a commented readfirst.toml from what the target has."""
    from readfirst.init_spec import write_init

    path, notes = write_init(directory.resolve(), force=force)
    click.echo(f"wrote {path}")
    for note in notes:
        click.echo(f"  note: {note}")


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


@cli.command()
@click.argument("rev", default="HEAD")
@target_option
@click.option("--rounds", type=click.IntRange(min=2), help="Runs (default: [compare] rounds).")
@json_option
def bench(rev: str, directory: Path, rounds: int | None, as_json: bool) -> None:
    """Baseline rounds of one revision (default HEAD; WORKTREE = uncommitted changes)."""
    from readfirst.compare import bench as run_bench
    from readfirst.render import print_bench

    target, spec = _load(directory)
    n = rounds or max(spec.compare.rounds, 2)
    with _progress(not as_json or err.is_terminal) as view:
        result = run_bench(target, rev, spec, n, view.update)
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        print_bench(out, result)


@cli.command()
@click.argument("base")
@click.argument("cand")
@target_option
@click.option("--rounds", type=click.IntRange(min=1), help="Rounds per batch.")
@click.option("--max-rounds", type=click.IntRange(min=1), help="Most rounds in all.")
@click.option("--mode", type=click.Choice(["interleaved", "duet"]), help="How rounds run.")
@click.option("--noise-threshold", type=float, help="Relative change that counts as none.")
@click.option("--alpha", type=float, help="Family-wise false-verdict rate.")
@click.option("--warmup", type=click.IntRange(min=0), help="Unrecorded runs per side first.")
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
    as_json: bool,
) -> None:
    """Is CAND faster than BASE beyond the noise? (WORKTREE = HEAD + uncommitted changes)"""
    from readfirst.compare import compare as run_compare
    from readfirst.render import print_compare

    target, spec = _load(directory)
    spec = _overrides(spec, rounds=rounds, max_rounds=max_rounds, mode=mode,
                      noise_threshold=noise_threshold, alpha=alpha, warmup=warmup)
    with _progress(not as_json or err.is_terminal) as view:
        result = run_compare(target, base, cand, spec, view.update)
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        print_compare(out, result)


@cli.command()
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path),
              help="Where to make the demo repository (default: a new temp dir).")
@json_option
def demo(directory: Path | None, as_json: bool) -> None:
    """Make the bundled example repository and compare its base with a real speedup."""
    from readfirst.compare import Target
    from readfirst.compare import compare as run_compare
    from readfirst.demo import make_demo_repo
    from readfirst.render import print_compare

    repo = make_demo_repo(directory)
    if not as_json:
        out.print(f"demo repository: {repo}")
        out.print("comparing HEAD~1 (naive kernels) with HEAD (fused rmsnorm + softmax)\n")
    spec = load_spec(repo)
    with _progress(not as_json or err.is_terminal) as view:
        result = run_compare(Target.at(repo), "HEAD~1", "HEAD", spec, view.update)
    result["demo_repo"] = str(repo)
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        print_compare(out, result)
        out.print(f"\nTry it yourself: cd {repo} && readfirst compare HEAD~1 HEAD")


@cli.command()
@target_option
def clean(directory: Path) -> None:
    """Remove readfirst's worktrees (the journal and logs stay)."""
    from readfirst.compare import Target
    from readfirst.workspace import Workspace

    ws = Workspace(Target.at(directory).root)
    removed = ws.remove_worktrees()
    out.print(f"removed {len(removed)} worktree(s)")
