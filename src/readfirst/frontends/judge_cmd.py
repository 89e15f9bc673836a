"""`readfirst judge OLD NEW`: the compare statistics on results already measured.

Nothing pairs the runs of two result files, so each benchmark is judged unpaired: a two-sided
Wilcoxon rank-sum (Mann-Whitney U) test and a seeded bootstrap CI of the ratio of medians, then
the same rule as `compare` (`decide`): improved / regressed when significant and the whole CI is
beyond the noise threshold, no change when the CI excludes the smallest gain worth keeping.
One row per benchmark and unit, a geometric-mean row per unit; `~` where not significant.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import click
import numpy as np

from readfirst.core import constants as C
from readfirst.frontends.cli_common import out
from readfirst.frontends.cli_options import example
from readfirst.measure.samples import JUDGE_FORMATS, Series, read_side
from readfirst.measure.stats import decide, median_ci, unpaired_ratio_test


def judge_row(old: Series, new: Series, alpha: float, threshold: float) -> dict[str, Any]:
    """One benchmark: both sides' medians and CIs, the ratio, its CI, p and the verdict."""
    test = unpaired_ratio_test(old.samples, new.samples, alpha)
    verdict = decide(test, old.direction, threshold, alpha)
    verdict = {"continue": "inconclusive"}.get(verdict, verdict)
    return {
        "name": old.name,
        "unit": old.unit,
        "direction": old.direction,
        "old": _side(old.samples),
        "new": _side(new.samples),
        **test.to_dict(),
        "change": test.ratio - 1.0,
        "significant": test.p_value < alpha,
        "verdict": verdict,
    }


def _side(samples: list[float]) -> dict[str, Any]:
    low, high = median_ci(samples, C.JUDGE_SIDE_CI_LEVEL)
    median = float(np.median(samples))
    spread = None
    if low is not None and high is not None and median:
        spread = max(median - low, high - median) / abs(median)
    return {"n": len(samples), "median": median, "ci_low": low, "ci_high": high,
            "ci_spread": spread, "samples": samples}


def geomean_row(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Geometric means of the medians of the rows both sides have (positive medians only)."""
    usable = [r for r in rows if r["old"]["median"] > 0 and r["new"]["median"] > 0]
    if not usable:
        return None
    old = math.exp(sum(math.log(r["old"]["median"]) for r in usable) / len(usable))
    new = math.exp(sum(math.log(r["new"]["median"]) for r in usable) / len(usable))
    return {"old": old, "new": new, "ratio": new / old, "change": new / old - 1, "n": len(usable)}


def judge_results(old_path: Path, new_path: Path, fmt: str | None, alpha: float,
                  threshold: float, direction: str | None = None) -> dict[str, Any]:
    """The whole comparison as data (what --json prints)."""
    old_fmt, old = read_side(old_path, fmt, direction)  # type: ignore[arg-type]
    _, new = read_side(new_path, fmt or old_fmt, direction)  # type: ignore[arg-type]
    rows = [judge_row(old[k], new[k], alpha, threshold) for k in old if k in new]
    units: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        units.setdefault(row["unit"], []).append(row)
    return {
        "old": str(old_path),
        "new": str(new_path),
        "format": old_fmt,
        "alpha": alpha,
        "noise_threshold": threshold,
        "ci_level": 1 - alpha,
        "rows": rows,
        "geomean": {unit: geomean_row(unit_rows) for unit, unit_rows in units.items()},
        "only_old": [f"{n} ({u})" if u else n for n, u in old if (n, u) not in new],
        "only_new": [f"{n} ({u})" if u else n for n, u in new if (n, u) not in old],
    }


@click.command("judge", short_help="Results already measured: OLD vs NEW, benchstat-style.",
               epilog=example("readfirst judge old.txt new.txt",
                              "readfirst judge old/ new/ --format hyperfine-json --json"))
@click.argument("old", type=click.Path(path_type=Path))
@click.argument("new", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(JUDGE_FORMATS),
              help="Format of the result files (default: detected from each file).")
@click.option("--alpha", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              default=C.JUDGE_ALPHA, show_default=True, help="Significance level per row.")
@click.option("--threshold", type=click.FloatRange(min=0), default=C.DEFAULT_NOISE_THRESHOLD,
              show_default=True, help="Relative change below which a difference is noise.")
@click.option("--direction", type=click.Choice(["higher", "lower"]),
              help="Which way is better (default: from the unit; time, bytes: lower).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def judge(old: Path, new: Path, fmt: str | None, alpha: float, threshold: float,
          direction: str | None, as_json: bool) -> None:
    """Judge results already measured: OLD and NEW are files or directories of benchmark
    output (METRIC lines, hyperfine / llama-bench / Google Benchmark / pytest-benchmark JSON,
    Go benchmark text). Unpaired: rank-sum test + bootstrap CI of the ratio of medians."""
    from readfirst.frontends.render import print_judge

    result = judge_results(old, new, fmt, alpha, threshold, direction)
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:

        print_judge(out, result)
