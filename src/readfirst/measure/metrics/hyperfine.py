"""hyperfine `--export-json`: `{"results": [{"command", "mean", "median", "min", ...}]}`.

Each result gives `<command>` -> mean, `<command>.median` and `<command>.min` (seconds).
With exactly one result, plain `mean`, `median`, `min`, `max` and `stddev` are added.
A command with a non-zero (or signal, null) exit code is an error: its timings are invalid.
`samples` reads every run's time instead (`readfirst judge`).
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
    require_str,
    type_name,
)

FORMAT = "hyperfine-json"
_STATS = ("mean", "median", "min", "max")


def results(text: str) -> Iterator[tuple[str, str, str, dict[str, Any]]]:
    """Each result's command, JSON path, error label and object."""
    for where, result in json_entries(FORMAT, text, "results"):
        command = require_str(FORMAT, result, "command", where)
        yield command, where, f" (command {command!r})", result


def samples(text: str) -> Iterator[tuple[str, float]]:
    """(command, seconds) for every run of every command (`times`); a repeated command gets
    `#2`, `#3`, ... as in `parse`."""
    names = UniqueNames()
    for command, where, label, result in results(text):
        name = names.allocate(command)
        for value in require_numbers(FORMAT, result.get("times"), f"{where}.times", label):
            yield name, value


def parse(text: str) -> dict[str, float]:
    """Metrics from a hyperfine JSON export."""
    metrics: dict[str, float] = {}
    names = UniqueNames()
    single: dict[str, float | None] = {}
    count = 0
    for command, where, label, result in results(text):
        count += 1
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
    if count == 1:
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
