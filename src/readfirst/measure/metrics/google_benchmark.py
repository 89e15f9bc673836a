"""Google Benchmark `--benchmark_format=json` / `--benchmark_out`: `{"context", "benchmarks"}`.

Entries are grouped by run_name (name in old versions). Each group gives `<run_name>` ->
real_time and `<run_name>.cpu_time`, taken from the "mean" aggregate when there is one, else
averaged over the iteration entries, in the benchmark's own time_unit (not converted). Other
aggregates give `<run_name>.<aggregate_name>` (real_time; cv is a fraction). Entries with
error_occurred are skipped, so a failed benchmark's metrics are missing.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from statistics import fmean
from typing import Any

from readfirst.measure.metrics._common import (
    MetricParseError,
    as_finite,
    json_entries,
    put,
    require_number,
    require_str,
    type_name,
)

FORMAT = "google-benchmark-json"


@dataclass
class _Run:
    """What one run_name collected: iteration timings and aggregates, with time units."""

    real: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    units: dict[str, str] = field(default_factory=dict)  # unit -> where first seen
    aggregates: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)


def parse(text: str) -> dict[str, float]:
    """Metrics from a Google Benchmark JSON report."""
    runs: dict[str, _Run] = {}
    for where, entry in json_entries(FORMAT, text, "benchmarks"):
        if entry.get("error_occurred"):
            continue
        name, run_name = _names(entry, where)
        label = f" (benchmark {name!r})"
        run_type = entry.get("run_type", "iteration")  # absent before v1.5
        real = require_number(FORMAT, entry, "real_time", where, label=label)
        cpu = require_number(FORMAT, entry, "cpu_time", where, label=label)
        run = runs.setdefault(run_name, _Run())
        if run_type == "aggregate":
            aggregate = require_str(FORMAT, entry, "aggregate_name", where, label=label)
            if aggregate == "mean":
                _note_unit(run, entry, where, label)
            run.aggregates.setdefault(aggregate, (real, cpu))
        elif run_type == "iteration":
            _note_unit(run, entry, where, label)
            if real is not None:
                run.real.append(real)
            if cpu is not None:
                run.cpu.append(cpu)
        else:
            raise MetricParseError(
                f"{FORMAT}: expected {where}.run_type to be 'iteration' or 'aggregate', "
                f"got {type_name(run_type)}{label}"
            )
    metrics: dict[str, float] = {}
    for run_name, run in runs.items():
        mean_real, mean_cpu = run.aggregates.get("mean", (None, None))
        put(metrics, run_name, mean_real if mean_real is not None else _mean(run.real))
        put(metrics, f"{run_name}.cpu_time", mean_cpu if mean_cpu is not None else _mean(run.cpu))
        for aggregate, (agg_real, _) in run.aggregates.items():
            if aggregate != "mean":
                put(metrics, f"{run_name}.{aggregate}", agg_real)
    return metrics


def iterations(text: str) -> Iterator[tuple[str, str, float]]:
    """(run_name, time_unit, real_time) of every iteration entry: the samples of repetitions
    (`readfirst judge`); aggregates and failed runs are skipped."""
    for where, entry in json_entries(FORMAT, text, "benchmarks"):
        if entry.get("error_occurred") or entry.get("run_type", "iteration") != "iteration":
            continue
        name, run_name = _names(entry, where)
        value = require_number(FORMAT, entry, "real_time", where, label=f" (benchmark {name!r})")
        if value is not None:
            yield run_name, str(entry.get("time_unit", "ns")), value


def _names(entry: dict[str, Any], where: str) -> tuple[str, str]:
    """The entry's name and run_name (its name in versions without run_name)."""
    name = require_str(FORMAT, entry, "name", where)
    return name, require_str(FORMAT, entry, "run_name", where) if "run_name" in entry else name


def _mean(values: list[float]) -> float | None:
    """Arithmetic mean of finite values, None when empty or when it overflows."""
    if not values:
        return None
    try:
        return as_finite(fmean(values))
    except OverflowError:
        return None


def _note_unit(run: _Run, entry: dict[str, Any], where: str, label: str) -> None:
    """Refuse a run_name whose timings mix time units (their mean would be meaningless)."""
    unit = entry.get("time_unit", "ns")  # always written; ns is Google Benchmark's default
    if not isinstance(unit, str):
        raise MetricParseError(
            f"{FORMAT}: expected {where}.time_unit to be a string, got {type_name(unit)}{label}"
        )
    if run.units and unit not in run.units:
        other, first_where = next(iter(run.units.items()))
        raise MetricParseError(
            f"{FORMAT}: {where} is in {unit} but {first_where} of the same run is in {other}{label}"
        )
    run.units.setdefault(unit, where)
