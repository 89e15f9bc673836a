"""llama-bench `-o json` (an array of test objects) and `-o jsonl` (one object per line).

Each test becomes `pp<n_prompt>`, `tg<n_gen>` or `pp<n_prompt>+tg<n_gen>` (plus `@d<n_depth>`
when n_depth > 0) -> avg_ts in tokens/s, and `<name>.avg_ns` -> avg_ns. Repeated names (other
models, thread counts, ...) get `#2`, `#3`, ... in order of appearance. `samples` reads every
run's tokens/s (`samples_ts`) instead (`readfirst judge`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from readfirst.measure.metrics._common import (
    DecodeFailure,
    Failures,
    MetricParseError,
    UniqueNames,
    as_finite,
    decode_lines_at,
    is_number,
    json_starts,
    line_of,
    put,
    require_numbers,
    require_object,
    snippet,
    strip_bom,
    type_name,
)

FORMAT = "llama-bench-json"
_EXPECTED = f"{FORMAT}: expected a JSON array or JSON lines of llama-bench test objects"


def _locate_tests(text: str) -> list[tuple[Any, int | None]]:
    """The test objects, each with its line number (None inside a JSON array).

    Log lines before the JSON are skipped: the JSON starts at the first line beginning with
    `[` or `{` whose JSON value decodes and ends its line (an array must hold only objects).
    In JSON-lines mode every later line starting with `{` must be such an object.
    """
    failures = Failures()
    starts = json_starts(text, "[{")
    for offset, opener in starts:
        try:
            value, end = decode_lines_at(text, offset)
        except DecodeFailure as exc:
            failures.note(str(exc), exc.progress)
            continue
        if opener == "[":
            if isinstance(value, list) and all(isinstance(test, dict) for test in value):
                return [(test, None) for test in value]
            failures.note(
                f"line {line_of(text, offset)}: found an array that does not hold only objects",
                end - offset,
            )
            continue
        if "\n" in text[offset:end]:
            # Not JSON lines: e.g. the last complete object of a truncated `-o json` array.
            failures.note(
                f"line {line_of(text, offset)}: found an object spanning several lines",
                end - offset,
            )
            continue
        tests: list[tuple[Any, int | None]] = [(value, line_of(text, offset))]
        for next_offset, next_opener in starts:
            if next_opener != "{":
                continue  # log noise between the JSON lines
            line = line_of(text, next_offset)
            try:
                value, end = decode_lines_at(text, next_offset)
            except DecodeFailure as exc:
                raise MetricParseError(f"{FORMAT}: invalid JSON line ({exc})") from exc
            if "\n" in text[next_offset:end]:
                raise MetricParseError(
                    f"{FORMAT}: invalid JSON line (line {line}: the object spans several lines)"
                )
            tests.append((value, line))
        return tests
    if failures.best is not None:
        raise MetricParseError(f"{_EXPECTED} ({failures.best})")
    if not text.strip():
        raise MetricParseError(f"{_EXPECTED} (the output is empty)")
    raise MetricParseError(
        f"{_EXPECTED} (no line starts with '[' or '{{'; output begins {snippet(text)})"
    )


def _count(test: dict[str, Any], key: str, where: str, label: str, *, required: bool = True) -> int:
    """A non-negative integer field such as n_prompt (0 when optional and absent)."""
    if key not in test:
        if required:
            raise MetricParseError(f"{FORMAT}: {where} lacks {key!r}{label}")
        return 0
    value = test[key]
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise MetricParseError(
            f"{FORMAT}: expected {key} of {where} to be a non-negative integer, "
            f"got {type_name(value)}{label}"
        )
    return value


def base_name(n_prompt: int, n_gen: int, n_depth: int) -> str:
    """llama-bench's test label without spaces: pp512, tg128, pp512+tg128, pp512@d4096."""
    if n_gen == 0:
        name = f"pp{n_prompt}"
    elif n_prompt == 0:
        name = f"tg{n_gen}"
    else:
        name = f"pp{n_prompt}+tg{n_gen}"
    return f"{name}@d{n_depth}" if n_depth > 0 else name


def tests(text: str) -> Iterator[tuple[str, dict[str, Any], str, str, int | None]]:
    """Each test with its name (repeated names get `#2`, `#3`, ...), where, error label and
    line (None inside a JSON array)."""
    names = UniqueNames()
    for index, (test, line) in enumerate(_locate_tests(strip_bom(text)), start=1):
        where = f"test #{index}"
        label = "" if line is None else f" (line {line})"
        test = require_object(FORMAT, test, where, label=label)
        base = base_name(
            _count(test, "n_prompt", where, label),
            _count(test, "n_gen", where, label),
            _count(test, "n_depth", where, label, required=False),  # absent in older builds
        )
        yield names.allocate(base), test, where, label, line


def samples(text: str) -> Iterator[tuple[str, float, int | None]]:
    """(name, tokens/s, line) for every run of every test (`samples_ts`), else its avg_ts."""
    for name, test, where, label, line in tests(text):
        if "samples_ts" in test:
            values = require_numbers(FORMAT, test["samples_ts"], f"{where}.samples_ts", label)
        else:
            values = [_number(test, "avg_ts", where, label) or 0.0]
        for value in values:
            yield name, value, line


def parse(text: str) -> dict[str, float]:
    """Metrics from llama-bench JSON or JSON-lines output."""
    metrics: dict[str, float] = {}
    for name, test, where, label, _line in tests(text):
        put(metrics, name, _number(test, "avg_ts", where, label))
        put(metrics, f"{name}.avg_ns", _number(test, "avg_ns", where, label))
    return metrics


def _number(test: dict[str, Any], key: str, where: str, label: str) -> float | None:
    """A timing field as a finite float (None when non-finite)."""
    if key not in test:
        raise MetricParseError(f"{FORMAT}: {where} lacks {key!r}{label}")
    value = test[key]
    if not is_number(value):
        raise MetricParseError(
            f"{FORMAT}: expected {key} of {where} to be a number, got {type_name(value)}{label}"
        )
    return as_finite(value)
