"""hyperfine `--export-json`: `{"results": [{"command", "mean", "median", "min", ...}]}`.

Each result gives `<command>` -> mean, `<command>.median` and `<command>.min` (seconds).
With exactly one result, plain `mean`, `median`, `min`, `max` and `stddev` are added.
A command with a non-zero (or signal, null) exit code is an error: its timings are invalid.
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
    type_name,
)

FORMAT = "hyperfine-json"
_STATS = ("mean", "median", "min", "max")


def parse(text: str) -> dict[str, float]:
    """Metrics from a hyperfine JSON export."""
    document = load_json_object(FORMAT, text, "results")
    results = require_list(FORMAT, document, "results", ROOT)
    metrics: dict[str, float] = {}
    names = UniqueNames()
    single: dict[str, float | None] = {}
    for index, raw in enumerate(results):
        where = f"results[{index}]"
        result = require_object(FORMAT, raw, where)
        command = require_str(FORMAT, result, "command", where)
        label = f" (command {command!r})"
        stats = {key: require_number(FORMAT, result, key, where, label=label) for key in _STATS}
        # hyperfine writes "stddev": null when a command ran only once.
        stats["stddev"] = (
            require_number(FORMAT, result, "stddev", where, nullable=True, label=label)
            if "stddev" in result
            else None
        )
        _check_exit_codes(result, where, label)
        name = names.allocate(command)
        put(metrics, name, stats["mean"])
        put(metrics, f"{name}.median", stats["median"])
        put(metrics, f"{name}.min", stats["min"])
        single = stats
    if len(results) == 1:
        for key in ("mean", "median", "min", "max", "stddev"):
            put(metrics, key, single[key])
    return metrics


def _check_exit_codes(result: dict[str, object], where: str, label: str) -> None:
    """Refuse a result whose runs did not all exit 0 (exit_codes is absent before 1.13)."""
    codes = result.get("exit_codes")
    if codes is None:
        return
    if not isinstance(codes, list):
        raise MetricParseError(
            f"{FORMAT}: expected {where}.exit_codes to be an array, got {type_name(codes)}{label}"
        )
    failed = [code for code in codes if code != 0 or isinstance(code, bool)]
    if failed:
        shown = ", ".join(dict.fromkeys("null (signal)" if c is None else str(c) for c in failed))
        raise MetricParseError(
            f"{FORMAT}: command {result['command']!r} exited non-zero in {len(failed)} of "
            f"{len(codes)} runs ({where}.exit_codes: {shown}); "
            "its timings are not valid measurements"
        )
