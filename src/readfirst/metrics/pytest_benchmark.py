"""pytest-benchmark `--benchmark-json`: `{"machine_info", "benchmarks": [{"name", "stats"}]}`.

Each benchmark gives `<name>` -> stats.mean, `<name>.median` and `<name>.min` (seconds).
Repeated names (same test name in two files) get `#2`, `#3`, ... in order of appearance.
"""

from __future__ import annotations

from readfirst.metrics._common import (
    ROOT,
    MetricParseError,
    UniqueNames,
    load_json_object,
    put,
    require_list,
    require_number,
    require_object,
    require_str,
)

FORMAT = "pytest-benchmark-json"


def parse(text: str) -> dict[str, float]:
    """Metrics from a pytest-benchmark JSON report."""
    document = load_json_object(FORMAT, text, "benchmarks")
    benchmarks = require_list(FORMAT, document, "benchmarks", ROOT)
    metrics: dict[str, float] = {}
    names = UniqueNames()
    for index, raw in enumerate(benchmarks):
        where = f"benchmarks[{index}]"
        bench = require_object(FORMAT, raw, where)
        name = require_str(FORMAT, bench, "name", where)
        label = f" (benchmark {name!r})"
        if "stats" not in bench:
            raise MetricParseError(f"{FORMAT}: {where} lacks 'stats'{label}")
        stats = require_object(FORMAT, bench["stats"], f"{where}.stats", label=label)
        values = {
            key: require_number(FORMAT, stats, key, f"{where}.stats", label=label)
            for key in ("mean", "median", "min")
        }
        name = names.allocate(name)
        put(metrics, name, values["mean"])
        put(metrics, f"{name}.median", values["median"])
        put(metrics, f"{name}.min", values["min"])
    return metrics
