"""Commands before the loop: `init`, `research`, `bench`, `compare`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from readfirst.core import constants as C
from readfirst.core.config import Spec
from readfirst.core.errors import ConfigError
from readfirst.frontends.cli_common import (
    err,
    load_target,
    locked,
    out,
    progress_view,
    sandboxed,
)
from readfirst.frontends.cli_options import example, json_option, no_sandbox_option, target_option


@click.command(epilog=example("readfirst init", "readfirst init -C ../project --force"))
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
    with progress_view(not as_json or err.is_terminal) as view:
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


@click.command(epilog=example("readfirst bench", "readfirst bench WORKTREE --rounds 10 --json"))
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

    target, spec = load_target(directory)
    spec = sandboxed(spec, no_sandbox)
    n = rounds or max(spec.compare.rounds, C.BENCH_ROUNDS)
    locked(target, lambda: _measure_and_print(
        lambda progress: run_bench(target, rev, spec, n, progress), print_bench, as_json))


@click.command(epilog=example("readfirst compare main WORKTREE",
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

    target, spec = load_target(directory)
    spec = _overrides(spec, rounds=rounds, max_rounds=max_rounds, mode=mode,
                      noise_threshold=noise_threshold, alpha=alpha, warmup=warmup)
    spec = sandboxed(spec, no_sandbox)
    locked(target, lambda: _measure_and_print(
        lambda progress: run_compare(target, base, cand, spec, progress), print_compare,
        as_json))


@click.command(epilog=example("readfirst research", "readfirst research --offline --no-profile",
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

    target, spec = load_target(directory)
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
