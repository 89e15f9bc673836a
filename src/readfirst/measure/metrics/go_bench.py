"""Go's benchmark text format (`go test -bench`, the format benchstat reads).

    BenchmarkEncode/format=json-48   690848   1726 ns/op   120 B/op   3 allocs/op

A result line is `Benchmark<Name> <iterations> <value> <unit> [<value> <unit> ...]` (the
name continues with an upper-case letter, a digit, `_`, `/` or `-`, or ends); configuration
lines (`goos: linux`) and everything else (`PASS`, `ok ...`) are skipped. As metrics, each
benchmark gives `<Name>` -> its first unit's value (ns/op for `go test`) and `<Name> <unit>`
for the others, averaged over repeated lines; `Benchmark` is dropped from the name, as
benchstat does. A result line that does not parse is an error naming the line.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from statistics import fmean

from readfirst.measure.metrics._common import MetricParseError

FORMAT = "go-bench"

_RESULT = re.compile(r"Benchmark(?=$|[^a-z])(\S*)\s+(.*)")


@dataclass
class GoResult:
    """One result line: the benchmark's name, iterations and value per unit, in order."""

    name: str
    iterations: int
    values: dict[str, float] = field(default_factory=dict)
    line: int = 0


def parse_results(text: str) -> list[GoResult]:
    """Every result line, in order; MetricParseError names the first malformed one."""
    out: list[GoResult] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        match = _RESULT.fullmatch(raw.strip())
        if match is None:
            continue
        name, rest = match.group(1), match.group(2).split()
        where = f"{FORMAT}: line {number}"
        if not name:
            raise MetricParseError(f"{where}: expected a benchmark name after 'Benchmark'")
        if not rest or not rest[0].isdigit():
            raise MetricParseError(
                f"{where}: expected an iteration count after {('Benchmark' + name)!r}, "
                f"got {rest[0] if rest else 'nothing'!r}")
        pairs = rest[1:]
        if not pairs or len(pairs) % 2:
            raise MetricParseError(
                f"{where}: expected '<value> <unit>' pairs after the iteration count, got "
                f"{' '.join(pairs) or 'nothing'!r}")
        result = GoResult(name, int(rest[0]), line=number)
        for value, unit in zip(pairs[::2], pairs[1::2], strict=True):
            try:
                number_value = float(value)
            except ValueError:
                raise MetricParseError(
                    f"{where}: expected a number before unit {unit!r}, got {value!r}") from None
            if not math.isfinite(number_value):
                raise MetricParseError(f"{where}: {unit} of {name} is not finite ({value})")
            result.values.setdefault(unit, number_value)
        out.append(result)
    return out


def parse(text: str) -> dict[str, float]:
    """Metrics from Go benchmark output (means over repeated lines of the same benchmark)."""
    collected: dict[str, list[float]] = {}
    for result in parse_results(text):
        for i, (unit, value) in enumerate(result.values.items()):
            key = result.name if i == 0 else f"{result.name} {unit}"
            collected.setdefault(key, []).append(value)
    return {name: fmean(values) for name, values in collected.items()}
