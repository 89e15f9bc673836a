"""Results already measured, read back as samples: one series per benchmark (and unit).

`readfirst judge OLD NEW` compares two such sets. A side is a file or a directory of files
(every non-hidden regular file in it, sorted); all files of a side must be in one format,
given or detected. Per format, one sample is:

* metric-lines: one `METRIC name=value` line (a log of several runs gives several samples);
* hyperfine-json: one entry of a result's `times` (seconds), per command;
* llama-bench-json: one entry of a test's `samples_ts` (tokens/s), per test;
* google-benchmark-json: one iteration entry's `real_time` (repetitions), per run_name;
  aggregates and failed runs are skipped;
* pytest-benchmark-json: one entry of `stats.data` (with --benchmark-save-data), else the
  file's `stats.mean`, per benchmark;
* go-bench: one result line, for each of its units.

A malformed file is a ConfigError (exit 2) naming the file and the line (or JSON path).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from readfirst.core.errors import ConfigError
from readfirst.measure.metrics import (
    go_bench,
    google_benchmark,
    hyperfine,
    llama_bench,
    pytest_benchmark,
)
from readfirst.measure.metrics._common import MetricParseError, strip_bom
from readfirst.measure.metrics.metric_lines import METRIC_LINE, parse_number

Direction = Literal["higher", "lower"]
JUDGE_FORMATS = ("metric-lines", "hyperfine-json", "llama-bench-json", "google-benchmark-json",
                 "pytest-benchmark-json", "go-bench")
# units where more is better; everything else (times, bytes and allocations per op) is lower
_HIGHER_UNITS = re.compile(r"(/s|per_s|per_sec|ops|tok_s|tokens_s|qps|rps|throughput)$",
                           re.IGNORECASE)
_GO_LINE = re.compile(r"^\s*Benchmark[^a-z\s]\S*\s+\d+\s", re.MULTILINE)

# (name, unit, value, line or None)
Point = tuple[str, str, float, int | None]


@dataclass
class Series:
    """The samples of one benchmark and unit on one side."""

    name: str
    unit: str
    direction: Direction
    samples: list[float] = field(default_factory=list)


def direction_of(unit: str) -> Direction:
    return "higher" if _HIGHER_UNITS.search(unit) else "lower"


def detect_format(text: str) -> str | None:
    """The format of a result file from its content, or None when nothing fits."""
    body = strip_bom(text).lstrip()
    if body.startswith(("{", "[")):
        try:
            doc = json.loads(body)
        except ValueError:  # malformed: tell by its keys, so the reader names the bad line
            doc = {k: None for k in ("results", "benchmarks", "context", "avg_ts")
                   if f'"{k}"' in body}
        if isinstance(doc, dict) and "results" in doc:
            return "hyperfine-json"
        if isinstance(doc, dict) and "benchmarks" in doc:
            return "google-benchmark-json" if "context" in doc else "pytest-benchmark-json"
        if isinstance(doc, list) or "avg_ts" in doc:
            return "llama-bench-json"
    if _GO_LINE.search(text):
        return "go-bench"
    if METRIC_LINE.search(text):
        return "metric-lines"
    return None


def _metric_lines(text: str) -> Iterator[Point]:
    for number, line in enumerate(text.splitlines(), start=1):
        match = METRIC_LINE.fullmatch(line.strip())
        if match is None:
            continue
        value = parse_number(match.group(2))
        if value is None:
            raise MetricParseError(
                f"line {number}: expected a finite number for METRIC {match.group(1)}, "
                f"got {match.group(2)!r}")
        yield match.group(1), "", value, number


# One reader per format: the metrics module that turns a benchmark's output into metrics also
# reads its samples, so both agree on what a file holds and on its errors.


def _hyperfine(text: str) -> Iterator[Point]:
    for name, value in hyperfine.samples(text):
        yield name, "s", value, None


def _llama_bench(text: str) -> Iterator[Point]:
    for name, value, line in llama_bench.samples(text):
        yield name, "t/s", value, line


def _google_benchmark(text: str) -> Iterator[Point]:
    for run_name, unit, value in google_benchmark.iterations(text):
        yield run_name, unit, value, None


def _pytest_benchmark(text: str) -> Iterator[Point]:
    for name, value in pytest_benchmark.samples(text):
        yield name, "s", value, None


def _go(text: str) -> Iterator[Point]:
    for result in go_bench.parse_results(text):
        for unit, value in result.values.items():
            yield result.name, unit, value, result.line


_READERS = {
    "metric-lines": _metric_lines,
    "hyperfine-json": _hyperfine,
    "llama-bench-json": _llama_bench,
    "google-benchmark-json": _google_benchmark,
    "pytest-benchmark-json": _pytest_benchmark,
    "go-bench": _go,
}
assert tuple(_READERS) == JUDGE_FORMATS


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
        if not files:
            raise ConfigError(f"{path}: the directory holds no result files")
        return files
    if not path.is_file():
        raise ConfigError(f"{path}: no such file or directory")
    return [path]


def read_side(path: Path, fmt: str | None = None,
              direction: Direction | None = None) -> tuple[str, dict[tuple[str, str], Series]]:
    """(format, series by (name, unit)) of one side; ConfigError names the file and line."""
    series: dict[tuple[str, str], Series] = {}
    for file in _files(path):
        try:
            text = file.read_text(encoding="utf-8", errors="replace")
        except OSError as e:
            raise ConfigError(f"{file}: cannot read ({e.strerror})") from None
        file_fmt = fmt or detect_format(text)
        if file_fmt is None:
            raise ConfigError(f"{file}: line 1: not a result format readfirst knows (expected "
                              f"one of {', '.join(JUDGE_FORMATS)}; pass --format)")
        if file_fmt not in _READERS:
            raise ConfigError(f"--format {file_fmt!r}: expected one of {', '.join(JUDGE_FORMATS)}")
        fmt = fmt or file_fmt
        try:
            points = list(_READERS[file_fmt](text))
        except MetricParseError as e:
            raise ConfigError(f"{file}: {e}") from None
        for name, unit, value, _line in points:
            s = series.setdefault((name, unit), Series(name, unit, direction or direction_of(
                unit or name)))
            s.samples.append(value)
    if not series:
        raise ConfigError(f"{path}: no benchmark results found (format {fmt})")
    return fmt or "metric-lines", series
