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
from typing import Any, Literal

from readfirst.errors import ConfigError
from readfirst.metrics import go_bench, llama_bench
from readfirst.metrics._common import (
    ROOT,
    MetricParseError,
    UniqueNames,
    load_json_object,
    require_list,
    require_number,
    require_object,
    require_str,
    strip_bom,
    type_name,
)
from readfirst.metrics.metric_lines import METRIC_LINE, parse_number

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


def _numbers(fmt: str, values: Any, where: str, label: str) -> list[float]:
    if not isinstance(values, list) or not values:
        raise MetricParseError(f"{fmt}: expected {where} to be a non-empty array of numbers, "
                               f"got {type_name(values)}{label}")
    out = []
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise MetricParseError(
                f"{fmt}: expected {where}[{i}] to be a number, got {type_name(v)}{label}")
        out.append(float(v))
    return out


def _hyperfine(text: str) -> Iterator[Point]:
    fmt = "hyperfine-json"
    doc = load_json_object(fmt, text, "results")
    names = UniqueNames()
    for index, raw in enumerate(require_list(fmt, doc, "results", ROOT)):
        where = f"results[{index}]"
        result = require_object(fmt, raw, where)
        command = require_str(fmt, result, "command", where)
        label = f" (command {command!r})"
        name = names.allocate(command)
        for value in _numbers(fmt, result.get("times"), f"{where}.times", label):
            yield name, "s", value, None


def _llama_bench(text: str) -> Iterator[Point]:
    fmt = llama_bench.FORMAT
    names = UniqueNames()
    for index, (test, line) in enumerate(llama_bench._locate_tests(strip_bom(text)), start=1):
        where = f"test #{index}"
        label = "" if line is None else f" (line {line})"
        test = require_object(fmt, test, where, label=label)
        name = names.allocate(llama_bench.base_name(
            llama_bench._count(test, "n_prompt", where, label),
            llama_bench._count(test, "n_gen", where, label),
            llama_bench._count(test, "n_depth", where, label, required=False)))
        if "samples_ts" in test:
            values = _numbers(fmt, test["samples_ts"], f"{where}.samples_ts", label)
        else:
            values = [llama_bench._number(test, "avg_ts", where, label) or 0.0]
        for value in values:
            yield name, "t/s", value, line


def _google_benchmark(text: str) -> Iterator[Point]:
    fmt = "google-benchmark-json"
    doc = load_json_object(fmt, text, "benchmarks")
    for index, raw in enumerate(require_list(fmt, doc, "benchmarks", ROOT)):
        where = f"benchmarks[{index}]"
        entry = require_object(fmt, raw, where)
        if entry.get("error_occurred") or entry.get("run_type", "iteration") != "iteration":
            continue
        name = require_str(fmt, entry, "name", where)
        run_name = require_str(fmt, entry, "run_name", where) if "run_name" in entry else name
        value = require_number(fmt, entry, "real_time", where, label=f" (benchmark {name!r})")
        if value is not None:
            yield run_name, str(entry.get("time_unit", "ns")), value, None


def _pytest_benchmark(text: str) -> Iterator[Point]:
    fmt = "pytest-benchmark-json"
    doc = load_json_object(fmt, text, "benchmarks")
    for index, raw in enumerate(require_list(fmt, doc, "benchmarks", ROOT)):
        where = f"benchmarks[{index}]"
        bench = require_object(fmt, raw, where)
        name = require_str(fmt, bench, "name", where)
        label = f" (benchmark {name!r})"
        if "stats" not in bench:
            raise MetricParseError(f"{fmt}: {where} lacks 'stats'{label}")
        stats = require_object(fmt, bench["stats"], f"{where}.stats", label=label)
        if "data" in stats:
            values = _numbers(fmt, stats["data"], f"{where}.stats.data", label)
        else:
            mean = require_number(fmt, stats, "mean", f"{where}.stats", label=label)
            values = [] if mean is None else [mean]
        for value in values:
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
