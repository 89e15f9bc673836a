"""pytest-benchmark `--benchmark-json`: `{"machine_info", "benchmarks": [{"name", "stats"}]}`.

Each benchmark gives `<name>` -> stats.mean, `<name>.median` and `<name>.min` (seconds).
Repeated names (same test name in two files) get `#2`, `#3`, ... in order of appearance.
`samples` reads every sample instead (`readfirst judge`): the entries of stats.data (with
--benchmark-save-data), else the benchmark's stats.mean.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from readfirst.measure.metrics._common import (
    MetricParseError,
    UniqueNames,
    json_entries,
    put,
    require_number,
    require_numbers,
    require_object,
    require_str,
)

FORMAT = "pytest-benchmark-json"


def benchmarks(text: str) -> Iterator[tuple[str, str, str, dict[str, Any]]]:
    """Each benchmark's name, JSON path, error label and stats object."""
    for where, bench in json_entries(FORMAT, text, "benchmarks"):
        name = require_str(FORMAT, bench, "name", where)
        label = f" (benchmark {name!r})"
        if "stats" not in bench:
            raise MetricParseError(f"{FORMAT}: {where} lacks 'stats'{label}")
        yield name, where, label, require_object(FORMAT, bench["stats"], f"{where}.stats",
                                                 label=label)


def samples(text: str) -> Iterator[tuple[str, float]]:
    """(name, seconds) for every sample of every benchmark."""
    for name, where, label, stats in benchmarks(text):
        if "data" in stats:
            values = require_numbers(FORMAT, stats["data"], f"{where}.stats.data", label)
        else:
            mean = require_number(FORMAT, stats, "mean", f"{where}.stats", label=label)
            values = [] if mean is None else [mean]
        for value in values:
            yield name, value


def parse(text: str) -> dict[str, float]:
    """Metrics from a pytest-benchmark JSON report."""
    metrics: dict[str, float] = {}
    names = UniqueNames()
    for name, where, label, stats in benchmarks(text):
        values = {
            key: require_number(FORMAT, stats, key, f"{where}.stats", label=label)
            for key in ("mean", "median", "min")
        }
        unique = names.allocate(name)
        put(metrics, unique, values["mean"])
        put(metrics, f"{unique}.median", values["median"])
        put(metrics, f"{unique}.min", values["min"])
    return metrics
